"""Cat or dog? Which breed? A Gradio app over the pickle-free export.

    python app.py [--model DIR] [--port N]      (or CATDOG_MODEL=DIR gradio app.py)

`demo` is built at import (so `gradio app.py` works) from `CATDOG_MODEL` (default `models/`), without any network
call and without pickle: it reads `model.safetensors` + `model.json` through `load_predictor`. With no model
there, the app still starts and explains how to train one. The named API endpoint `predict` serves
`gradio_client` users.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network call on import or launch

import gradio as gr  # noqa: E402
from gradio.components.label import LabelConfidence, LabelData  # noqa: E402

from catdog_fastai import ExportError, ImageError, Predictor, load_predictor  # noqa: E402
from catdog_fastai import verdict as verdict_rule  # noqa: E402
from catdog_fastai.card import folder_card  # noqa: E402
from catdog_fastai.explain import NoSpatialMapError, overlay  # noqa: E402
from catdog_fastai.predict import Prediction, table, write_csv  # noqa: E402

HERE = Path(__file__).parent
EXAMPLES = sorted(str(p) for p in (HERE / "examples").glob("*.jpg"))  # real Pets photos, CC BY-SA 4.0
MAX_FILE_SIZE = 10 * 1024 * 1024  # bytes; bigger uploads are refused before they reach the model
TOP_K = 3
# Requests run at once. Measured on the 2-core CPU (BENCHMARKS.md): more only splits the same cores between
# forward passes and adds latency; override with CATDOG_CONCURRENCY on bigger machines.
CONCURRENCY = int(os.environ.get("CATDOG_CONCURRENCY", 2))
TRAIN_HINT = """### No model yet
Train one (a few minutes on a laptop CPU), then restart the app:

```bash
catdog-train --task breeds --out models      # online: downloads Oxford-IIIT Pets and ImageNet weights
python app.py --model models
```
Offline, point it at your own copies:
`catdog-train --task breeds --data path/to/images --weights path/to/weights.safetensors`."""


def load_model(path: str | os.PathLike) -> tuple[Predictor | None, str]:
    "The predictor at `path`, or None and a message for the page saying why."
    try:
        return load_predictor(path, device="cpu"), ""
    except ExportError as e:
        return None, f"{TRAIN_HINT}\n\n_Looked in `{Path(path).resolve()}`: {e}_"


def _check_upload(value: str | dict | None) -> str:
    """The uploaded file's path, size-checked.

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


def verdict_label(**kw: Any) -> gr.Label:
    """Gradio's Label, whose heading may differ from its top class: the "doesn't look like a cat or a dog" verdict,
    or cat/dog above a breed model's breeds. `gr.Label` always heads with the top class, so this one's postprocess
    also takes `LabelData` as is (patched on the instance: a subclass would make Gradio write an `app.pyi` stub)."""
    label = gr.Label(**kw)
    plain = label.postprocess
    label.postprocess = lambda value: value if isinstance(value, LabelData) else plain(value)
    return label


def verdict(pred: Predictor, p: Prediction) -> tuple[LabelData, str]:
    """The `/predict` answer: heading = the answer in words (`Predictor.describe`, the line `catdog-predict` prints:
    known, unsure or unknown), confidences = the top classes (calibrated); and a sentence on how to read it."""
    label = LabelData(label=pred.describe(p), confidences=[LabelConfidence(label=lab, confidence=q) for lab, q in p])
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


def build_demo(model_dir: str | os.PathLike) -> gr.Blocks:
    "The whole UI for the export in `model_dir` (or the how-to-train page when there is none)."
    pred, problem = load_model(model_dir)

    def predict(image: str | dict | None) -> tuple[LabelData, str]:
        "The verdict and top labels for one photo (the `/predict` API endpoint), and the answer as a sentence."
        if pred is None:
            raise gr.Error("No model is loaded: train one with catdog-train, then restart the app.")
        try:  # the predictor gives all the classes when a model has fewer than TOP_K (a cat/dog model: both)
            p = pred.predict(_check_upload(image), top_k=TOP_K, calibrated=True)
        except ImageError as e:
            raise gr.Error(f"Can't use this file: {e}.") from None
        return verdict(pred, p)

    def explain(image: str | dict | None) -> tuple[Any, str]:
        "Grad-CAM overlay for the predicted class."
        if pred is None or not image:
            return None, ""
        try:
            img, label = overlay(pred, _check_upload(image))
        except (ImageError, gr.Error):
            return None, ""
        except NoSpatialMapError as e:
            return None, f"_{e}_"
        return img, f"Red areas pushed the model most towards **{label}**."

    def predict_many(files: list[str] | None) -> tuple[dict[str, list], str | None]:
        "A table of predictions for several photos, and the same as a CSV file to download."
        if pred is None:
            raise gr.Error("No model is loaded: train one with catdog-train, then restart the app.")
        if not files:
            raise gr.Error("Choose one or more photos first.")
        checked: list[str | Exception] = []
        for f in files:
            try:
                checked.append(_check_upload(f))
            except gr.Error as e:  # too big: reported in its row, the others still predicted
                checked.append(e)
        preds = iter(pred.predict_each([c for c in checked if isinstance(c, str)], top_k=TOP_K, calibrated=True))
        results: list[Prediction | Exception] = [c if isinstance(c, Exception) else next(preds) for c in checked]
        rows = table(pred, [Path(f).name for f in files], results, TOP_K)
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
                    if EXAMPLES:
                        gr.Examples(EXAMPLES, inputs=image, label="Or try one of these")
                with gr.Column():
                    answer = gr.Markdown()
                    label = verdict_label(num_top_classes=TOP_K, label="Prediction")
                    heat = gr.Image(label="What the model looked at (Grad-CAM)", interactive=False, height=260)
                    heat_note = gr.Markdown()
            sentence = gr.State("")  # not part of the API: `/predict` returns the label alone, as before
            button.click(predict, image, [label, sentence], api_name="predict", preprocess=False).then(
                lambda text: text, sentence, answer, api_name=False
            ).then(explain, image, [heat, heat_note], api_name="explain", preprocess=False)
        with gr.Tab("Batch"):
            files = gr.File(file_count="multiple", file_types=["image"], type="filepath", label="Photos")
            batch_button = gr.Button("Classify all", variant="primary")
            table_out = gr.Dataframe(label="Predictions (the same columns as catdog-predict --csv)", interactive=False)
            csv_file = gr.File(label="Download as CSV", interactive=False)
            batch_button.click(predict_many, files, [table_out, csv_file], api_name="predict_batch")
        with gr.Tab("Model card"):
            gr.Markdown(model_card(model_dir) if pred else problem)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=256)
    return demo


demo = build_demo(os.environ.get("CATDOG_MODEL", "models"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Serve the cat/dog/breed classifier in a web page.")
    ap.add_argument("--model", default=os.environ.get("CATDOG_MODEL", "models"), help="export folder")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    ap.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    args = ap.parse_args(argv)
    app = demo if args.model == os.environ.get("CATDOG_MODEL", "models") else build_demo(args.model)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=MAX_FILE_SIZE,
        show_error=False,
        footer_links=["api"],
    )


if __name__ == "__main__":
    main()
