"""The web app: upload a photo, read what it is, or hear plainly that it is not a cat or a dog.

    catdog-app --model DIR [--port N] [--share]        (or `python app.py` in the repository, or `gradio app.py`)

`build_demo(model_dir)` builds the page for one export, without any network call and without pickle. With no
model there, the page explains how to train one. The page answers a photo when Classify is clicked, and an
example photo on the click that picks it. It says cat or dog first ("Cat (100 %)"), the breed below; the
probabilities are `Predictor.predict`'s (calibrated), the same `catdog-predict` prints.

The Grad-CAM heatmap comes after the answer (it needs torch's gradients; the answer runs through ONNX Runtime when
the export has model.onnx) and always explains the photo and the class shown beside it: a new classification
clears it, and a heatmap that finishes after the user moved on to another photo is dropped (`_Shown`).

`gradio_client` users get the named endpoints `predict` (batched: concurrent uploads share forward passes, each
checked on its own), `explain` and `predict_batch`; the page's own events are private.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network call on import or launch

import gradio as gr  # noqa: E402

from . import verdict as verdict_rule  # noqa: E402
from .backends import available  # noqa: E402
from .card import folder_card  # noqa: E402
from .cli import option, parse  # noqa: E402
from .errors import ExportError  # noqa: E402
from .images import ImageError  # noqa: E402
from .predict import Prediction, Predictor, load_predictor  # noqa: E402
from .predict_cli import table, write_csv  # noqa: E402

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
NO_MODEL = "No model is loaded: train one with catdog-train, then restart the app."


def load_model(path: str | os.PathLike, threads: int | None = None) -> tuple[Predictor | None, str]:
    "The predictor at `path` (ONNX Runtime when the export has model.onnx), or None and a message saying why."
    try:
        return load_predictor(path, device="cpu", threads=threads or THREADS), ""
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


pct = verdict_rule.pct  # "99 %": one way to write a probability, on the page and in every answer line


def _reason(p: Exception) -> str:
    return getattr(p, "message", None) or str(p)


def answer(pred: Predictor, p: Prediction | Exception) -> dict[str, Any]:
    """One upload's `/predict` answer, as the Label component's data: heading = the answer in words
    (`Predictor.describe`, the line `catdog-predict` prints: known, unsure or unknown), confidences = the top
    classes (`predict`'s calibrated probabilities). A file that cannot be used gets its reason instead."""
    if isinstance(p, Exception):
        return {"label": f"Can't use this file: {_reason(p)}", "confidences": []}
    return {"label": pred.describe(p), "confidences": [{"label": lab, "confidence": q} for lab, q in p]}


def page_answer(pred: Predictor, p: Prediction | Exception) -> tuple[str, dict[str, Any], str]:
    """What the page shows for one photo: a headline (for Pets models the species, "Cat (100 %)"; "This doesn't
    look like a cat or a dog"), the Label's data (heading: the breed answer, "Bengal (99 %)", or what it is torn
    between, "beagle or basset_hound? (41 %, 30 %)"; bars: the top classes) and a note on how to read an unsure or
    unknown answer. Same numbers as `answer`."""
    if isinstance(p, Exception):
        return "### Can't use this file", {"label": _reason(p), "confidences": []}, "Try another photo."
    bars = [{"label": lab, "confidence": q} for lab, q in p]
    closest = " or ".join(f"{lab} ({pct(q)})" for lab, q in p[:2])
    if p.verdict == verdict_rule.UNKNOWN:
        headline = f"### {pred.unknown_text()}"
        return headline, {"label": f"Closest: {closest}", "confidences": bars}, "The closest classes, for reference."
    unsure = p.verdict == verdict_rule.UNSURE
    kind = "Breed" if p.species else "Class"
    heading = verdict_rule.torn_between(p[:2]) if unsure else f"{p[0][0]} ({pct(p[0][1])})"
    note = f"No {kind.lower()} is clearly it: these are the closest." if unsure else ""
    headline = f"### {p.species[0][0].capitalize()} ({pct(p.species[0][1])})" if p.species else ""
    return headline, {"label": heading, "confidences": bars}, note


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
    preds = iter(pred.predict_each([c for c in checked if isinstance(c, str)], top_k=TOP_K))
    return [c if isinstance(c, Exception) else next(preds) for c in checked]


class _Explainer:
    "Grad-CAM for the app: the torch model, loaded on first use (the answer never waits for it)."

    def __init__(self, pred: Predictor, model_dir: str | os.PathLike):
        self.pred, self.model_dir, self.lock, self.torch_pred = pred, model_dir, threading.Lock(), None

    def __call__(self, image: str | dict | None, label: str | None = None) -> tuple[Any, str]:
        """The heatmap and its caption for `image`, explaining `label` (default: the answer `predict` gives, with
        the page's TTA setting), so the caption names the class shown beside it."""
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
            path = check_upload(image)
            label = label or self.pred.predict(path, top_k=1)[0][0]
            img, label = overlay(self.torch_pred, path, label)
        except (ImageError, gr.Error):
            return None, ""
        except NoSpatialMapError as e:
            return None, f"_{e}_"
        return img, f"Red areas pushed the model most towards **{label}**."


class _Shown:
    """Per browser session: which classification the page shows now, as (token, photo, top class). Every new
    classification takes a new token; a heatmap computed for an older token is dropped, not shown. (A plain class:
    `gr.State(_Shown)` makes one per session and hands the steps that same object.)"""

    def __init__(self) -> None:
        self.current: tuple[int, str | None, str | None] = (0, None, None)


class _Page:
    "The page's three steps for one classification: clear and take a token, answer, explain."

    def __init__(self, pred: Predictor | None, explain: Any):
        self.pred, self.explain_fn = pred, explain

    def start(self, shown: _Shown | None) -> tuple[Any, str, _Shown]:
        "A new classification: a new token, and the previous heatmap cleared at once."
        shown = shown or _Shown()  # the session's first: kept in its gr.State from now on
        shown.current = (shown.current[0] + 1, None, None)
        return None, "", shown

    def reset(self, shown: _Shown | None) -> tuple[Any, ...]:
        "A new photo in the box: the answer and heatmap of the previous one go, until this one is classified."
        return (*self.start(shown), "", None, "")

    def classify(self, image: str | dict | None, shown: _Shown) -> tuple[Any, ...]:
        "The answer for the photo in the box, unless a newer classification has started meanwhile."
        token = shown.current[0]
        if self.pred is None:
            raise gr.Error(NO_MODEL)
        (p,) = _predictions(self.pred, _checked([image]))
        if shown.current[0] != token:  # another classification started meanwhile: its answer will show
            return gr.skip(), gr.skip(), gr.skip()
        if isinstance(p, Prediction):
            shown.current = (token, check_upload(image), p[0][0])
        return page_answer(self.pred, p)

    def explain(self, shown: _Shown) -> tuple[Any, Any]:
        "The heatmap for the photo and class on the page, dropped if the page has moved on when it is ready."
        token, photo, label = shown.current
        if photo is None:
            return gr.skip(), gr.skip()
        heat = self.explain_fn(photo, label)
        if shown.current[0] != token:  # the page moved on to another photo while this one was computed
            return gr.skip(), gr.skip()
        return heat


def build_demo(
    model_dir: str | os.PathLike,
    examples: Sequence[str] = (),
    threads: int | None = None,
    max_batch: int | None = None,
    concurrency: int | None = None,
) -> gr.Blocks:
    """The whole UI for the export in `model_dir` (or the how-to-train page when there is none). `threads`,
    `max_batch`, `concurrency`: `catdog-app`'s options (default: the CATDOG_* settings)."""
    pred, problem = load_model(model_dir, threads)
    explainer = _Explainer(pred, model_dir) if pred else (lambda image, label=None: (None, ""))
    page = _Page(pred, explainer)

    def predict(images: list[str | dict | None]) -> tuple[list[dict[str, Any]]]:
        "The `/predict` endpoint, batched: each upload's verdict and top labels."
        if pred is None:
            raise gr.Error(NO_MODEL)
        return ([answer(pred, p) for p in _predictions(pred, _checked(images))],)

    def predict_many(files: list[str] | None) -> tuple[dict[str, list], str | None]:
        "A table of predictions for several photos, and the same as a CSV file to download."
        if pred is None:
            raise gr.Error(NO_MODEL)
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
                    ex = gr.Examples(list(examples), inputs=image, label="Or try one of these") if examples else None
                with gr.Column():
                    headline = gr.Markdown(elem_id="headline")
                    label = gr.Label(num_top_classes=TOP_K, label="Prediction")
                    note = gr.Markdown(elem_id="note")
                    heat = gr.Image(
                        label="What the model looked at (Grad-CAM)", interactive=False, height=260, elem_id="heat"
                    )
                    heat_note = gr.Markdown(elem_id="heat-note")
            shown = gr.State(None)  # the session's _Shown, made by its first `start`, then mutated in place
            private: dict[str, Any] = dict(api_visibility="private")
            triggers = [button.click] + ([ex.load_input_event.then] if ex else [])
            for trigger in triggers:  # Classify, and a click on an example: the same three steps
                trigger(page.start, shown, [heat, heat_note, shown], queue=False, show_progress="hidden",
                        api_name="page_start", **private).then(
                    page.classify, [image, shown], [headline, label, note], preprocess=False, postprocess=False,
                    concurrency_id="forward", concurrency_limit=1, api_name="page_classify", trigger_mode="always_last",
                    **private,
                ).then(page.explain, shown, [heat, heat_note], concurrency_id="explain", concurrency_limit=1,
                       api_name="page_explain", trigger_mode="always_last", **private)  # fmt: skip
            image.upload(page.reset, shown, [heat, heat_note, shown, headline, label, note], queue=False,
                         show_progress="hidden", api_name="page_reset", **private)  # fmt: skip
            # the API: the same components, triggered by name only (`gradio_client`), never by the page
            api = gr.Button(visible=False)
            api.click(predict, image, label, api_name="predict", postprocess=False, preprocess=False, batch=True,
                      max_batch_size=max_batch or MAX_BATCH, concurrency_id="forward", concurrency_limit=1)  # fmt: skip
            api.click(explainer, image, [heat, heat_note], api_name="explain", preprocess=False,
                      concurrency_id="explain", concurrency_limit=1)  # fmt: skip
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="Photos")
            batch_button = gr.Button("Classify all", variant="primary")
            table_out = gr.Dataframe(label="Predictions (the same columns as catdog-predict --csv)", interactive=False)
            csv_file = gr.File(label="Download as CSV", interactive=False)
            batch_button.click(predict_many, files, [table_out, csv_file], api_name="predict_batch",
                               concurrency_limit=concurrency or CONCURRENCY)  # fmt: skip
        with gr.Tab("Model card"):
            gr.Markdown(model_card(model_dir) if pred else problem)
    demo.queue(max_size=256)
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    "Serve `demo` with the app's upload limit and error policy."
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_FILE_SIZE, show_error=False,
                footer_links=["api"])  # fmt: skip


