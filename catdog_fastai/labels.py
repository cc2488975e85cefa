"""Labelling functions: the file name is the label (or, for your own photos, the folder name or a CSV's column).

Oxford-IIIT Pets names every photo `Breed_N.jpg`; cat breeds are Capitalised (`Bengal_12.jpg`), dog breeds are
lowercase (`beagle_3.jpg`). Class folders are labelled by fastai's own `parent_label`, a CSV by `CsvLabels`.
These live at module level in the package, never in `__main__` or a notebook, because `learn.export()` pickles a
labelling function by *name*: a function defined in a script makes the export unloadable anywhere else
(fastbook#472, "Can't get attribute 'is_cat' on <module '__main__'>").
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

_PETS_NAME = re.compile(r"^(?P<breed>[A-Za-z][A-Za-z_]*?)_(?P<n>\d+)$")
TASKS = ("catdog", "breeds")


def _stem(path: str | os.PathLike) -> str:
    return Path(path).stem


def breed(path: str | os.PathLike) -> str:
    "Breed from a Pets file name: `great_pyrenees_12.jpg` -> `great_pyrenees`."
    m = _PETS_NAME.match(_stem(path))
    if m is None:
        raise ValueError(f"'{Path(path).name}' is not named like an Oxford-IIIT Pets photo (Breed_N.jpg)")
    return m["breed"]


def breed_is_cat(name: str) -> bool:
    "True for a cat breed's name: the dataset capitalises cat breeds (`Bengal`) and not dog breeds (`beagle`)."
    return name[:1].isupper()


def is_cat(path: str | os.PathLike) -> bool:
    "True for photos of cats: the fast.ai lesson-1 rule, read from the file name."
    return breed_is_cat(breed(path))


def cat_or_dog(path: str | os.PathLike) -> str:
    "'cat' or 'dog': `is_cat` as a readable label, so the model's vocab is self-explanatory."
    return "cat" if is_cat(path) else "dog"


def is_pets_name(path: str | os.PathLike) -> bool:
    "Whether a file is named `Breed_N.ext`, i.e. whether it can be labelled at all."
    return _PETS_NAME.match(_stem(path)) is not None


def is_pets_vocab(vocab: Sequence[str]) -> bool:
    "True for a 37-breed style vocab (every label a Pets breed name), where a breed implies cat or dog."
    return bool(vocab) and "cat" not in vocab and all(is_pets_name(f"{v}_1") for v in vocab)


def model_task(task: str, layout: str) -> str:
    """model.json's `task`: the Pets task (`catdog`, `breeds`) where the labels come from Pets file names, else the
    layout the user's labels came from (`folders`, `csv`: `sources.LAYOUTS`)."""
    return task if layout == "pets" else layout


def is_pet_model(vocab: Sequence[str], task: str | None) -> bool:
    """Models of cats and dogs, whose unknown answer is "not a cat or a dog": Pets tasks (labels from Pets file
    names: catdog, breeds), and any model whose classes are exactly cat and dog."""
    return task in TASKS or list(vocab) == ["cat", "dog"]


def has_species(vocab: Sequence[str], task: str | None) -> bool:
    """Pets breed models, whose every class is a Pets breed and so implies cat or dog: they answer the species
    first (its breeds' probabilities added up) and report cat/dog figures."""
    return task == "breeds" and is_pets_vocab(vocab)


def label_func(task: str):
    "The labelling function for a task name (`catdog` or `breeds`)."
    funcs = {"catdog": cat_or_dog, "breeds": breed}
    if task not in funcs:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return funcs[task]


class CsvLabels:
    """A CSV's label for each photo path: the `get_y` for `--data labels.csv`.

    A class, not a lambda, so `learn.export` pickles it by name. It pickles empty (as `data.ImageCache` does): an
    export carries no list of training files, and prediction never asks for a label.
    """

    def __init__(self, labels: dict[Path, str]):
        self.labels = labels

    def __getstate__(self) -> dict:
        return {"labels": {}}

    def __call__(self, path: Path) -> str:
        return self.labels[path]
