"""Beam preprocessing against the same transform in plain pandas, side by side.

    python benchmarks/preprocess.py [--rows 1000000] [--repeat 5]

The data has the quickstart's schema: Palmer penguins rows resampled with a
seeded generator, missing values included, with small seeded noise on the four
measurements (``year`` stays a whole year), cut 60/20/20 into train, eval and
test. Both versions fit on train and transform all three splits, from the raw
frames in memory to the transformed frames in memory: the pandas one on one core,
zenml's whole ``preprocess`` call on Beam's in-process runner, batch files in a
temporary work_dir included. Their outputs are checked for equality before anything is
timed; the runs then alternate and the median of each is reported as rows per
second, with the ratio (goal: Beam at least a third of pandas).

The portable runner is measured by ``benchmarks/portable.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import palmerpenguins
import pandas as pd

HERE = Path(__file__).parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from zenml.integrations.beam.preprocess import preprocess  # noqa: E402

LABEL = "species"
NUMERIC = [
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "year",
]
CATEGORICAL = ["island", "sex"]
MEASUREMENTS = NUMERIC[:4]
SPLITS = {"train": 0.6, "eval": 0.2, "test": 0.2}
GOAL = 1 / 3
# Beam merges per-batch means, pandas sums in one pass: the last bits differ.
TOLERANCE = 1e-9

Splits = dict[str, pd.DataFrame]


def build_splits(rows: int, seed: int) -> Splits:
    """Resample the penguins to ``rows`` rows and cut them into the three splits."""
    penguins = palmerpenguins.load_penguins()
    rng = np.random.default_rng(seed)
    data = penguins.iloc[rng.integers(0, len(penguins), rows)]
    data = data.reset_index(drop=True)
    for column in MEASUREMENTS:
        # A hundredth of the column's spread; missing values stay missing.
        spread = 0.01 * penguins[column].std()
        data[column] = data[column] + rng.normal(0.0, spread, rows)

    splits, start = {}, 0
    for number, (name, fraction) in enumerate(SPLITS.items()):
        end = rows if number == len(SPLITS) - 1 else start + round(rows * fraction)
        splits[name] = data.iloc[start:end].reset_index(drop=True)
        start = end
    return splits


def pandas_preprocess(splits: Splits) -> Splits:
    """Fit on train and transform every split, in plain vectorised pandas."""
    train = splits["train"]
    means = {column: train[column].mean() for column in NUMERIC}
    stds = {column: train[column].std(ddof=0) for column in NUMERIC}
    vocabularies, modes = {}, {}
    for column in CATEGORICAL:
        counts = train[column].dropna().astype(str).value_counts().sort_index()
        vocabularies[column] = list(counts.index)
        # idxmax keeps the first of equal counts: ties go to the smallest value.
        modes[column] = counts.idxmax()

    result = {}
    for name, df in splits.items():
        parts = []
        for column in NUMERIC:
            scale = stds[column] if stds[column] > 0 else 1.0
            values = df[column].astype(float).fillna(means[column])
            parts.append((values - means[column]) / scale)
        for column in CATEGORICAL:
            text = df[column].astype(str).where(df[column].notna(), modes[column])
            codes = pd.Categorical(text, categories=vocabularies[column])
            one_hot = pd.get_dummies(codes, prefix=column, prefix_sep="=", dtype=float)
            parts.append(one_hot.set_axis(df.index))
        parts.append(df[LABEL])
        result[name] = pd.concat(parts, axis=1)
    return result


def beam_preprocess(splits: Splits, work_dir: str, options: Any = None) -> Splits:
    """zenml's Beam preprocessing, default batch size."""
    return preprocess(
        splits, NUMERIC, CATEGORICAL, [LABEL], work_dir=work_dir, options=options
    ).splits


def largest_difference(expected: Splits, actual: Splits) -> float:
    """Check the outputs match; return the largest gap in a standardised value."""
    largest = 0.0
    for name, want in expected.items():
        got = actual[name]
        if list(got.columns) != list(want.columns) or not got.index.equals(want.index):
            raise AssertionError(
                f"Split {name!r}: columns {list(got.columns)} and the index should "
                f"be {list(want.columns)} and the input's index."
            )
        exact = [column for column in want.columns if column not in NUMERIC]
        pd.testing.assert_frame_equal(got[exact], want[exact], check_exact=True)
        gap = np.abs(got[NUMERIC].to_numpy() - want[NUMERIC].to_numpy()).max()
        largest = max(largest, float(gap))
    if largest > TOLERANCE:
        raise AssertionError(
            f"Standardised values differ by up to {largest:.3g} (allowed "
            f"{TOLERANCE:g})."
        )
    return largest


def time_side_by_side(
    runs: dict[str, Callable[[], object]], repeat: int
) -> dict[str, float]:
    """Median seconds of each run, the runs alternating so drift hits all."""
    seconds: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeat):
        for label, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[label].append(time.perf_counter() - started)
    return {label: statistics.median(times) for label, times in seconds.items()}


def report(label: str, rows: int, seconds: float, baseline: float | None) -> None:
    line = f"{label:<37} {seconds:6.3f} s {rows / seconds:>12,.0f} rows/s"
    if baseline is not None:
        ratio = baseline / seconds
        verdict = "met" if ratio >= GOAL else "NOT met"
        line += f"   ratio {ratio:.3f} (goal >= {GOAL:.3f}: {verdict})"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import apache_beam

    splits = build_splits(args.rows, args.seed)
    rows = sum(len(df) for df in splits.values())
    incomplete = sum(int(df.isna().any(axis=1).sum()) for df in splits.values())
    sizes = ", ".join(f"{name} {len(df):,}" for name, df in splits.items())
    print(
        f"{rows:,} rows ({sizes}), {incomplete / rows:.1%} with a missing value; "
        f"apache-beam {apache_beam.__version__}, pandas {pd.__version__}, "
        f"{os.cpu_count()} cores; median of {args.repeat} runs each",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="zenml-preprocess-") as folder:
        work_dir = os.path.join(folder, "work")
        expected = pandas_preprocess(splits)
        gap = largest_difference(expected, beam_preprocess(splits, work_dir))
        print(
            f"outputs equal: columns, index, one-hot and {LABEL} identical; "
            f"standardised values within {gap:.1e}",
            flush=True,
        )

        median = time_side_by_side(
            {
                "pandas": lambda: pandas_preprocess(splits),
                "beam": lambda: beam_preprocess(splits, work_dir),
            },
            args.repeat,
        )
        report("plain pandas, one core", rows, median["pandas"], None)
        report(
            "zenml Beam preprocess, in process",
            rows,
            median["beam"],
            median["pandas"],
        )


if __name__ == "__main__":
    main()
