"""Near-duplicate photos as groups: the same photo re-encoded, resized, cropped or mirrored, or the same animal in
the same scene, found from the pretrained backbone's pooled features.

Two photos are linked when the cosine similarity of their unit-length features is at least `THRESHOLD`; a group is a
connected component of those links. `catdog-clean` reports the groups (and the ones that straddle train and valid
as leakage); `catdog-train` keeps each group on one side of its split. NumPy only (Pillow for
`thumbprint`), so a split can use it without torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Chosen with benchmarks/clean.py on pets-dev (tf_efficientnet_lite0, 224 px view; benchmarks/results/clean-cpu.json):
# the most similar photos of two *different* breeds reach 0.864, copies cropped by 10 % go down to 0.889 and
# mirrored ones to 0.943, so 0.88 links every such copy and no two animals of different breeds. Copies re-encoded
# at JPEG q30 or halved in size fall to 0.78 on features (blur), so those are linked by their pixels instead:
THRESHOLD = 0.88
PIXEL_THRESHOLD = 0.95  # 8x8 grey thumbprints this correlated (q30, half size: >= 0.999; other breeds: <= 0.83) ...
PIXEL_FLOOR = 0.7  # ... are copies when their features agree at least this much (copies: >= 0.78)


def unit_rows(feats: np.ndarray) -> np.ndarray:
    "Rows scaled to unit length (a zero row stays zero, so it links to nothing)."
    feats = np.asarray(feats, dtype=np.float64)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.where(norms > 0, norms, 1.0)


def thumbprint(img: Any, side: int = 8) -> np.ndarray:
    """A PIL image's pixels in brief, for copies the features blur (re-encoded, shrunk): its `side` x `side` grey
    thumbnail and that of its mirror image, each centred and of unit length, as one row."""
    from PIL import Image, ImageOps

    grey = ImageOps.grayscale(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
    a = np.asarray(grey.resize((side, side), Image.Resampling.BOX), dtype=np.float64)
    rows = [a.ravel() - a.mean(), a[:, ::-1].ravel() - a.mean()]
    return np.concatenate([r / (np.linalg.norm(r) or 1.0) for r in rows])


def similar_pairs(
    feats: np.ndarray, threshold: float = THRESHOLD, thumbs: np.ndarray | None = None, block: int = 1024
) -> np.ndarray:
    """(i, j, similarity) rows, i < j, for every pair with cosine similarity >= `threshold`, or, with `thumbs`
    (`thumbprint` rows), pixels correlated >= PIXEL_THRESHOLD (as is or mirrored) and similarity >= PIXEL_FLOOR.
    Computed in blocks of rows, so 50,000 photos never need an n x n matrix in memory."""
    unit = unit_rows(feats)
    half = None if thumbs is None else np.asarray(thumbs).shape[1] // 2
    out = []
    for start in range(0, len(unit), block):
        sims = unit[start : start + block] @ unit.T
        linked = sims >= threshold
        if thumbs is not None:
            t = np.asarray(thumbs)[start : start + block, :half]
            pix = np.maximum(t @ thumbs[:, :half].T, t @ thumbs[:, half:].T)
            linked |= (pix >= PIXEL_THRESHOLD) & (sims >= PIXEL_FLOOR)
        i, j = np.nonzero(linked)
        i = i + start
        keep = i < j
        out.append(np.stack([i[keep], j[keep], sims[i[keep] - start, j[keep]]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 3))


def near_duplicate_groups(
    feats: np.ndarray, threshold: float = THRESHOLD, thumbs: np.ndarray | None = None
) -> np.ndarray:
    """A group id per row of `feats`: connected components over cosine similarity >= `threshold` (and, with
    `thumbs`, the pixel links of `similar_pairs`). Singletons get their own id; ids run 0..n_groups-1 in order of
    first appearance, so equal inputs give equal ids."""
    n = len(feats)
    parent = np.arange(n)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]  # path halving keeps the trees flat
            a = parent[a]
        return a

    for i, j, _ in similar_pairs(feats, threshold, thumbs):
        ri, rj = root(int(i)), root(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(a) for a in range(n)], dtype=np.int64)
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # order groups by the first row in each
    return rank[inverse].astype(np.int64)
