"""The web app: upload a photo, read what it is, or hear plainly that it is not a cat or a dog.

    catdog-app --model DIR [--port N]        (or `python app.py` in the repository, or `gradio app.py`)

`build_demo(model_dir)` builds the page for one export, without any network call and without pickle. With no
model there, the page explains how to train one. Concurrent users share forward passes: the `predict` endpoint is
batched (Gradio's `batch=True`: up to `MAX_BATCH` waiting uploads in one pass), each upload still checked on its
own, so a bad file gets its own answer and never fails the others. The export's `model.onnx` serves through ONNX
Runtime when it is there (no torch needed); Grad-CAM needs torch's gradients, runs after the answer is shown, one
at a time, and without torch the page says so. The named endpoints `predict`, `explain` and `predict_batch` serve
`gradio_client` users.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network call on import or launch

import gradio as gr  # noqa: E402

from . import verdict as verdict_rule  # noqa: E402
from .backends import available  # noqa: E402
from .card import folder_card  # noqa: E402
from .errors import ExportError  # noqa: E402
from .images import ImageError  # noqa: E402
from .predict import Prediction, Predictor, load_predictor, table, write_csv  # noqa: E402

MAX_FILE_SIZE = 10 * 1024 * 1024  # bytes; bigger uploads are refused before they reach the model
TOP_K = 3
MAX_BATCH = int(os.environ.get("CATDOG_MAX_BATCH", 16))  # uploads answered by one forward pass
CONCURRENCY = int(os.environ.get("CATDOG_CONCURRENCY", 2))  # the batch tab's requests at once
# The forward pass's threads: half the cores, the other half serve HTTP, uploads and decoding. On 2 cores under 50
# clients, 1 thread gave more predictions/s for less CPU each than 2 (BENCHMARKS.md §6).
THREADS = int(os.environ.get("CATDOG_THREADS", 0)) or max(1, (os.cpu_count() or 2) // 2)
TRAIN_HINT = """### No model yet
Train one (a few minutes on a CPU), then restart the app:

