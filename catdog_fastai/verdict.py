"""Three honest answers, decided in one place: known ("dog — beagle 91 %"), unsure ("dog — breed unsure") and
unknown ("This doesn't look like a cat or a dog").

`decide` turns one photo's scores into a verdict and `describe` turns a prediction into the sentence a person
reads; the CLI line, the CSV, the app and its `/predict` endpoint all use these two.

Is it one of the model's classes at all? Two gates, fitted at export (`fit_gate`) and kept in model.json's
`verdict` entry:
- `imagenet`, for cat/dog and Pets breed models whose backbone was pretrained on ImageNet-1k: ImageNet's own
  classifier (kept from the pretrained weights, in model.safetensors) applied to the photo's pooled features, and
  the probability it puts on its 118 dog and 5 domestic-cat classes. ImageNet taught it what cats and dogs look
  like from 1.3 M photos, and what a giraffe, a lion or a car looks like too, so a photo of a breed that is not one
  of the 37 is still a dog, and a swan is not.
- `features`, for models of your own classes: the cosine distance of the pooled features to the nearest class
  mean (`mean_distance`).
The threshold is the point that keeps `KEEP` of the validation photos, every class weighing the same, counting
each photo once as it is and once at low resolution and once in grayscale: a small or colourless photo of a real
pet is an everyday photo, not a strange one.

Is it clearly one class? Known when the top class's calibrated probability is at least `known_min_prob`;
otherwise unsure, naming the classes it is torn between (and for Pets breed models the species, its breeds'
probabilities added up). `known_min_prob` is fitted at export (`fit_known`): the lowest bar at which the known
answers are right `known_target` of the time, every class weighing the same, on photos the model did not learn
from: for a training-free export every labelled photo, scored against class means without it (`LEFT_OUT`: a class
of five photos gives five rows, where its validation photos give one); for a trained one, the validation photos
and their degraded views. Exports made before it was fitted keep their fixed 0.5.

NumPy only: both serving backends (torch and ONNX Runtime) and the export's fitting score photos with these same
functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .meta import Rule

KNOWN, UNSURE, UNKNOWN = "known", "unsure", "unknown"
VERDICTS = (KNOWN, UNSURE, UNKNOWN)
KEEP = 0.98  # share of validation photos (and their degraded views) the unknown threshold keeps, classes equal
KNOWN_MIN_PROB = 0.5  # never "known" below half of the calibrated probability (and the bar of exports before 0.7)
KNOWN_TARGET = 0.97  # the default share of known answers that must be right (TrainConfig.known_precision)
IMAGENET_WEIGHT, IMAGENET_BIAS = "ood.imagenet.weight", "ood.imagenet.bias"  # tensors in model.safetensors
GATES = {  # when each gate says unknown, in words: the training summary and the model card read this
    "imagenet": "ImageNet's own classifier, kept from the pretrained backbone, puts too little probability on its "
    "dog and domestic-cat classes",
    "features": "the photo's backbone features are farther from every class's mean than the threshold",
    "energy": "the energy score of its outputs is above the threshold",
}
GATE_SIZE = 224  # the smallest size the imagenet gate reads a photo at: ImageNet's training size (`gate_size`)
VIEW_WORDS = {  # the views ood.fit scores each validation photo as (HARD_VIEWS), and how a sentence names them
    "as it is": "as it is",
    "a third of the resolution": "at a third of its resolution",
    "grayscale": "in grayscale",
}
VALIDATION, LEFT_OUT = "validation", "left out"  # which photos the known/unsure line is fitted on (`fit_known`)
MEANS_KEY = "ood.class_means"  # the features gate's class means, also in model.safetensors
DOG_CLASSES = range(151, 269)  # ImageNet-1k: Chihuahua .. Mexican hairless
CAT_CLASSES = range(281, 286)  # ImageNet-1k: tabby, tiger cat, Persian, Siamese, Egyptian cat
PET_CLASSES = np.array([*DOG_CLASSES, *CAT_CLASSES])


def pet_probability(pooled: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The probability ImageNet's classifier gives to "a dog or a domestic cat" for each row of pooled features.

    A fastai head's input is concat-pooled ([max, average]); ImageNet's classifier reads the average, its last
    half."""
    x = np.asarray(pooled, dtype=np.float32)[:, -np.shape(weight)[1] :]
    logits = (x @ np.asarray(weight, dtype=np.float32).T + np.asarray(bias, dtype=np.float32)).astype(np.float64)
    return np.exp(logsumexp(logits[:, PET_CLASSES]) - logsumexp(logits))


