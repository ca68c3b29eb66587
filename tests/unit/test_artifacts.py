from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zenml.artifacts import (
    META_FILE,
    PARTIAL_PREFIX,
    ArtifactStore,
    load_value,
    slug,
)
from zenml.exceptions import StoreError


class Unpicklable:
    def __reduce__(self):
        raise TypeError("cannot pickle this")


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_output_uri_layout(store: ArtifactStore) -> None:
    uri = store.output_uri("training", "run-1", "train", "model")

    assert uri == store.root / "training" / "run-1" / "train" / "model"


@pytest.mark.parametrize(
    "value", [None, 3, 2.5, "text", True, [1, "a", None], {"a": {"b": [1, 2]}}]
)
def test_json_values_round_trip(store: ArtifactStore, tmp_path: Path, value) -> None:
    info = store.write(value, tmp_path / "out")

    assert info.materializer == "json"
    assert ArtifactStore.read(info.uri) == value


def test_dataframe_is_written_as_parquet(store: ArtifactStore, tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})

    info = store.write(frame, tmp_path / "out")

    assert info.materializer == "pandas.parquet"
    assert (tmp_path / "out" / "data.parquet").is_file()
    pd.testing.assert_frame_equal(ArtifactStore.read(info.uri), frame)


def test_numpy_array_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)

    info = store.write(array, tmp_path / "out")
    loaded = ArtifactStore.read(info.uri)

    assert info.materializer == "numpy"
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array)


def test_bytes_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    info = store.write(b"\x00\xffraw", tmp_path / "out")

    assert info.materializer == "bytes"
    assert ArtifactStore.read(info.uri) == b"\x00\xffraw"


def test_a_file_path_is_copied_into_the_store(
    store: ArtifactStore, tmp_path: Path
) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"weights")

    info = store.write(model, tmp_path / "out")
    model.unlink()
    loaded = ArtifactStore.read(info.uri)

    assert info.materializer == "path.file"
    assert loaded.name == "model.onnx"
    assert loaded.read_bytes() == b"weights"


def test_a_folder_path_is_copied_into_the_store(
    store: ArtifactStore, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "vocab.txt").write_text("a b")

    info = store.write(folder, tmp_path / "out")
    loaded = ArtifactStore.read(info.uri)

    assert info.materializer == "path.dir"
    assert (loaded / "sub" / "vocab.txt").read_text() == "a b"


@pytest.mark.parametrize("value", [(1, 2), {1: "a"}, {"s": {1, 2}}, complex(1, 2)])
def test_values_json_would_change_are_pickled(
    store: ArtifactStore, tmp_path: Path, value
) -> None:
    info = store.write(value, tmp_path / "out")

    assert info.materializer == "pickle"
    assert ArtifactStore.read(info.uri) == value


def test_meta_records_materializer_and_size(
    store: ArtifactStore, tmp_path: Path
) -> None:
    info = store.write(b"12345", tmp_path / "out")

    meta = json.loads((tmp_path / "out" / META_FILE).read_text())

    assert meta == {"materializer": "bytes", "size": 5}
    assert info.size == 5


def test_an_artifact_is_never_overwritten(store: ArtifactStore, tmp_path: Path) -> None:
    store.write("first", tmp_path / "out")

    with pytest.raises(StoreError, match="never overwritten"):
        store.write("second", tmp_path / "out")
    assert ArtifactStore.read(tmp_path / "out") == "first"


def test_a_failing_materializer_leaves_nothing(
    store: ArtifactStore, tmp_path: Path
) -> None:
    target = tmp_path / "outputs" / "out"

    with pytest.raises(StoreError, match="does not exist"):
        store.write(tmp_path / "missing.txt", target)
    with pytest.raises(TypeError, match="cannot pickle"):
        store.write(Unpicklable(), target)  # fails with data.pkl half written

    assert list(target.parent.iterdir()) == []


def test_reading_an_unfinished_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()

    with pytest.raises(StoreError, match="no finished artifact"):
        ArtifactStore.read(tmp_path / "half")


def test_reading_with_an_unknown_materializer(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="'tensorflow'"):
        load_value("tensorflow", tmp_path)


def test_remove_partials(store: ArtifactStore) -> None:
    run_dir = store.run_dir("p", "run-1")
    (run_dir / "train" / f"{PARTIAL_PREFIX}model-1234").mkdir(parents=True)
    (run_dir / "eval" / f"{PARTIAL_PREFIX}metrics-5678").mkdir(parents=True)
    store.write(1, run_dir / "eval" / "count")

    removed = store.remove_partials(run_dir)

    assert removed == 2
    assert not list(run_dir.rglob(f"{PARTIAL_PREFIX}*"))
    assert ArtifactStore.read(run_dir / "eval" / "count") == 1


def test_remove_partials_of_a_run_without_folder(store: ArtifactStore) -> None:
    assert store.remove_partials(store.run_dir("p", "never")) == 0


def test_slug_keeps_safe_names() -> None:
    assert slug("train_model-2.v1") == "train_model-2.v1"


@pytest.mark.parametrize("name", ["a b", "a/b", "../up", "x y (2)", ".", "ü"])
def test_slug_is_safe_for_a_file_name(name: str) -> None:
    cleaned = slug(name)

    assert "/" not in cleaned
    assert cleaned not in ("", ".", "..")
    assert not cleaned.startswith(".")


def test_slug_keeps_distinct_names_distinct() -> None:
    names = ["a b", "a-b", "a/b", "a  b", "a_b", "-a-b-", "x", "!", "?"]

    assert len({slug(n) for n in names}) == len(names)