```bash
catdog-train --task breeds --out models      # online: downloads Oxford-IIIT Pets and ImageNet weights
catdog-app --model models
```
Offline, point it at your own copies:
`catdog-train --task breeds --data path/to/images --weights path/to/weights.safetensors`."""
NO_TORCH = "_The heatmap needs torch and timm (`pip install torch timm`); the answer above does not._"


def load_model(path: str | os.PathLike) -> tuple[Predictor | None, str]:
    "The predictor at `path` (ONNX Runtime when the export has model.onnx), or None and a message saying why."
    try:
        return load_predictor(path, device="cpu", threads=THREADS), ""
    except ExportError as e:
        return None, f"{TRAIN_HINT}\n\n_Looked in `{Path(path).resolve()}`: {e}_"


def check_upload(value: str | dict | None) -> str:
    """The uploaded file's path, size-checked; `gr.Error` with the reason otherwise.

    The image events run with `preprocess=False`: Gradio's own preprocessing opens the file with PIL and fails
    on a non-image with a generic error, while `open_image` explains what is wrong. Gradio still checks that
    the path is one of its uploads before we see it.
    """
    path = value.get("path") if isinstance(value, dict) else value
    if not path:
        raise gr.Error("Upload a photo first (or paste one, or use the webcam).")
    size = os.path.getsize(path)
    if size > MAX_FILE_SIZE:
        raise gr.Error(f"That file is {size / 2**20:.1f} MB; the limit is {MAX_FILE_SIZE // 2**20} MB.")
    return path


def answer(pred: Predictor, p: Prediction | Exception) -> tuple[dict[str, Any], str]:
    """One upload's `/predict` answer, as the Label component's data: heading = the answer in words
    (`Predictor.describe`, the line `catdog-predict` prints: known, unsure or unknown), confidences = the top
    classes (calibrated); and a sentence on how to read it. A file that cannot be used gets its reason instead."""
    if isinstance(p, Exception):
        reason = getattr(p, "message", None) or str(p)
        return {"label": f"Can't use this file: {reason}", "confidences": []}, "Try another photo."
    label = {"label": pred.describe(p), "confidences": [{"label": lab, "confidence": q} for lab, q in p]}
    if p.verdict == verdict_rule.UNKNOWN:
        text = "The closest of its classes are listed only for reference."
    elif p.verdict == verdict_rule.UNSURE:
        text = "No class is clearly it: the closest are listed."
    else:
        text = ""
    if p.species and p.verdict != verdict_rule.UNKNOWN:
        text += f" {p.species[0][0].capitalize()}: {p.species[0][1]:.0%}, its breeds' probabilities added up."
    return label, text.strip()


def model_card(model_dir: str | os.PathLike) -> str:
    "The export's model card (`catdog_fastai.card`, the README.md beside the export) without its YAML front matter."
    text = folder_card(model_dir)
    return text.split("\n---\n", 1)[1] if text.startswith("---\n") else text


def _checked(values: Sequence[Any]) -> list[str | Exception]:
    out: list[str | Exception] = []
    for v in values:
        try:
            out.append(check_upload(v))
        except gr.Error as e:  # no file or too big: reported in its own answer, the others still predicted
            out.append(e)
    return out


def _predictions(pred: Predictor, checked: list[str | Exception]) -> list[Prediction | Exception]:
    "One forward pass (per `MAX_BATCH`) for the usable files; each unusable one keeps its error in its place."
    preds = iter(pred.predict_each([c for c in checked if isinstance(c, str)], top_k=TOP_K, calibrated=True))
    return [c if isinstance(c, Exception) else next(preds) for c in checked]


class _Explainer:
    "Grad-CAM for the app: the torch model, loaded on first use (the answer never waits for it)."

    def __init__(self, pred: Predictor, model_dir: str | os.PathLike):
        self.pred, self.model_dir, self.lock, self.torch_pred = pred, model_dir, threading.Lock(), None

    def __call__(self, image: str | dict | None) -> tuple[Any, str]:
        if not image:
            return None, ""
        if not available("torch") or not available("timm"):
            return None, NO_TORCH
        from .explain import NoSpatialMapError, overlay

        with self.lock:
            if self.torch_pred is None:
                torch_backend = self.pred.backend.name == "torch"
                self.torch_pred = self.pred if torch_backend else load_predictor(self.model_dir, backend="torch")
        try:
            img, label = overlay(self.torch_pred, check_upload(image))
        except (ImageError, gr.Error):
            return None, ""
        except NoSpatialMapError as e:
            return None, f"_{e}_"
        return img, f"Red areas pushed the model most towards **{label}**."


def build_demo(model_dir: str | os.PathLike, examples: Sequence[str] = ()) -> gr.Blocks:
    "The whole UI for the export in `model_dir` (or the how-to-train page when there is none)."
    pred, problem = load_model(model_dir)

    def predict(images: list[str | dict | None]) -> tuple[list[dict[str, Any]], list[str]]:
        "The `/predict` endpoint, batched: each upload's verdict and top labels, and the answer as a sentence."
        if pred is None:
            raise gr.Error("No model is loaded: train one with catdog-train, then restart the app.")
        answers = [answer(pred, p) for p in _predictions(pred, _checked(images))]
        return [a[0] for a in answers], [a[1] for a in answers]

    def predict_many(files: list[str] | None) -> tuple[dict[str, list], str | None]:
        "A table of predictions for several photos, and the same as a CSV file to download."
        if pred is None:
            raise gr.Error("No model is loaded: train one with catdog-train, then restart the app.")
        if not files:
            raise gr.Error("Choose one or more photos first.")
        rows = table(pred, [Path(f).name for f in files], _predictions(pred, _checked(files)), TOP_K)
        fd, out = tempfile.mkstemp(prefix="predictions-", suffix=".csv")
        os.close(fd)
        write_csv(out, rows)
        return {"headers": rows[0], "data": rows[1:]}, out

    with gr.Blocks(title="Cat or dog? · catdog_fastai", analytics_enabled=False) as demo:
        gr.Markdown(
            "# Cat or dog?\nUpload, paste or snap a photo of a pet. The model says what it sees"
            + (f" — one of {len(pred.vocab)} classes." if pred else ".")
        )
        if pred is None:
            gr.Markdown(problem)
        with gr.Tab("Photo"):
            with gr.Row(equal_height=False):
                with gr.Column():
                    image = gr.Image(
                        sources=["upload", "webcam", "clipboard"], type="filepath", label="Photo", height=320
                    )
                    button = gr.Button("Classify", variant="primary")
                    if examples:
                        gr.Examples(list(examples), inputs=image, label="Or try one of these")
                with gr.Column():
                    said = gr.Markdown()
                    label = gr.Label(num_top_classes=TOP_K, label="Prediction")
                    heat = gr.Image(label="What the model looked at (Grad-CAM)", interactive=False, height=260)
                    heat_note = gr.Markdown()
            sentence = gr.State("")  # not part of the API: `/predict` returns the label alone
            # one pass for the uploads waiting (batch); the label's heading is the answer in words, not its top
            # class, so the answer goes out as the Label's data as it is (postprocess=False)
            batched = dict(batch=True, max_batch_size=MAX_BATCH, concurrency_limit=1, preprocess=False)
            button.click(predict, image, [label, sentence], api_name="predict", postprocess=False, **batched).then(
                lambda text: text, sentence, said, api_name=False
            ).then(
                _Explainer(pred, model_dir) if pred else lambda image: (None, ""),
                image,
                [heat, heat_note],
                api_name="explain",
                preprocess=False,
                concurrency_limit=1,
            )
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="Photos")
            batch_button = gr.Button("Classify all", variant="primary")
            table_out = gr.Dataframe(label="Predictions (the same columns as catdog-predict --csv)", interactive=False)
            csv_file = gr.File(label="Download as CSV", interactive=False)
            batch_button.click(
                predict_many, files, [table_out, csv_file], api_name="predict_batch", concurrency_limit=CONCURRENCY
            )
        with gr.Tab("Model card"):
            gr.Markdown(model_card(model_dir) if pred else problem)
    demo.queue(max_size=256)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860) -> None:
    "Serve `demo` with the app's upload limit and error policy."
    demo.launch(server_name=host, server_port=port, max_file_size=MAX_FILE_SIZE, show_error=False, footer_links=["api"])


def main(argv: list[str] | None = None, examples: Sequence[str] = ()) -> None:
    "`catdog-app --model DIR`: build the page once and serve it."
    ap = argparse.ArgumentParser(description="Serve the cat/dog/breed classifier in a web page.")
    ap.add_argument("--model", default=os.environ.get("CATDOG_MODEL", "models"), help="export folder")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    args = ap.parse_args(argv)
    launch(build_demo(args.model, examples), args.host, args.port)
