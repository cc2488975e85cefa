"""The model card (card.py, card_facts.py, card_text.py): Hugging Face metadata that huggingface_hub reads back and
that holds the export's real figures, every class named, own-photo models without the Pets dataset, old or hand-made
exports still carded, README.md written beside model.json."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from catdog_fastai.card import MARKER, PETS_DATASET, CardError, base_model, folder_card, model_card, write_card
from catdog_fastai.files import write_json as write_json_file
from catdog_fastai.meta import FORMAT_VERSION

OLD = Path(__file__).parent / "data" / "export-0.4.1"  # a stored 0.4.1 export: `ood` entry, no `verdict`
VOCAB = ["Abyssinian", "Bengal", "american_bulldog", "great_pyrenees", "yorkshire_terrier"]
META = dict(
    format_version=FORMAT_VERSION,
    arch="tf_efficientnet_lite0",
    head="cosine",
    task="breeds",
    vocab=VOCAB,
    size=224,
    mean=[0.5, 0.5, 0.5],
    std=[0.5, 0.5, 0.5],
    metrics=dict(
        valid_accuracy=0.8123,
        valid_balanced_accuracy=0.6543,
        valid_error=0.1877,
        n_valid=151,
        n_classes=5,
        valid_catdog_accuracy=0.9541,
        valid_catdog_balanced_accuracy=0.9688,
        exported_epoch=5,
        n_few_valid_classes=2,
        baseline_accuracy=0.4321,
        baseline_balanced_accuracy=0.3456,
    ),
    config=dict(
        epochs=4,
        freeze_epochs=1,
        lr="2e-3",
        opt="adam",
        bs=32,
        seed=42,
        size=224,
        data="/home/someone/shared/data/pets-dev/images",
        split="stratified",
        valid_pct=0.2,
        pretrained=True,
        pkl=True,
    ),
    created="2026-11-29T10:00:00+00:00",
    versions=dict(python="3.11.9", fastai="2.8.12", timm="1.0.31", torch="2.14.1"),
    ood=dict(
        score="mean_distance",
        temperature=1.4142,
        keep=0.97,
        n_valid=151,
        threshold=0.2718,
        ece_before=0.1111,
        ece_after=0.0321,
    ),
    # as verdict.fit_gate writes it, plus two measured rates (any numeric key with "rate" in it goes to model-index)
    verdict=dict(
        gate="imagenet",
        threshold=0.8765,
        keep=0.98,
        known_min_prob=0.5,
        views=["as it is", "a third of the resolution", "grayscale"],
        n_valid=453,
        rates=dict(unknown_non_pets=1.0, unknown_pets=0.041),
    ),
)
REPORT = dict(
    per_class={
        "Abyssinian": 0.8,
        "Bengal": 1.0,
        "american_bulldog": 0.2,
        "great_pyrenees": 0.6,
        "yorkshire_terrier": 1.0,
    },
    n_valid_per_class={
        "Abyssinian": 5,
        "Bengal": 20,
        "american_bulldog": 5,
        "great_pyrenees": 1,
        "yorkshire_terrier": 2,
    },
)


def front(card: str) -> dict:
    "The YAML between the two --- lines, parsed as the Hub parses it."
    assert card.startswith("---\n")
    head, sep, _ = card[4:].partition("\n---\n")
    assert sep, "front matter is not closed"
    return yaml.safe_load(head)


def metric_values(fm: dict) -> dict[str, float]:
    (entry,) = fm["model-index"]
    (result,) = entry["results"]
    assert result["task"] == {"type": "image-classification", "name": "Image Classification"}
    assert {"type", "name", "split"} <= set(result["dataset"])
    return {m["type"]: m["value"] for m in result["metrics"]}


def test_front_matter_parses_and_holds_the_real_figures():
    fm = front(model_card(META, REPORT))
    assert "library_name" not in fm  # neither fastai's Hub loader (model.pkl) nor timm's (config.json) loads it
    assert fm["base_model"] == "timm/tf_efficientnet_lite0.in1k"
    assert fm["license"] == "apache-2.0"
    assert fm["pipeline_tag"] == "image-classification"
    assert {"image-classification", "fastai", "timm", "pets", "breeds"} <= set(fm["tags"])
    assert fm["datasets"] == [PETS_DATASET] == ["timm/oxford-iiit-pet"]
    dataset = fm["model-index"][0]["results"][0]["dataset"]
    assert dataset["type"] == PETS_DATASET and dataset["split"] == "validation"
    assert "20% of every class, held out of training" in dataset["name"]  # a slice of the photos trained from
    # one accuracy and one balanced accuracy of the model's own task: no derived or in-sample figures
    assert metric_values(fm) == {"accuracy": 0.8123, "balanced_accuracy": 0.6543}


def test_huggingface_hub_reads_the_written_card_back(tmp_path):
    "ModelCard.load on README.md round-trips; model-index parses into EvalResults; the card holds no placeholder."
    write_json_file(tmp_path / "model.json", META)
    write_json_file(tmp_path / "report.json", REPORT)
    path = write_card(tmp_path)
    card = ModelCard.load(path)
    assert str(card) == path.read_text(encoding="utf-8")
    assert card.data.base_model == "timm/tf_efficientnet_lite0.in1k" and card.data.library_name is None
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert name == "catdog_fastai-breeds-tf_efficientnet_lite0"
    assert [(r.metric_type, r.metric_value, r.dataset_type, r.dataset_split) for r in results] == [
        ("accuracy", 0.8123, PETS_DATASET, "validation"),
        ("balanced_accuracy", 0.6543, PETS_DATASET, "validation"),
    ]
    assert "?" not in card.text and MARKER in card.text


def test_official_test_list_is_the_test_split():
    meta = copy.deepcopy(META)
    meta["config"]["split"] = "official"
    dataset = front(model_card(meta))["model-index"][0]["results"][0]["dataset"]
    assert dataset["split"] == "test" and "official Oxford-IIIT Pet test list" in dataset["name"]


def test_base_model_is_the_backbones_hub_weights():
    assert base_model("tf_efficientnet_lite0") == "timm/tf_efficientnet_lite0.in1k"  # its default pretrained tag
    assert base_model("resnet18.a1_in1k") == "timm/resnet18.a1_in1k"  # the tag the arch names
    assert base_model("hf-hub:someone/net") == "someone/net"
    assert base_model("no_such_arch") == "no_such_arch"
    meta = copy.deepcopy(META)
    meta["config"]["pretrained"] = False
    card = model_card(meta)
    assert "base_model" not in front(card) and "random start (no pretrained weights)" in card
    meta["config"].update(pretrained=True, weights="/home/someone/w/tf_efficientnet_lite0.in1k.safetensors")
    assert "(`timm/tf_efficientnet_lite0.in1k`, read from a local file, `tf_efficientnet_lite0.in1k.safetensors`)" in (
        model_card(meta)
    )


def test_body_names_every_class_the_recipe_and_the_limits():
    card = model_card(META, REPORT)
    for v in VOCAB:
        assert f"`{v}`" in card
    assert "`american_bulldog`: validation recall 0.20 (5 photos)" in card
    assert "`great_pyrenees`: validation recall 0.60 (1 photo)" in card
    for text in ("`tf_efficientnet_lite0`", "224 px", "adam", "2e-3", "fastai 2.8.12", "2026-11-29", "stratified"):
        assert text in card
    assert "pets-dev/images" in card and "/home/someone" not in card  # no home folder on a public card
    assert "**0.8123**" in card and "on 151 validation photos" in card.lower()
    assert "This doesn't look like a cat or a dog" in card
    limits = card.split("## Limits")[1].split("##")[0]
    weakest = limits.split("Weakest classes")[1].splitlines()[0]
    assert weakest.index("american_bulldog") < weakest.index("great_pyrenees") < weakest.index("Abyssinian")
    assert "Bengal" not in weakest  # recall 1.0 is nobody's weakness
    assert "grayscale" in limits.lower() and "low-resolution" in limits.lower()
    assert 'load_predictor("DIR")' in card and 'load_learner("DIR/model.pkl")' in card
    assert "cosine-classifier head" in card
    assert "no training at all" in card and "balanced accuracy 0.3456" in card  # the nearest-class-mean baseline
    assert "ImageNet's own classifier" in limits and "threshold 0.8765" in limits and "453 views" in limits
    assert "let 98% through" in limits and "about 2% of real photos" in limits
    assert "Unsure: when no class reaches 50%" in limits and "fixed at 0.5 (older export)" in limits
    assert "hf upload USER/NAME DIR" in card and "huggingface-cli upload USER/NAME DIR" in card
    assert "`model.onnx` alone" not in card and "This export has no `model.onnx`" in card  # serving needs torch
    assert "`rates.unknown_non_pets`: 100.0%" in card and "`rates.unknown_pets`: 4.1%" in card
    assert "?" not in card


def test_files_decide_which_loaders_are_shown():
    only_safe = model_card(META, REPORT, files=["model.safetensors", "model.json"])
    assert "model.pkl" not in only_safe and "`model.onnx` alone" not in only_safe
    assert "torch and timm" in only_safe.split("## How to use")[1]  # no graph: the torch backend serves it
    assert "onnx" not in front(only_safe)["tags"]
    with_onnx = model_card(META, REPORT, files=["model.safetensors", "model.json", "model.pkl", "model.onnx"])
    assert 'load_learner("DIR/model.pkl")' in with_onnx and "`model.onnx` alone" in with_onnx
    usage = with_onnx.split("## How to use")[1].split("## Limits")[0]
    assert "serving needs onnxruntime, NumPy, Pillow and safetensors: no torch" in usage
    assert "onnx" in front(with_onnx)["tags"]


def test_own_photos_have_no_pets_dataset_or_pets_wording():
    meta = copy.deepcopy(META)
    meta.update(task="folders", vocab=["black", "grizzly", "teddy"], verdict=None)
    meta["config"]["data"] = "bears"
    card = model_card(meta)
    fm = front(card)
    assert "datasets" not in fm
    assert "pets" not in fm["tags"] and "breeds" not in fm["tags"]
    dataset = fm["model-index"][0]["results"][0]["dataset"]
    assert dataset["type"] == "imagefolder" and "oxford" not in dataset["name"].lower()
    assert "Oxford" not in card
    assert "This doesn't look like any of this model's classes" in card
    assert "`black`, `grizzly`, `teddy`" in card
    assert metric_values(fm) == {"accuracy": 0.8123, "balanced_accuracy": 0.6543}


def test_export_from_before_the_verdict_entry_describes_its_ood_threshold():
    "model.json with only the older `ood` entry: the features gate at its threshold, and no unsure answer."
    meta = {k: v for k, v in META.items() if k != "verdict"}
    limits = model_card(meta, REPORT).split("## Limits")[1]
    assert "farther from every class's mean" in limits and "threshold 0.2718" in limits
    assert "let 97% of the validation photos through" in limits
    assert "Unsure" not in limits
    assert "Verdict" not in model_card(meta, REPORT)  # the rates live in the `verdict` entry


@pytest.mark.parametrize(
    "extra, says",
    [
        ({}, "`known_min_prob` 0.50: fixed at 0.5 (older export)."),
        (
            {"known_min_prob": 0.62, "known_target": 0.95},  # as verdict.fit_known writes it
            "when no class reaches 62% of the calibrated probability, it says it is unsure and names the closest "
            "classes (for breeds: cat or dog, breed unsure). `known_min_prob` 0.62: fitted for a target precision of "
            "95% on the validation photos, each also at a third of its resolution and in grayscale.",
        ),
        (
            {"known_min_prob": 0.9, "known_target": 0.97, "known_fitted_on": "left out", "n_known_fit": 755},
            "`known_min_prob` 0.90: fitted for a target precision of 97% on 755 labelled photos the class means "
            "hold, each scored against the means without it and its copies.",
        ),
        (
            {"known_min_prob": 0.62, "known_target": 0.95, "valid_known_precision": 0.96, "valid_known_coverage": 0.8},
            "target precision of 95% on the validation photos, each also at a third of its resolution and in "
            "grayscale; there, 96% of its known answers were right and 80% of the photos got one",
        ),
    ],
)
def test_unsure_row_says_how_known_min_prob_was_set(extra, says):
    meta = copy.deepcopy(META)
    meta["verdict"].update(extra)
    assert says in model_card(meta).split("## Limits")[1]


def test_stored_old_export_still_gets_a_card(tmp_path):
    "The 0.4.1 export: calibration in `ood` (and a copy in metrics), no `verdict`, no pretrained weights, no README."
    old = shutil.copytree(OLD, tmp_path / "old")
    card = folder_card(old)
    fm = front(card)
    assert "base_model" not in fm  # trained from a random start
    assert metric_values(fm)["accuracy"] == pytest.approx(0.027027, abs=1e-6)
    limits = card.split("## Limits")[1]
    assert "farther from every class's mean" in limits and "threshold 0.0254" in limits and "Unsure" not in limits
    assert "temperature 20.000" in card and "?" not in card
    assert (write_card(old) == old / "README.md") and folder_card(old) == card  # written, then read back as is


def test_own_folders_called_cat_and_dog_answer_as_a_pets_model():
    meta = copy.deepcopy(META)
    meta.update(task="folders", vocab=["cat", "dog"])
    assert "This doesn't look like a cat or a dog" in model_card(meta)


def test_malformed_optional_entries_are_left_out():
    "A hand-edited model.json: strings where numbers belong, lists where dicts belong; the card says only what holds."
    meta = copy.deepcopy(META)
    meta.update(config=["not", "a", "dict"], versions="torch 2", verdict=dict(gate="features", threshold="high"))
    meta["metrics"].update(valid_balanced_accuracy="0.9", n_valid=-3)
    card = model_card(meta, {"per_class": {"Bengal": "all"}, "n_valid_per_class": {"Bengal": 2.5}})
    assert metric_values(front(card)) == {"accuracy": 0.8123}
    assert "On the validation photos" in card and "no 'unknown' verdict" in card and "?" not in card
    assert "`Bengal`: no validation recall recorded" not in card  # no usable recall at all: the plain list


def test_minimal_meta_still_renders():
    "An old or hand-made export: only arch, vocab and size; nothing optional may crash the card."
    card = model_card(dict(arch="resnet18", vocab=["cat", "dog"], size=192))
    fm = front(card)
    assert "model-index" not in fm and "base_model" not in fm  # no figures, and pretraining not recorded
    assert "`cat`, `dog`" in card and "resnet18" in card and "192 px" in card
    assert "No validation figures" in card
    assert "no 'unknown' verdict" in card
    assert "?" not in card and "schedule" not in card  # what was not saved is left out, not shown as a placeholder


TRICKY = ["yes", "No", "null", "~", "1e3", "0x1F", "a: b", "#x", '"q"', "- item", "x\n---\ny", "tab\tx", "back\\slash"]
TRICKY += ["", "true", "@at", "`tick", "%pct", "é", "\u2028", "\ufeffbom", "🐱 cat", "[1, 2]", "{a: 1}", "*ref", "!tag"]


@pytest.mark.parametrize("s", TRICKY)
def test_metadata_round_trips_strings_that_would_break_it(s, tmp_path):
    "Whatever an arch or a class name holds, huggingface_hub reads the written metadata back exactly."
    meta = copy.deepcopy(META)
    meta.update(arch=f"tf_{s}", vocab=[s or "empty", "b"], task="folders", verdict=None)
    meta["config"].update(pretrained=False)
    path = tmp_path / "README.md"
    path.write_text(model_card(meta), encoding="utf-8")
    card = ModelCard.load(path)
    assert model_index_to_eval_results(card.data.to_dict()["model-index"])[0] == f"catdog_fastai-folders-tf_{s}"
    assert card.text.startswith(MARKER)


def test_write_card_writes_readme_beside_the_export(tmp_path):
    write_json_file(tmp_path / "model.json", META)
    write_json_file(tmp_path / "report.json", {**META["metrics"], **REPORT})
    (tmp_path / "model.safetensors").write_bytes(b"")
    path = write_card(tmp_path)
    assert path == tmp_path / "README.md"
    card = path.read_text(encoding="utf-8")
    assert card == model_card(META, {**META["metrics"], **REPORT}, files=["model.json", "report.json"])
    assert metric_values(front(card))["accuracy"] == 0.8123
    assert "validation recall 0.20" in card  # per-class figures came from report.json
    assert "model.pkl" not in card  # none in the folder
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no temp file left

    (tmp_path / "report.json").write_text("{not json")  # a damaged report: the card goes without it
    assert "validation recall" not in write_card(tmp_path).read_text(encoding="utf-8")


def test_write_card_never_overwrites_a_foreign_readme(tmp_path):
    write_json_file(tmp_path / "model.json", META)
    (tmp_path / "README.md").write_text("# My project\n")
    with pytest.raises(CardError, match="not a catdog_fastai model card"):
        write_card(tmp_path)
    assert (tmp_path / "README.md").read_text() == "# My project\n"
    (tmp_path / "README.md").write_text(f"---\n---\n{MARKER}\nold card\n")  # ours: regenerated
    assert "old card" not in write_card(tmp_path).read_text(encoding="utf-8")


def test_write_card_needs_model_json(tmp_path):
    from catdog_fastai.errors import ExportError

    with pytest.raises(ExportError, match="model.json"):
        write_card(tmp_path)


def test_exported_epoch_names_its_row_in_history_csv():
    "exported_epoch counts from 1 and history.csv's global_epoch from 0: the card says which row is which."
    text = model_card(META, REPORT)
    assert "exported weights: after epoch 5 of training (history.csv's row with global_epoch 4)" in text
