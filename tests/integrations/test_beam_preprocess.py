"""Tests of the Beam preprocessing on the DirectRunner, with the penguins data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import apache_beam as beam
import numpy as np
import palmerpenguins
import pandas as pd
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from zenml.integrations.beam.preprocess import (
    CategoricalColumnStats,
    NumericColumnStats,
    PreprocessResult,
    PreprocessStats,
    apply_stats,
    bind_map,
    preprocess,
)

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
LABEL = "species"
# Small batches so the 206 train rows make several batches whose stats are merged.
BATCH_SIZE = 50


def penguin_splits(seed: int = 7) -> dict[str, pd.DataFrame]:
    df = palmerpenguins.load_penguins()
    order = np.random.default_rng(seed).permutation(len(df))
    train_end, eval_end = int(0.6 * len(df)), int(0.8 * len(df))
    return {
        "train": df.iloc[order[:train_end]],
        "eval": df.iloc[order[train_end:eval_end]],
        "test": df.iloc[order[eval_end:]],
    }


@pytest.fixture(scope="module")
def splits() -> dict[str, pd.DataFrame]:
    return penguin_splits()


@pytest.fixture(scope="module")
def direct_result(
    splits: dict[str, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> PreprocessResult:
    work_dir = tmp_path_factory.mktemp("direct")
    return preprocess(
        splits,
        NUMERIC,
        CATEGORICAL,
        [LABEL],
        work_dir=str(work_dir),
        batch_size=BATCH_SIZE,
    )


def test_numeric_stats_come_from_the_train_split_only(
    splits: dict[str, pd.DataFrame], direct_result: PreprocessResult
) -> None:
    train = splits["train"]
    stats = {c.name: c for c in direct_result.stats.numeric}

    assert list(stats) == NUMERIC
    for column in NUMERIC:
        values = train[column].to_numpy(dtype=float)
        assert stats[column].mean == pytest.approx(np.nanmean(values), rel=1e-12)
        assert stats[column].std == pytest.approx(np.nanstd(values, ddof=0), rel=1e-12)
        everything = pd.concat(splits.values())[column].to_numpy(dtype=float)
        assert stats[column].mean != pytest.approx(np.nanmean(everything), rel=1e-9)


def test_categorical_stats_have_sorted_vocabulary_and_mode(
    splits: dict[str, pd.DataFrame], direct_result: PreprocessResult
) -> None:
    train = splits["train"]
    stats = {c.name: c for c in direct_result.stats.categorical}

    assert stats["island"].vocabulary == ("Biscoe", "Dream", "Torgersen")
    assert stats["sex"].vocabulary == ("female", "male")
    for column in CATEGORICAL:
        assert stats[column].mode == train[column].value_counts().idxmax()


def test_outputs_keep_input_order_and_index(
    splits: dict[str, pd.DataFrame], direct_result: PreprocessResult
) -> None:
    assert list(direct_result.splits) == ["train", "eval", "test"]
    for name, split in splits.items():
        out = direct_result.splits[name]
        assert out.index.equals(split.index)
        assert out[LABEL].tolist() == split[LABEL].tolist()


def test_beam_output_equals_the_pandas_transform(
    splits: dict[str, pd.DataFrame], direct_result: PreprocessResult
) -> None:
    for name, split in splits.items():
        expected = apply_stats(split, direct_result.stats)
        pd.testing.assert_frame_equal(
            direct_result.splits[name], expected, check_exact=True
        )


def test_output_columns_and_encoding(
    splits: dict[str, pd.DataFrame], direct_result: PreprocessResult
) -> None:
    out = direct_result.splits["test"]
    one_hot = [
        "island=Biscoe",
        "island=Dream",
        "island=Torgersen",
        "sex=female",
        "sex=male",
    ]

    assert list(out.columns) == NUMERIC + one_hot + [LABEL]
    assert list(direct_result.stats.feature_columns) == NUMERIC + one_hot
    assert (out[one_hot].dtypes == np.float64).all()
    assert set(np.unique(out[one_hot].to_numpy())) == {0.0, 1.0}
    # Each categorical column contributes exactly one 1 per row.
    assert (out[one_hot[:3]].sum(axis=1) == 1.0).all()
    assert (out[one_hot[3:]].sum(axis=1) == 1.0).all()
    source = splits["test"]
    assert (out["island=Dream"] == (source["island"] == "Dream")).all()


def test_train_numeric_columns_are_standardised(
    splits: dict[str, pd.DataFrame], direct_result: PreprocessResult
) -> None:
    train_in, train_out = splits["train"], direct_result.splits["train"]
    for column in NUMERIC:
        present = train_in[column].notna().to_numpy()
        values = train_out[column].to_numpy()[present]
        assert values.mean() == pytest.approx(0.0, abs=1e-9)
        assert values.std(ddof=0) == pytest.approx(1.0, rel=1e-9)


def test_missing_values_are_imputed_with_train_stats(
    splits: dict[str, pd.DataFrame], direct_result: PreprocessResult
) -> None:
    stats = direct_result.stats
    sex_mode = {c.name: c for c in stats.categorical}["sex"].mode
    everything_in = pd.concat(splits.values())
    everything_out = pd.concat(direct_result.splits.values())
    missing_numeric = everything_in["bill_length_mm"].isna()
    missing_sex = everything_in["sex"].isna()

    assert missing_numeric.sum() == 2 and missing_sex.sum() == 11
    assert not everything_out.drop(columns=[LABEL]).isna().any().any()
    # The train mean standardises to exactly zero.
    assert (everything_out.loc[missing_numeric.to_numpy(), "bill_length_mm"] == 0).all()
    imputed = everything_out.loc[missing_sex.to_numpy()]
    assert (imputed[f"sex={sex_mode}"] == 1.0).all()


def test_files_carry_batches_and_stats(
    splits: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    result = preprocess(
        splits, NUMERIC, CATEGORICAL, [LABEL], work_dir=str(tmp_path), batch_size=60
    )

    for name, split in splits.items():
        files = sorted((tmp_path / "output" / name).glob("batch-*.pkl"))
        assert len(files) == math.ceil(len(split) / 60)
    stats_file = json.loads((tmp_path / "stats.json").read_text())
    assert stats_file == result.stats.to_dict()

    # A rerun with bigger batches must not pick up the earlier run's batch files.
    rerun = preprocess(splits, NUMERIC, CATEGORICAL, [LABEL], work_dir=str(tmp_path))
    assert len(list((tmp_path / "output" / "train").glob("batch-*.pkl"))) == 1
    for name in splits:
        assert len(rerun.splits[name]) == len(splits[name])


def test_multiprocess_runner_gives_identical_output(
    splits: dict[str, pd.DataFrame],
    direct_result: PreprocessResult,
    tmp_path: Path,
) -> None:
    # Workers in other processes: results can only come back through work_dir.
    options = PipelineOptions(
        [
            "--runner=DirectRunner",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ]
    )
    result = preprocess(
        splits,
        NUMERIC,
        CATEGORICAL,
        [LABEL],
        work_dir=str(tmp_path),
        batch_size=BATCH_SIZE,
        options=options,
    )

    assert result.stats == direct_result.stats
    for name in splits:
        pd.testing.assert_frame_equal(
            result.splits[name], direct_result.splits[name], check_exact=True
        )


def test_stats_round_trip_through_json(
    direct_result: PreprocessResult, tmp_path: Path
) -> None:
    stats = direct_result.stats
    text = json.dumps(stats.to_dict())

    assert PreprocessStats.from_dict(json.loads(text)) == stats
    assert PreprocessStats.load(stats.save(tmp_path / "preprocess.json")) == stats
    with pytest.raises(ValueError, match="version"):
        PreprocessStats.from_dict({**stats.to_dict(), "version": 99})


def test_mode_ties_go_to_the_first_sorted_value(tmp_path: Path) -> None:
    train = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0], "colour": ["red", "blue", "red", "blue"]}
    )

    result = preprocess({"train": train}, ["x"], ["colour"], work_dir=str(tmp_path))

    (colour,) = result.stats.categorical
    assert colour.mode == "blue"
    assert colour.vocabulary == ("blue", "red")


def test_apply_stats_handles_unseen_values_and_constant_columns() -> None:
    stats = PreprocessStats(
        numeric=(NumericColumnStats("x", mean=5.0, std=0.0),),
        categorical=(CategoricalColumnStats("c", ("a", "b"), mode="b"),),
        passthrough=("y",),
    )
    df = pd.DataFrame(
        {"x": [7.0, None, 5.0], "c": ["zzz", None, "a"], "other": [1, 2, 3]},
        index=[10, 11, 12],
    )

    out = apply_stats(df, stats)

    assert list(out.columns) == ["x", "c=a", "c=b"]
    assert out.index.tolist() == [10, 11, 12]
    assert out["x"].tolist() == [2.0, 0.0, 0.0]
    assert out[["c=a", "c=b"]].to_numpy().tolist() == [[0, 0], [0, 1], [1, 0]]


def test_apply_stats_rejects_missing_and_non_numeric_columns() -> None:
    stats = PreprocessStats((NumericColumnStats("x", 0.0, 1.0),), ())

    with pytest.raises(ValueError, match=r"\['x'\]"):
        apply_stats(pd.DataFrame({"y": [1.0]}), stats)
    with pytest.raises(ValueError, match="'x'.*non-numeric"):
        apply_stats(pd.DataFrame({"x": ["seven"]}), stats)


def test_preprocess_rejects_bad_arguments(
    splits: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="Train split 'training'"):
        preprocess(splits, NUMERIC, [], work_dir=str(tmp_path), train_split="training")
    with pytest.raises(ValueError, match="more than one role"):
        preprocess(splits, NUMERIC, ["sex"], ["sex"], work_dir=str(tmp_path))
    text = {**splits, "eval": splits["eval"].assign(body_mass_g="heavy")}
    with pytest.raises(ValueError, match="'eval'.*'body_mass_g'.*non-numeric"):
        preprocess(text, NUMERIC, [], work_dir=str(tmp_path))
    empty = {"train": splits["train"].assign(body_mass_g=np.nan)}
    with pytest.raises(ValueError, match="'body_mass_g' has no values"):
        preprocess(empty, NUMERIC, [], work_dir=str(tmp_path))


def add(element: int, value: int) -> int:
    return element + value


def test_bind_map_binds_each_loop_value() -> None:
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        bound = p | "Bound" >> beam.Create([1, 2, 3, 4, 5])
        late = p | "Late" >> beam.Create([1, 2, 3, 4, 5])
        for i in range(3):
            bound |= f"add{i}" >> beam.Map(bind_map(add, i))
            late |= f"late_add{i}" >> beam.Map(lambda x: x + i)  # noqa: B023 (the trap)

        assert_that(bound, equal_to([4, 5, 6, 7, 8]), label="CheckBound")
        # The trap the helper avoids: every lambda adds the last value, 2.
        assert_that(late, equal_to([7, 8, 9, 10, 11]), label="CheckLate")


def test_bind_map_passes_keyword_arguments() -> None:
    def scale(element: int, *, by: int) -> int:
        return element * by

    assert [bind_map(scale, by=b)(3) for b in (1, 2, 3)] == [3, 6, 9]
