"""Train and evaluate a small MLP classifier on a preprocessed DataFrame with Keras.

A trained model is a folder: ``model.keras`` (Keras's own format) and
``signature.json`` (ordered feature names and class labels). Training runs on
a GPU when TensorFlow sees one and on the CPU otherwise.

This module imports TensorFlow, so only steps in the tensorflow image import
it; TensorFlow never shares an image with torch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import tensorflow as tf

from zenml.integrations.tabular import (
    Evaluation,
    TrainingResult,
    evaluation_data,
    training_data,
)

logger = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
SIGNATURE_FILE = "signature.json"
FORMAT_VERSION = 1
_EVAL_BATCH_SIZE = 8192


def select_device(device: str | None = None) -> str:
    """Return ``device`` if given, else the first GPU if there is one, else the CPU."""
    if device is not None:
        return device
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


def build_model(
    in_features: int, hidden_sizes: Sequence[int], num_classes: int
) -> tf.keras.Model:
    """Dense layers with ReLU between them and class probabilities out."""
    layers: list[Any] = [tf.keras.Input(shape=(in_features,), name="features")]
    layers += [tf.keras.layers.Dense(size, activation="relu") for size in hidden_sizes]
    layers.append(tf.keras.layers.Dense(num_classes, activation="softmax"))
    return tf.keras.Sequential(layers)


def train(
    df: pd.DataFrame,
    label: str,
    model_dir: str | os.PathLike[str],
    *,
    hidden_sizes: Sequence[int] = (32, 16),
    epochs: int = 60,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    seed: int = 0,
    device: str | None = None,
) -> TrainingResult:
    """Train an MLP on ``df`` and save it to ``model_dir``.

    Features are all columns except ``label``, in ``df``'s order; they must be
    numeric and have no missing values. The seed fixes the initial weights and
    the order of the batches.
    """
    data = training_data(df, label)
    feature_names, class_labels = data.feature_names, data.class_labels
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be at least 1.")

    target = select_device(device)
    started = time.monotonic()
    tf.keras.utils.set_random_seed(seed)
    with tf.device(target):
        model = build_model(len(feature_names), hidden_sizes, len(class_labels))
        model.compile(
            optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate),
            loss="sparse_categorical_crossentropy",
        )
        history = model.fit(
            data.features,
            data.targets,
            epochs=epochs,
            batch_size=batch_size,
            shuffle=True,
            verbose=0,
        )
    final_loss = float(history.history["loss"][-1])
    logger.info(
        "Trained an MLP on %d rows on %s in %.1f s; final loss %.4f.",
        len(df),
        target,
        time.monotonic() - started,
        final_loss,
    )

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    signature = {
        "format_version": FORMAT_VERSION,
        "feature_names": feature_names,
        "class_labels": class_labels,
    }
    (out / SIGNATURE_FILE).write_text(json.dumps(signature, indent=2) + "\n")
    return TrainingResult(
        out, target, tuple(feature_names), tuple(class_labels), final_loss
    )


def load_model(
    model_dir: str | os.PathLike[str],
) -> tuple[tf.keras.Model, list[str], list[str]]:
    """Load a saved model; return it with its feature names and class labels."""
    folder = Path(model_dir)
    signature_file = folder / SIGNATURE_FILE
    if not signature_file.is_file():
        raise ValueError(f"{folder} holds no {SIGNATURE_FILE}; train a model first.")
    signature = json.loads(signature_file.read_text())
    if signature.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder} holds a model of format {signature.get('format_version')!r}; "
            f"this trainer reads format {FORMAT_VERSION}. Retrain the model."
        )
    model = tf.keras.models.load_model(folder / MODEL_FILE)
    return model, list(signature["feature_names"]), list(signature["class_labels"])


def evaluate(
    model_dir: str | os.PathLike[str], df: pd.DataFrame, label: str
) -> Evaluation:
    """Return the accuracy and confusion matrix of the model in ``model_dir``."""
    model, feature_names, class_labels = load_model(model_dir)
    features, truth = evaluation_data(df, label, feature_names, class_labels)
    probabilities = model.predict(features, batch_size=_EVAL_BATCH_SIZE, verbose=0)
    return Evaluation.from_indices(truth, probabilities.argmax(axis=1), class_labels)
