"""Train and evaluate a small MLP classifier on a preprocessed DataFrame with PyTorch.

A trained model is a folder: ``model.pt`` (weights and architecture, for PyTorch),
``model.onnx`` (for serving with onnxruntime, which needs no torch) and
``signature.json`` (ordered feature names and class labels). Training uses CUDA
when it is available and the CPU otherwise.

This module imports torch, so only the pytorch integration's steps import it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from zenml.integrations.tabular import (
    Evaluation,
    TrainingResult,
    evaluation_data,
    training_data,
)

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
ONNX_FILE = "model.onnx"
SIGNATURE_FILE = "signature.json"
ONNX_INPUT_NAME = "features"
ONNX_OUTPUT_NAME = "probabilities"
FORMAT_VERSION = 1
# Opset 17 loads in every onnxruntime from 1.14 on, which older serving images have.
ONNX_OPSET = 17
_EVAL_BATCH_SIZE = 8192


class MLPClassifier(nn.Module):
    """Fully connected layers with ReLU between them; outputs class logits."""

    def __init__(
        self, in_features: int, hidden_sizes: Sequence[int], num_classes: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def select_device(device: str | None = None) -> torch.device:
    """Return ``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train(
    df: pd.DataFrame,
    label: str,
    model_dir: str | os.PathLike[str],
    *,
    hidden_sizes: Sequence[int] = (32, 16),
    epochs: int = 60,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | None = None,
    num_threads: int | None = None,
) -> TrainingResult:
    """Train an MLP on ``df`` and save it to ``model_dir``.

    Features are all columns except ``label``, in ``df``'s order; they must be
    numeric and have no missing values. The same data, arguments and device give
    the same weights. ``num_threads`` sets torch's CPU threads while training: small
    models train several times faster on one thread than on contended cores.
    """
    data = training_data(df, label)
    feature_names, class_labels = data.feature_names, data.class_labels
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be at least 1.")
    _require_onnx()

    target = select_device(device)
    x = torch.as_tensor(data.features, dtype=torch.float32, device=target)
    y = torch.as_tensor(data.targets, dtype=torch.long, device=target)

    started = time.monotonic()
    previous_threads = torch.get_num_threads()
    # fork_rng keeps the caller's random state as it was; the seed governs only this.
    rng_devices = [target.index or 0] if target.type == "cuda" else []
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(seed)
            model = MLPClassifier(len(feature_names), hidden_sizes, len(class_labels))
            model.to(target)
            final_loss = _fit(
                model, x, y, epochs, batch_size, learning_rate, weight_decay, seed
            )
    finally:
        torch.set_num_threads(previous_threads)
    logger.info(
        "Trained an MLP on %d rows on %s in %.1f s; final loss %.4f.",
        len(df),
        target,
        time.monotonic() - started,
        final_loss,
    )

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
            "in_features": len(feature_names),
            "hidden_sizes": list(hidden_sizes),
            "feature_names": feature_names,
            "class_labels": class_labels,
        },
        out / MODEL_FILE,
    )
    _export_onnx(model, len(feature_names), out / ONNX_FILE)
    signature = {
        "format_version": FORMAT_VERSION,
        "feature_names": feature_names,
        "class_labels": class_labels,
        "input_name": ONNX_INPUT_NAME,
        "output_name": ONNX_OUTPUT_NAME,
    }
    (out / SIGNATURE_FILE).write_text(json.dumps(signature, indent=2) + "\n")
    return TrainingResult(
        out, str(target), tuple(feature_names), tuple(class_labels), final_loss
    )


def load_model(
    model_dir: str | os.PathLike[str], device: str | None = None
) -> tuple[MLPClassifier, list[str], list[str]]:
    """Load ``model.pt``; return the model in eval mode, feature names, class labels."""
    target = select_device(device)
    checkpoint = torch.load(
        Path(model_dir) / MODEL_FILE, map_location=target, weights_only=True
    )
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{model_dir} holds a model of format {checkpoint.get('format_version')!r}"
            f"; this trainer reads format {FORMAT_VERSION}. Retrain the model."
        )
    # Built on the meta device: random initial weights would be thrown away, and
    # drawing them would move the caller's random generator.
    with torch.device("meta"):
        model = MLPClassifier(
            checkpoint["in_features"],
            checkpoint["hidden_sizes"],
            len(checkpoint["class_labels"]),
        )
    model.load_state_dict(checkpoint["state_dict"], assign=True)
    model.to(target).eval()
    return model, list(checkpoint["feature_names"]), list(checkpoint["class_labels"])


def evaluate(
    model_dir: str | os.PathLike[str],
    df: pd.DataFrame,
    label: str,
    *,
    device: str | None = None,
) -> Evaluation:
    """Return the accuracy and confusion matrix of the model in ``model_dir``."""
    model, feature_names, class_labels = load_model(model_dir, device)
    features, truth = evaluation_data(df, label, feature_names, class_labels)

    target = next(model.parameters()).device
    x = torch.as_tensor(features, dtype=torch.float32, device=target)
    with torch.no_grad():
        predicted = torch.cat(
            [
                model(x[start : start + _EVAL_BATCH_SIZE]).argmax(dim=1)
                for start in range(0, len(x), _EVAL_BATCH_SIZE)
            ]
        )
    return Evaluation.from_indices(truth, predicted.cpu().numpy(), class_labels)


def _fit(
    model: MLPClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    seed: int,
) -> float:
    optimizer = torch.optim.Adam(
        model.parameters(), lr=learning_rate, weight_decay=weight_decay
    )
    loss_fn = nn.CrossEntropyLoss()
    # The shuffle comes from a CPU generator so the order is the same on any device.
    generator = torch.Generator().manual_seed(seed)
    model.train()
    epoch_loss = float("nan")
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        total = 0.0
        for start in range(0, len(x), batch_size):
            rows = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[rows]), y[rows])
            loss.backward()
            optimizer.step()
            total += float(loss.item()) * len(rows)
        epoch_loss = total / len(x)
        logger.debug("Epoch %d: loss %.4f.", epoch + 1, epoch_loss)
    model.eval()
    return epoch_loss


def _export_onnx(model: MLPClassifier, in_features: int, path: Path) -> None:
    # Softmax goes into the graph so that the server gets probabilities directly.
    exportable = nn.Sequential(copy.deepcopy(model).cpu(), nn.Softmax(dim=1)).eval()
    example = torch.zeros(2, in_features)
    with warnings.catch_warnings():
        # The legacy TorchScript exporter is chosen on purpose: it needs only the
        # onnx package, whereas the dynamo exporter also needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            exportable,
            (example,),
            str(path),
            dynamo=False,
            input_names=[ONNX_INPUT_NAME],
            output_names=[ONNX_OUTPUT_NAME],
            dynamic_axes={
                ONNX_INPUT_NAME: {0: "batch"},
                ONNX_OUTPUT_NAME: {0: "batch"},
            },
            opset_version=ONNX_OPSET,
        )


def _require_onnx() -> None:
    # Checked before training so that a missing package does not waste a run.
    if importlib.util.find_spec("onnx") is None:
        raise ImportError(
            "Exporting model.onnx needs the 'onnx' package; install it into the "
            "pytorch image (pip install onnx)."
        )
