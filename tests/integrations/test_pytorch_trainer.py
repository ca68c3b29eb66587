"""Tests of the PyTorch trainer on penguins preprocessed by the Beam integration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import palmerpenguins
import pandas as pd
import pytest
import torch

from zenml.integrations.beam.preprocess import preprocess
from zenml.integrations.pytorch.trainer import (
    TrainingResult,
    evaluate,
    load_model,
    select_device,
    train,
)

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
LABEL = "species"


def fit(df: pd.DataFrame, model_dir: Path, seed: int = 0) -> TrainingResult:
    # One thread: the tiny model trains several times faster than on two busy cores.
    return train(df, LABEL, model_dir, seed=seed, epochs=40, num_threads=1)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    df = palmerpenguins.load_penguins()
    order = np.random.default_rng(3).permutation(len(df))
    train_end, eval_end = int(0.6 * len(df)), int(0.8 * len(df))
    raw = {
        "train": df.iloc[order[:train_end]],
        "eval": df.iloc[order[train_end:eval_end]],
        "test": df.iloc[order[eval_end:]],
    }
    work_dir = tmp_path_factory.mktemp("beam")
    return preprocess(raw, NUMERIC, CATEGORICAL, [LABEL], work_dir=str(work_dir)).splits


@pytest.fixture(scope="module")
def trained(
    splits: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> TrainingResult:
    model_dir = tmp_path_factory.mktemp("model")
    return fit(splits["train"], model_dir)


def test_test_accuracy_is_high(
    splits: dict[str, pd.DataFrame], trained: TrainingResult
) -> None:
    evaluation = evaluate(trained.model_dir, splits["test"], LABEL)

    assert evaluation.accuracy >= 0.9


def test_confusion_matrix_is_consistent(
    splits: dict[str, pd.DataFrame], trained: TrainingResult
) -> None:
    test = splits["test"]
    evaluation = evaluate(trained.model_dir, test, LABEL)
    matrix = np.array(evaluation.confusion_matrix)

    assert evaluation.labels == ("Adelie", "Chinstrap", "Gentoo")
    assert matrix.shape == (3, 3)
    assert matrix.sum() == len(test)
    # Rows are true labels.
    assert matrix.sum(axis=1).tolist() == [
        int((test[LABEL] == name).sum()) for name in evaluation.labels
    ]
    assert np.trace(matrix) / len(test) == pytest.approx(evaluation.accuracy)
    as_dict = evaluation.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["confusion_matrix"] == matrix.tolist()


def test_evaluate_reads_features_by_name(
    splits: dict[str, pd.DataFrame], trained: TrainingResult
) -> None:
    test = splits["test"]
    shuffled = test[list(reversed(test.columns))]

    assert evaluate(trained.model_dir, shuffled, LABEL) == evaluate(
        trained.model_dir, test, LABEL
    )


def test_model_folder_contents(
    splits: dict[str, pd.DataFrame], trained: TrainingResult
) -> None:
    names = sorted(p.name for p in trained.model_dir.iterdir())
    signature = json.loads((trained.model_dir / "signature.json").read_text())
    expected_features = [c for c in splits["train"].columns if c != LABEL]

    assert names == ["model.onnx", "model.pt", "signature.json"]
    assert signature["feature_names"] == expected_features
    assert signature["class_labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert list(trained.feature_names) == expected_features
    checkpoint = torch.load(trained.model_dir / "model.pt", weights_only=True)
    assert checkpoint["in_features"] == len(expected_features)
    assert checkpoint["hidden_sizes"] == [32, 16]


def test_onnx_model_matches_torch_for_any_batch_size(
    splits: dict[str, pd.DataFrame], trained: TrainingResult
) -> None:
    signature = json.loads((trained.model_dir / "signature.json").read_text())
    features = splits["test"][signature["feature_names"]].to_numpy().astype(np.float32)
    session = ort.InferenceSession(
        str(trained.model_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    model, _, _ = load_model(trained.model_dir, device="cpu")
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(features)), dim=1).numpy()

    for rows in (features[:1], features):
        (probabilities,) = session.run(
            [signature["output_name"]], {signature["input_name"]: rows}
        )
        np.testing.assert_allclose(probabilities, expected[: len(rows)], atol=1e-5)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_training_is_reproducible_and_seeded(
    splits: dict[str, pd.DataFrame], trained: TrainingResult, tmp_path: Path
) -> None:
    rng_before = torch.get_rng_state()
    again = fit(splits["train"], tmp_path / "again", seed=0)
    other = fit(splits["train"], tmp_path / "other", seed=1)

    first = load_model(trained.model_dir, device="cpu")[0].state_dict()
    second = load_model(again.model_dir, device="cpu")[0].state_dict()
    third = load_model(other.model_dir, device="cpu")[0].state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again.final_loss == trained.final_loss
    assert not all(torch.equal(first[k], third[k]) for k in first)
    # Training must not reseed the caller's global generator.
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_device_follows_cuda_availability(trained: TrainingResult) -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"

    assert select_device().type == expected
    assert trained.device.startswith(expected)


def test_train_rejects_unprepared_data(
    splits: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    train_df = splits["train"]

    with pytest.raises(ValueError, match="'body_mass_g'.*missing values"):
        fit(train_df.assign(body_mass_g=np.nan), tmp_path)
    with pytest.raises(ValueError, match="'island'.*not numeric"):
        fit(train_df.assign(island="Dream"), tmp_path)
    with pytest.raises(ValueError, match="'label'"):
        train(train_df, "label", tmp_path)


def test_evaluate_rejects_unknown_labels(
    splits: dict[str, pd.DataFrame], trained: TrainingResult
) -> None:
    test = splits["test"].assign(species="Emperor")

    with pytest.raises(ValueError, match="Emperor"):
        evaluate(trained.model_dir, test, LABEL)
