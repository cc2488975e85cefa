"""Grad-CAM: which part of the photo drove the prediction (Selvaraju et al., 2017), for any timm CNN backbone.

The class score's gradient with respect to the backbone's last feature map weights each channel; the weighted,
rectified sum is a coarse heatmap, upsampled and laid over the photo. Backbones that return pooled features
(ViT-style) have no spatial map, and `gradcam` says so instead of drawing something misleading.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .errors import CatdogError
from .images import ImageInput, center_crop_resize, open_image
from .predict import Predictor


class NoSpatialMapError(CatdogError):
    """The backbone pools before the head, so there is no feature map to explain."""


def gradcam(pred: Predictor, x: ImageInput, label: str | None = None) -> tuple[np.ndarray, str]:
    """A (size, size) heatmap in [0, 1] for `label` (default: the predicted class), and that label. Needs the
    gradients of the torch model: `pred` is a torch-backend predictor (`load_predictor(..., backend="torch")`)."""
    body, head = pred.model[0], pred.model[1]
    if not body.needs_pool:
        raise NoSpatialMapError(f"{pred.meta.arch} returns pooled features: Grad-CAM needs a CNN feature map")
    xin = torch.from_numpy(pred.normalize(pred.preprocess(x)[None])).to(pred.backend.device)
    with torch.enable_grad():
        fmap = body(xin).detach().requires_grad_(True)
        logits = head(fmap)
        idx = int(logits.argmax(1)) if label is None else pred.vocab.index(label)
        (grad,) = torch.autograd.grad(logits[0, idx], fmap)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * fmap.detach()).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=(pred.size, pred.size), mode="bilinear", align_corners=False)
    cam = cam[0, 0].cpu().numpy()
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cam, pred.vocab[idx]


def _colormap(cam: np.ndarray) -> np.ndarray:
    "A small 'jet'-like colormap (blue -> green -> red) without importing matplotlib."
    r = np.clip(1.5 - np.abs(4 * cam - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * cam - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * cam - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def overlay(pred: Predictor, x: ImageInput, label: str | None = None, alpha: float = 0.45) -> tuple[Image.Image, str]:
    "The model's view of the photo with its Grad-CAM heatmap blended on top, and the explained label."
    img = open_image(x)  # decode once: gradcam's preprocess accepts the decoded image as well
    cam, lab = gradcam(pred, img, label)
    photo = center_crop_resize(img, pred.size)
    heat = Image.fromarray(_colormap(cam))
    return Image.blend(photo, heat, alpha), lab