@dataclass
class AppOptions:
    model: str = option("models", "export folder (made by catdog-train)", "model", env="CATDOG_MODEL")
    threads: int = option(0, "CPU threads for the forward pass; 0 = half the cores, the rest serve HTTP and decode "
                          "uploads (BENCHMARKS.md §6)", "model", env="CATDOG_THREADS")  # fmt: skip
    host: str = option("127.0.0.1", "address to listen on; 0.0.0.0 serves other machines", "server",
                       env="GRADIO_SERVER_NAME")  # fmt: skip
    port: int = option(7860, "port to listen on", "server", env="GRADIO_SERVER_PORT")
    share: bool = option(False, "also serve through a temporary public https://*.gradio.live link (Gradio's share "
                         "tunnel: needs internet; anyone with the link can use the app)", "server")  # fmt: skip
    max_batch: int = option(16, "uploads answered by one forward pass when users submit together", "serving",
                            env="CATDOG_MAX_BATCH")  # fmt: skip
    concurrency: int = option(2, "Batch-tab requests served at once", "serving", env="CATDOG_CONCURRENCY")


EPILOG = """settings from the environment (a flag wins over its variable):
  CATDOG_MODEL, CATDOG_THREADS, CATDOG_MAX_BATCH, CATDOG_CONCURRENCY, GRADIO_SERVER_NAME, GRADIO_SERVER_PORT
  as listed beside each option; `gradio app.py` (auto-reload while editing) reads them the same way.
  GRADIO_ANALYTICS_ENABLED is False unless you set it: the app makes no network call of its own.

examples:
  catdog-app --model models
  catdog-app --model models --host 0.0.0.0 --port 8080
  CATDOG_MODEL=models gradio app.py"""


def main(argv: list[str] | None = None, examples: Sequence[str] = ()) -> None:
    "`catdog-app --model DIR`: build the page once and serve it."
    o = parse(AppOptions, argv, lambda o: "--threads must be >= 0" if o.threads < 0 else None, prog="catdog-app",
              description="Serve the cat/dog/breed classifier in a web page.", epilog=EPILOG)  # fmt: skip
    demo = build_demo(o.model, examples, threads=o.threads or None, max_batch=o.max_batch, concurrency=o.concurrency)
    launch(demo, o.host, o.port, o.share)
