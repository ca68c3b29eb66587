"""Checks and scores shared by the trainers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zenml.integrations.tabular import (
    Evaluation,
    evaluation_data,
    feature_matrix,
    label_strings,
    split_features,
    training_data,
)


def test_an_evaluation_counts_true_rows_against_predicted_columns() -> None:
    result = Evaluation.from_indices(
        np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), ["a", "b", "c"]
    )

    assert result.accuracy == pytest.approx(3 / 5)
    assert result.confusion_matrix == ((1, 1, 0), (0, 1, 0), (1, 0, 1))
    assert result.to_dict()["labels"] == ["a", "b", "c"]


def test_features_are_every_column_but_the_label_in_order() -> None:
    frame = pd.DataFrame({"b": [1.0], "label": ["x"], "a": [2]})

    assert split_features(frame, "label") == ["b", "a"]
    assert feature_matrix(frame, ["b", "a"]).dtype == np.float32


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"f": ["x"]}), "not numeric"),
        (pd.DataFrame({"f": [np.nan]}), "missing values; impute"),
        (pd.DataFrame({"g": [1.0]}), "missing from the DataFrame"),
    ],
)
def test_bad_features_are_refused_naming_the_column(
    frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        feature_matrix(frame, ["f"])


def test_missing_labels_and_an_unknown_label_column_are_refused() -> None:
    with pytest.raises(ValueError, match="has missing values"):
        label_strings(pd.Series(["a", None]), "species")
    with pytest.raises(ValueError, match="not in columns"):
        split_features(pd.DataFrame({"f": [1]}), "species")


def test_training_data_sorts_the_classes_and_indexes_each_row() -> None:
    frame = pd.DataFrame({"y": ["b", "a", "b"], "f": [1, 2, 3]})

    data = training_data(frame, "y")

    assert data.feature_names == ["f"]
    assert data.class_labels == ["a", "b"]
    assert data.targets.tolist() == [1, 0, 1]
    assert data.features.dtype == np.float32


def test_training_data_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        training_data(pd.DataFrame({"f": [1.0, 2.0], "y": ["a", "a"]}), "y")


def test_evaluation_data_maps_labels_to_the_models_class_order() -> None:
    frame = pd.DataFrame({"f": [1.0, 2.0, 3.0], "y": ["b", "a", "b"]})

    features, truth = evaluation_data(frame, "y", ["f"], ["b", "a"])

    assert features.tolist() == [[1.0], [2.0], [3.0]]
    assert truth.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"f": [1.0], "y": ["c"]}), r"Labels \['c'\] were not seen"),
        (pd.DataFrame({"f": [], "y": []}), "empty DataFrame"),
        (pd.DataFrame({"f": [1.0]}), "Label column 'y' not in columns"),
    ],
)
def test_evaluation_data_refuses_what_the_model_cannot_score(
    frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        evaluation_data(frame, "y", ["f"], ["a", "b"])
