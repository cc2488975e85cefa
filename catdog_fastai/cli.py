"""One way to build every command's options: a dataclass whose fields say their default, help, group and the
environment variable that may set them, turned into an argparse parser whose `--help` shows all of it.

`catdog-train`'s options are `config.TrainConfig`; `catdog-predict`, `catdog-evaluate` and `catdog-app` declare
theirs the same way (`PredictOptions`, ... next to their commands). A setting read from the environment
(`CATDOG_MODEL`, `CATDOG_THREADS`, ...) is an option's default, so `--help` lists it beside the flag and a flag
always wins over the environment.

Commands whose libraries a serving install leaves out (torch, timm, fastai) start through `guard`: one line
naming the install instead of an ImportError's traceback. Nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import Any, TypeVar

from .backends import needs_training_stack

T = TypeVar("T")
_TYPES = {"int": int, "float": float, "str": str}


def option(default: Any, help: str, group: str = "options", *, env: str | None = None, **kw: Any) -> Any:
    """A dataclass field that is also a command-line option. `env`: an environment variable that sets its default.
    `kw` go to `add_argument` (choices, nargs, metavar, const); `positional=True` makes it an argument, not a flag."""
    return field(default=default, metadata=dict(help=help, group=group, env=env, **kw))


def _type(annotation: Any) -> Callable[[str], Any]:
    name = str(annotation).replace(" | None", "").replace("Optional[", "").rstrip("]")
    return _TYPES.get(name, str)


def _env_default(f: dataclasses.Field, typ: Callable[[str], Any]) -> Any:
    env = f.metadata.get("env")
    raw = os.environ.get(env) if env else None
    if raw in (None, ""):
        return f.default
    if f.type in ("bool", bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    try:
        return typ(raw)
    except ValueError:
        raise SystemExit(f"{env}={raw!r} is not a valid {getattr(typ, '__name__', 'value')}") from None


def build_parser(cls: type, **kw: Any) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of the dataclass `cls`, grouped, defaults (and the environment
    variable behind each default) shown in `--help`. `kw` go to `ArgumentParser` (prog, description, epilog)."""
    p = argparse.ArgumentParser(formatter_class=_HelpFormatter, **kw)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        md = dict(f.metadata)
        title, env, positional = md.pop("group"), md.pop("env", None), md.pop("positional", False)
        if title not in groups:  # one group per title
            groups[title] = p.add_argument_group(title)
        g = groups[title]
        help = md.pop("help") + (f" [env {env}]" if env else "")
        typ = _type(f.type)
        default = _env_default(f, typ)
        if positional:
            g.add_argument(f.name, help=help, **md)
        elif f.type in ("bool", bool):
            flag = "--" + f.name.replace("_", "-")
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help)
        else:
            g.add_argument("--" + f.name.replace("_", "-"), type=typ, default=default, help=help, **md)
    return p


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    "Defaults shown, and descriptions and epilogs kept as written (their examples are laid out by hand)."


def parse(
    cls: type[T], argv: Sequence[str] | None = None, check: Callable[[T], str | None] | None = None, **kw: Any
) -> T:
    """`argv` parsed into an instance of the options dataclass `cls`; `check` returns a problem in words (or None),
    which exits with argparse's usage message, as a bad flag does."""
    p = build_parser(cls, **kw)
    opts = cls(**vars(p.parse_args(argv)))
    problem = check(opts) if check else None
    if problem:
        p.error(problem)
    return opts


def error(command: str, message: object) -> int:
    "Print `command: message` on stderr, one line, and return the exit status for a problem the user can fix."
    print(f"{command}: {message}", file=sys.stderr)
    return 2


def guard(command: str, target: str, needs: tuple[str, ...] = ("torch", "timm", "fastai")) -> Callable[..., int]:
    """A console entry point for `target` ("module:function") that first checks the libraries it needs, so a
    serving install (no torch) answers in one line what to install instead of a traceback on import."""

    def entry(argv: list[str] | None = None) -> int:
        line = needs_training_stack(command, needs)
        if line:  # "catdog-train needs torch, ...: pip install ..."
            print(line, file=sys.stderr)
            return 2
        module, fn = target.split(":")
        return getattr(importlib.import_module(module, __package__), fn)(argv)

    entry.__name__ = entry.__qualname__ = command.replace("-", "_")
    entry.__doc__ = f"`{command}`: {target}, after checking that {', '.join(needs)} are installed."
    return entry


train = guard("catdog-train", ".train:main")  # pyproject's catdog-train
evaluate = guard("catdog-evaluate", ".evaluate_cli:main", ("torch", "fastai"))  # labels and metrics read with them
