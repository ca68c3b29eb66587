"""The zenml quickstart: classify penguin species, from raw data to a served model.

Each step runs in the image of its integration: data work and Beam
preprocessing in `zenml/base`, training and evaluation in `zenml/pytorch`, and
serving in `zenml/cortex`. Heavy libraries are imported inside the steps, so
the machine that launches the pipeline needs only zenml and Docker.

    zenml pipeline run examples/quickstart/pipeline.py
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zenml import pipeline, step

if TYPE_CHECKING:
    import pandas as pd

    from zenml.runs import RunResult

LABEL = "species"
NUMERIC = [
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "year",
]
CATEGORICAL = ["island", "sex"]


@step
def ingest() -> pd.DataFrame:
    """The Palmer penguins data set as the palmerpenguins package ships it."""
    import palmerpenguins

    data = palmerpenguins.load_penguins()
    print(
        f"ingested {len(data)} penguins, {int(data.isna().any(axis=1).sum())} "
        "with missing values"
    )
    return data


@step(outputs=("train", "eval", "test"))
def split(
    data: pd.DataFrame,
    seed: int = 42,
    eval_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle by seed and cut into train, eval and test."""
    import numpy as np

    data = data.dropna(subset=[LABEL]).reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = round(len(data) * test_fraction)
    n_eval = round(len(data) * eval_fraction)
    test = data.iloc[order[:n_test]].reset_index(drop=True)
    evaluation = data.iloc[order[n_test : n_test + n_eval]].reset_index(drop=True)
    train = data.iloc[order[n_test + n_eval :]].reset_index(drop=True)
    print(
        f"split {len(data)} rows into train {len(train)}, eval {len(evaluation)}, "
        f"test {len(test)} (seed {seed})"
    )
    return train, evaluation, test


@step(outputs=("train", "eval", "test", "stats"))
def preprocess(
    train: pd.DataFrame, eval: pd.DataFrame, test: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Impute, standardise and one-hot encode with Apache Beam, fitted on train."""
    import os
    import tempfile

    from zenml.integrations.beam.preprocess import preprocess as beam_preprocess

    # The step's folder in the artifact store: Beam's workers, which may run
    # in other containers, read and write their batches there.
    with tempfile.TemporaryDirectory(dir=os.environ.get("ZENML_STEP_DIR")) as work_dir:
        result = beam_preprocess(
            {"train": train, "eval": eval, "test": test},
            NUMERIC,
            CATEGORICAL,
            [LABEL],
            work_dir=work_dir,
        )
    out = result.splits
    backend = os.environ.get("ZENML_BEAM_BACKEND", "direct")
    features = out["train"].shape[1] - 1
    print(f"preprocessed with Beam ({backend} runner): {features} features")
    return out["train"], out["eval"], out["test"], result.stats.to_dict()


@step(integration="pytorch")
def train(
    train: pd.DataFrame,
    eval: pd.DataFrame,
    stats: dict[str, Any],
    epochs: int = 60,
    seed: int = 0,
) -> Path:
    """Train a small PyTorch classifier; the result is a servable model bundle."""
    import json
    import tempfile

    from zenml.integrations.pytorch.trainer import evaluate
    from zenml.integrations.pytorch.trainer import train as fit

    bundle = Path(tempfile.mkdtemp()) / "model"
    result = fit(train, LABEL, bundle, epochs=epochs, seed=seed)
    (bundle / "preprocess.json").write_text(json.dumps(stats), encoding="utf-8")
    accuracy = evaluate(bundle, eval, LABEL).accuracy
    print(
        f"trained on {result.device} for {epochs} epochs: loss "
        f"{result.final_loss:.4f}, eval accuracy {accuracy:.3f}"
    )
    return bundle


@step(integration="pytorch")
def evaluate(
    model: Path, test: pd.DataFrame, min_accuracy: float = 0.9
) -> dict[str, Any]:
    """Accuracy and confusion matrix on the test split; fails below min_accuracy."""
    from zenml.integrations.pytorch.trainer import evaluate as score

    metrics = score(model, test, LABEL).to_dict()
    print(f"test accuracy {metrics['accuracy']:.3f} on {len(test)} penguins")
    for label, row in zip(metrics["labels"], metrics["confusion_matrix"], strict=True):
        print(f"  {label:<10} {row}")
    if metrics["accuracy"] < min_accuracy:
        raise ValueError(
            f"test accuracy {metrics['accuracy']:.3f} is below {min_accuracy}; "
            "the model is not deployed"
        )
    return metrics


@step(integration="cortex", outputs=("prediction", "api_spec"), cache=False)
def deploy(
    model: Path,
    metrics: dict[str, Any],
    test: pd.DataFrame,
    row: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Serve the model over HTTP on localhost and ask it about one test penguin."""
    from zenml.integrations.cortex.api import cortex_api_spec
    from zenml.integrations.cortex.local import serve_and_predict

    instance = {
        column: (
            None if _missing(test.at[row, column]) else _plain(test.at[row, column])
        )
        for column in NUMERIC + CATEGORICAL
    }
    answer = serve_and_predict(model, instance)
    print(f"POST /predict {instance}")
    print(f"-> {answer}")
    spec = cortex_api_spec("penguins", "zenml/cortex:latest", "/mnt/model")
    return {
        "instance": instance,
        "truth": test.at[row, LABEL],
        "response": answer,
    }, spec


def _missing(value: Any) -> bool:
    return value is None or value != value


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def report(result: RunResult) -> None:
    """Print what a newcomer wants to see at the end of the quickstart."""
    import json

    metrics = result.artifact("evaluate")
    prediction = result.artifact("deploy", "prediction")
    print(f"Run id:     {result.run_id}")
    print(f"Accuracy:   {metrics['accuracy']:.3f} on the test split")
    print(
        f"Prediction: {json.dumps(prediction['response'])} "
        f"(true species: {prediction['truth']})"
    )


@pipeline(on_success=report)
def quickstart(seed: int = 42, epochs: int = 60) -> None:
    data = ingest()
    train_raw, eval_raw, test_raw = split(data, seed=seed)
    train_set, eval_set, test_set, stats = preprocess(train_raw, eval_raw, test_raw)
    model = train(train_set, eval_set, stats, epochs=epochs)
    metrics = evaluate(model, test_set)
    deploy(model, metrics, test_raw)
