"""Penguin species with Keras: Beam preprocessing and TensorFlow training.

Beam work runs in `zenml/base`, training and evaluation in `zenml/tensorflow`,
an image FROM the base that holds TensorFlow and never torch.

    zenml pipeline run examples/tensorflow/pipeline.py
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zenml import pipeline, step

if TYPE_CHECKING:
    import pandas as pd

LABEL = "species"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]


@step(outputs=("train", "test"))
def load(
    seed: int = 7, test_fraction: float = 0.25
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Palmer penguins with a species, shuffled by seed and cut in two."""
    import palmerpenguins

    data = palmerpenguins.load_penguins().dropna(subset=[LABEL])
    data = data.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = round(len(data) * test_fraction)
    return data.iloc[cut:].reset_index(drop=True), data.iloc[:cut].reset_index(
        drop=True
    )


@step(outputs=("train", "test"))
def preprocess(
    train: pd.DataFrame, test: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Impute, standardise and one-hot encode with Apache Beam, fitted on train."""
    import os
    import tempfile

    from zenml.integrations.beam.preprocess import preprocess as beam_preprocess

    with tempfile.TemporaryDirectory(dir=os.environ.get("ZENML_STEP_DIR")) as work_dir:
        result = beam_preprocess(
            {"train": train, "test": test},
            NUMERIC,
            CATEGORICAL,
            [LABEL],
            work_dir=work_dir,
        )
    return result.splits["train"], result.splits["test"]


@step(integration="tensorflow")
def train(train: pd.DataFrame, epochs: int = 60, seed: int = 0) -> Path:
    """Fit a small Keras classifier; the result is the saved model's folder."""
    import tempfile

    from zenml.integrations.tensorflow.trainer import train as fit

    result = fit(
        train, LABEL, Path(tempfile.mkdtemp()) / "model", epochs=epochs, seed=seed
    )
    print(
        f"trained on {result.device} for {epochs} epochs: loss {result.final_loss:.4f}"
    )
    return result.model_dir


@step(integration="tensorflow")
def evaluate(model: Path, test: pd.DataFrame) -> dict[str, Any]:
    """Accuracy and confusion matrix on the held-out penguins."""
    from zenml.integrations.tensorflow.trainer import evaluate as score

    metrics = score(model, test, LABEL).to_dict()
    print(f"test accuracy {metrics['accuracy']:.3f} on {len(test)} penguins")
    return metrics


@pipeline
def penguins_keras(epochs: int = 60) -> None:
    train_raw, test_raw = load()
    train_set, test_set = preprocess(train_raw, test_raw)
    evaluate(train(train_set, epochs=epochs), test_set)