def mean_distance(pooled: np.ndarray, means: np.ndarray) -> np.ndarray:
    "Cosine distance from each feature vector to the nearest class mean: 0 on a mean, up to 2 opposite."
    return 1 - (_unit(pooled) @ _unit(means).T).max(1)


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    "Energy score (Liu et al., 2020): -T * logsumexp(logits / T); higher = less like the training photos."
    return -temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature)


def logsumexp(x: np.ndarray) -> np.ndarray:
    "log(sum(exp(x))) of each row, without overflow."
    m = x.max(1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(1, keepdims=True)))[:, 0]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def balanced_quantile(scores: np.ndarray, groups: Sequence[int], q: float) -> float:
    """The `q` quantile of `scores` with every group (class) weighing the same, however many photos it has:
    a class of 4 validation photos moves the threshold as much as a class of 40."""
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(list(groups), dtype=np.int64)
    w = 1 / np.bincount(g)[g]
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(w[order]) / w.sum()
    i = min(int(np.searchsorted(cum, q)), len(s) - 1)
    return float(s[order][i])


def fit_known(
    probs: np.ndarray, targets: Sequence[int], target: float = KNOWN_TARGET, fitted_on: str = VALIDATION
) -> dict[str, Any]:
    """The known/unsure line from calibrated probabilities of labelled photos (rows) and their classes; `fitted_on`
    says which photos they are (`known_rows` puts it in words).

    Rank the rows by their top probability; the bar takes the most rows whose answers are right at least `target` of
    the time, every class weighing the same (a row weighs 1 / its class's rows), so a big class cannot buy the
    precision of the small ones; it lies halfway between the last row taken and the first left out (all taken:
    `KNOWN_MIN_PROB`). Where no bar reaches the target, the most precise one is taken. Never below
    `KNOWN_MIN_PROB`. Returns the bar, the target, the rows, and the precision and coverage the bar had on them
    (optimistic: it was fitted on them; benchmarks/accuracy.py measures both out of fold)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(list(targets), dtype=np.int64)
    top, hit = p.max(1), (p.argmax(1) == y).astype(np.float64)
    w = 1 / np.bincount(y)[y]
    order = np.argsort(-top, kind="stable")
    top, hit, w = top[order], hit[order], w[order]
    precision = np.cumsum(w * hit) / np.cumsum(w)
    coverage = np.cumsum(w) / w.sum()
    ends = np.flatnonzero(np.append(top[1:] < top[:-1], True))  # the last row of each run of equal probabilities
    ok = ends[precision[ends] >= target]
    i = int(ok.max()) if len(ok) else int(ends[np.argmax(precision[ends] + 1e-9 * coverage[ends])])
    bar = (top[i] + top[i + 1]) / 2 if i + 1 < len(top) else KNOWN_MIN_PROB  # halfway to the first row left out
    return dict(
        known_min_prob=max(float(bar), KNOWN_MIN_PROB),
        known_target=target,
        known_fitted_on=fitted_on,
        n_known_fit=len(y),
        valid_known_precision=float(precision[i]),
        valid_known_coverage=float(coverage[i]),
    )


def fit_gate(
    scores: np.ndarray,
    targets: Sequence[int],
    gate: str,
    views: Sequence[str],
    keep: float = KEEP,
    known: dict[str, Any] | None = None,  # `fit_known`'s entry; None: the fixed KNOWN_MIN_PROB
    gate_size: int | None = None,  # the size the gate reads photos at, where not the model's (`gate_size`)
) -> dict[str, Any]:
    """model.json's `verdict` entry from the validation photos' unknown-scores (higher = less like the classes), one
    row per photo and view (`views` names them: the photo as it is, and degraded copies), targets repeated.
    `valid_unknown_rate` is the class-balanced share of those rows called unknown: about 1 - keep by construction,
    since the threshold was fitted on them (benchmarks/accuracy.py measures the rate out of fold)."""
    thr = balanced_quantile(scores, targets, keep)
    flagged = (np.asarray(scores, dtype=np.float64) > thr).astype(np.float64)
    g = np.asarray(list(targets), dtype=np.int64)
    n = np.bincount(g)
    per_class = np.bincount(g, weights=flagged, minlength=len(n))
    rate = float((per_class[n > 0] / n[n > 0]).mean())
    return dict(
        gate=gate,
        threshold=thr,
        keep=keep,
        **(known or dict(known_min_prob=KNOWN_MIN_PROB)),
        views=list(views),
        n_valid=len(g),
        valid_unknown_rate=rate,
        **({"gate_size": gate_size} if gate_size else {}),
    )


def gate_size(gate: str, size: int) -> int | None:
    """The size the `imagenet` gate reads photos at for a model that classifies them at `size` px: `GATE_SIZE` where
    that is larger, else None (the classifying pass's features serve). ImageNet's classifier was trained at 224 px:
    read at 128 px, lite0's tells far fewer non-pets from pets (BENCHMARKS.md §2), while the same photo enlarged
    back to 224 px tells them as well as ever; the enlarged pass costs a second forward pass of the backbone."""
    return GATE_SIZE if gate == "imagenet" and size < GATE_SIZE else None


def decide(top_prob: float, unknown_score: float | None, rule: Rule | None) -> str:
    """known, unsure or unknown for one photo: its top class's calibrated probability and its unknown-score
    against the export's `verdict` entry (`rule`). With no score (an export without a gate) nothing is unknown."""
    if rule is None or unknown_score is None:
        return KNOWN
    if unknown_score > rule.threshold:
        return UNKNOWN
    least = rule.known_min_prob  # None: an export from before the unsure answer, which cannot tell it
    return KNOWN if least is None or top_prob >= least else UNSURE


def when_unknown(rule: Rule, note: str = "") -> str:
    """When the rule says unknown and how its threshold was set, in the words the model card and the training
    summary share: "<the gate's condition> (threshold 0.4138, fitted on the validation photos, each also ...)";
    `note` ends the parenthesis."""
    how = f"threshold {rule.threshold:.4f}"
    if rule.keep is not None and rule.views[1:]:
        views = f", {rule.n_valid} views in all" if rule.n_valid is not None else ""
        how += (
            f", fitted on the validation photos{_each_also(rule)}{views}, to let {rule.keep:.0%} "
            "through with every class weighing the same"
        )
    elif rule.keep is not None:
        how += f", fitted to let {rule.keep:.0%} of the validation photos through"
    return f"{GATES.get(rule.gate, f'its {rule.gate} score is above the threshold')} ({how}{note})"


def known_rows(rule: Rule) -> str:
    "Which photos the known/unsure line was fitted on, in the words the model card and the training summary share."
    if rule.known_fitted_on == LEFT_OUT:
        n = rule.n_known_fit if rule.n_known_fit is not None else "the"  # a class of one photo and its copies: none
        return f"{n} labelled photos the class means hold, each scored against the means without it and its copies"
    return f"the validation photos{_each_also(rule)}"


def _each_also(rule: Rule) -> str:
    "', each also at a third of its resolution and in grayscale': the degraded views the rule's photos were seen as."
    degraded = [VIEW_WORDS.get(v, v) for v in rule.views[1:]]  # the first view is the photo as it is
    return f", each also {' and '.join(degraded)}" if degraded else ""


def unknown_text(pets: bool) -> str:
    "What the unknown verdict says: cat or dog for Pets models, else the model's own classes."
    return "This doesn't look like " + ("a cat or a dog" if pets else "any of this model's classes")


def pct(q: float) -> str:
    "A probability as a person reads it: 0.91 -> '91 %'."
    return f"{q:.0%}".replace("%", " %")


def torn_between(pairs: Sequence[tuple[str, float]]) -> str:
    "The classes an unsure answer is torn between: 'beagle or basset_hound? (41 %, 30 %)'."
    return f"{' or '.join(lab for lab, _ in pairs)}? ({', '.join(pct(q) for _, q in pairs)})"


def describe(p: Any, pets: bool, top: int = 2) -> str:
    """The one line a person reads for a `Prediction` `p`: its verdict, the species first for Pets breed models.

    - known: "Dog (97 %) — beagle (91 %)" (breeds), "cat (97 %)" (cat/dog), "grizzly (91 %)" (your classes);
    - unsure, naming the classes it is torn between: "Dog (97 %) — beagle or basset_hound? (41 %, 30 %)",
      "grizzly or black? (48 %, 40 %)";
    - unknown: "This doesn't look like a cat or a dog (closest: beagle 12 %, pug 9 %)".
    """
    torn = list(p)[:top]
    if p.verdict == UNKNOWN:
        return f"{unknown_text(pets)} (closest: {', '.join(f'{lab} {pct(q)}' for lab, q in torn)})"
    species = f"{p.species[0][0].capitalize()} ({pct(p.species[0][1])}) — " if p.species else ""
    if p.verdict == UNSURE:
        return species + torn_between(torn)
    return f"{species}{p[0][0]} ({pct(p[0][1])})"
