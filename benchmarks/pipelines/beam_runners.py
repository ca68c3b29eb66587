"""The quickstart's preprocessing on many rows, timed inside its step.

`benchmarks/portable.py` runs this pipeline once on the direct runner and once
on the portable runner (a job service and worker containers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zenml import pipeline, step

if TYPE_CHECKING:
    import pandas as pd

LABEL = "species"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]


@step(outputs=("train", "eval", "test"))
def resample(
    rows: int = 1_000_000, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Penguins drawn with replacement, cut 60/20/20."""
    import numpy as np
    import palmerpenguins

    penguins = palmerpenguins.load_penguins()
    picks = np.random.default_rng(seed).integers(0, len(penguins), rows)
    data = penguins.iloc[picks].reset_index(drop=True)
    first, second = int(rows * 0.6), int(rows * 0.8)
    return (
        data.iloc[:first].reset_index(drop=True),
        data.iloc[first:second].reset_index(drop=True),
        data.iloc[second:].reset_index(drop=True),
    )


@step
def timed_preprocess(
    train: pd.DataFrame, eval: pd.DataFrame, test: pd.DataFrame
) -> dict[str, Any]:
    """Beam preprocessing of the three splits; seconds, rows and a digest."""
    import hashlib
    import os
    import tempfile
    import time

    from zenml.integrations.beam.preprocess import preprocess

    splits = {"train": train, "eval": eval, "test": test}
    with tempfile.TemporaryDirectory(dir=os.environ.get("ZENML_STEP_DIR")) as work:
        started = time.perf_counter()
        result = preprocess(splits, NUMERIC, CATEGORICAL, [LABEL], work_dir=work)
        seconds = time.perf_counter() - started
    digest = hashlib.sha256()
    for name in sorted(result.splits):
        digest.update(result.splits[name].to_csv(index=False).encode())
    rows = sum(len(frame) for frame in splits.values())
    return {
        "backend": os.environ.get("ZENML_BEAM_BACKEND", "direct"),
        "rows": rows,
        "seconds": seconds,
        "digest": digest.hexdigest(),
    }


@pipeline
def beam_runners(rows: int = 1_000_000) -> None:
    timed_preprocess(*resample(rows=rows))
