"""`catdog-export`'s options: a dataclass built through `cli.py` like every other command's, its two usage checks as
argparse errors (exit 2), and the library module (`onnx_export`) free of the command's imports. The command's work
is checked in test_space.py (--space) and test_onnx.py (--onnx)."""

from __future__ import annotations

from pathlib import Path

import pytest

from catdog_fastai import cli
from catdog_fastai.export_cli import ExportOptions, _check, main
from catdog_fastai.space import package_imports

PKG = Path(__file__).resolve().parent.parent / "catdog_fastai"


def test_help_documents_every_option():
    p = cli.build_parser(ExportOptions, prog="catdog-export")
    text = p.format_help()
    for want in ("model", "--onnx", "--space OUT", "--examples PHOTO", "--title", "--emoji", "--force",
                 "--push USER/NAME", "Hugging Face Space (see docs/space.md)"):  # fmt: skip
        assert want in text, want
    undocumented = [a.dest for a in p._actions if a.dest != "help" and not (a.help or "").strip()]
    assert undocumented == []


def test_options_parse_into_the_dataclass():
    o = cli.parse(ExportOptions, ["m", "--space", "out", "--examples", "a.jpg", "b.jpg", "--force", "--push", "u/n"])
    assert o == ExportOptions("m", False, "out", ["a.jpg", "b.jpg"], None, "🐾", True, "u/n")
    assert cli.parse(ExportOptions, ["m", "--onnx"], _check) == ExportOptions("m", onnx=True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["m"], "say what to add: --onnx, or --space OUT"),
        (["m", "--onnx", "--title", "T"], "--examples, --title, --force and --push go with --space OUT"),
        (["m", "--onnx", "--examples", "a.jpg"], "--examples, --title, --force and --push go with --space OUT"),
        (["m", "--onnx", "--force"], "--examples, --title, --force and --push go with --space OUT"),
        (["m", "--onnx", "--push", "u/n"], "--examples, --title, --force and --push go with --space OUT"),
        ([], "the following arguments are required: model"),
    ],
)
def test_usage_mistakes_exit_2_with_argparse_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: catdog-export") and f"catdog-export: error: {message}" in err


def test_the_library_module_holds_no_command():
    "onnx_export is the library (write_onnx, add_onnx): no parser, no Space builder, no cli.py."
    assert not package_imports(PKG / "onnx_export.py") & {"space", "cli", "export_cli"}
    assert "argparse" not in (PKG / "onnx_export.py").read_text()
