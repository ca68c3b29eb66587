"""What every trainer shares: checked feature matrices, labels and evaluations.

Framework-free (numpy and pandas only), so the PyTorch and TensorFlow trainers
check their input and report their results the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TrainingResult:
    """Where the model was saved and what it was trained on."""

    model_dir: Path
    device: str
    feature_names: tuple[str, ...]
    class_labels: tuple[str, ...]
    final_loss: float


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and a confusion matrix whose rows are true and columns predicted."""

    accuracy: float
    labels: tuple[str, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict with lists."""
        return {
            "accuracy": self.accuracy,
            "labels": list(self.labels),
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
        }

    @classmethod
    def from_indices(
        cls, truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]
    ) -> Evaluation:
        """Score predicted class indices against true ones."""
        k = len(labels)
        matrix = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
        accuracy = float(np.trace(matrix)) / len(truth)
        rows = tuple(tuple(int(v) for v in row) for row in matrix)
        return cls(accuracy, tuple(labels), rows)


def split_features(df: pd.DataFrame, label: str) -> list[str]:
    """Every column but `label`, in the frame's order."""
    if label not in df.columns:
        raise ValueError(f"Label column {label!r} not in columns {list(df.columns)}.")
    return [column for column in df.columns if column != label]


def feature_matrix(df: pd.DataFrame, feature_names: Sequence[str]) -> np.ndarray:
    """The features as float32, refusing missing, non-numeric or empty values."""
    missing = [name for name in feature_names if name not in df.columns]
    if missing:
        raise ValueError(f"Feature columns {missing} are missing from the DataFrame.")
    frame = df[list(feature_names)]
    non_numeric = [
        name
        for name in feature_names
        if not pd.api.types.is_numeric_dtype(frame[name].dtype)
    ]
    if non_numeric:
        raise ValueError(
            f"Feature columns {non_numeric} are not numeric; preprocess them first."
        )
    values = frame.to_numpy(dtype=np.float32, na_value=np.nan)
    with_nan = [
        name for i, name in enumerate(feature_names) if np.isnan(values[:, i]).any()
    ]
    if with_nan:
        raise ValueError(
            f"Feature columns {with_nan} have missing values; impute them first."
        )
    return values


def label_strings(values: pd.Series, label: str) -> list[str]:
    """The labels as strings; missing labels are an error."""
    if values.isna().any():
        raise ValueError(f"Label column {label!r} has missing values.")
    return [str(value) for value in values]


@dataclass(frozen=True)
class TrainingData:
    """A frame ready for a trainer: its features and each row's class index."""

    feature_names: list[str]
    features: np.ndarray
    """float32, one row per example, columns in `feature_names`' order."""
    class_labels: list[str]
    """Sorted; a row's class index points into this list."""
    targets: np.ndarray
    """int64 class indices."""


def training_data(df: pd.DataFrame, label: str) -> TrainingData:
    """Check `df` and split it into features and class indices of `label`.

    Features are every column but `label`, in the frame's order; there must be
    at least two classes.
    """
    feature_names = split_features(df, label)
    features = feature_matrix(df, feature_names)
    labels = label_strings(df[label], label)
    class_labels = sorted(set(labels))
    if len(class_labels) < 2:
        raise ValueError(
            f"Label {label!r} needs at least two classes, got {class_labels}."
        )
    return TrainingData(
        feature_names, features, class_labels, _class_indices(labels, class_labels)
    )


def evaluation_data(
    df: pd.DataFrame,
    label: str,
    feature_names: Sequence[str],
    class_labels: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Features and true class indices of `df` for a model trained on these.

    Refuses a missing label column, an empty frame and labels the model never saw.
    """
    if label not in df.columns:
        raise ValueError(f"Label column {label!r} not in columns {list(df.columns)}.")
    if len(df) == 0:
        raise ValueError("Cannot evaluate on an empty DataFrame.")
    features = feature_matrix(df, feature_names)
    labels = label_strings(df[label], label)
    unknown = sorted(set(labels) - set(class_labels))
    if unknown:
        raise ValueError(
            f"Labels {unknown} were not seen in training; the model knows "
            f"{list(class_labels)}."
        )
    return features, _class_indices(labels, class_labels)


def _class_indices(labels: Sequence[str], class_labels: Sequence[str]) -> np.ndarray:
    index_of = {name: i for i, name in enumerate(class_labels)}
    return np.asarray([index_of[v] for v in labels], dtype=np.int64)
