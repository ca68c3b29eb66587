"""Beam preprocessing against the same transform in plain pandas, side by side.

    python benchmarks/preprocess.py [--rows 1000000] [--repeat 5] [--portable]

The data has the quickstart's schema: Palmer penguins rows resampled with a
seeded generator, missing values included, with small seeded noise on the four
measurements (``year`` stays a whole year), cut 60/20/20 into train, eval and
test. Both versions fit on train and transform all three splits, from the raw
frames in memory to the transformed frames in memory: the pandas one on one core,
zenml's whole ``preprocess`` call on Beam's in-process runner, batch files in a
temporary work_dir included. Their outputs are checked for equality before anything is
timed; the runs then alternate and the median of each is reported as rows per
second, with the ratio (goal: Beam at least a third of pandas).

``--portable`` also times the PortableRunner against a local job service and an
external worker pool, both started here, reached on localhost ports and stopped
at the end. The pool listens on all interfaces: Beam binds it to ``[::]`` and
has no option for that. The job service runs the pipeline with Beam's
FnApiRunner, which starts one worker per environment whatever
``--direct_num_workers`` says, so the line reports the workers the pool started.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
SERVICE_START_TIMEOUT = 60.0
PORTABLE_RUN_TIMEOUT = 600.0
PORTABLE_WORKERS = 2

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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVICE_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{log.stem} exited early:\n{_tail(log)}")
        try:
            with socket.create_connection(("localhost", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(
        f"{log.stem} not listening after {SERVICE_START_TIMEOUT:.0f}s:\n{_tail(log)}"
    )


def _tail(log: Path, lines: int = 20) -> str:
    # The log lives in a temporary folder that is gone once the error is seen.
    text = log.read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Each service leads its own process group; the pool's workers are in it.
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@contextmanager
def portable_services(log_dir: Path, workers: int) -> Iterator[tuple[Any, Path]]:
    """A local job service and an external worker pool; yields options, pool log."""
    from apache_beam.options.pipeline_options import PipelineOptions

    job_port, pool_port = _free_port(), _free_port()
    # The pool starts each worker with the first `python` on PATH.
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    services = {
        "job-service": (
            [
                sys.executable,
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port",
                str(job_port),
            ],
            job_port,
        ),
        "worker-pool": (
            [
                sys.executable,
                "-m",
                "apache_beam.runners.worker.worker_pool_main",
                "--service_port",
                str(pool_port),
            ],
            pool_port,
        ),
    }

    processes: list[subprocess.Popen[bytes]] = []

    def stop_all() -> None:
        for process in reversed(processes):
            _stop(process)

    # Stopping the services makes a hung job fail instead of waiting forever.
    watchdog = threading.Timer(PORTABLE_RUN_TIMEOUT, stop_all)
    try:
        for name, (command, port) in services.items():
            log = log_dir / f"{name}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    command,
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            processes.append(process)
            _wait_for_port(port, process, log)
        watchdog.start()

        options = PipelineOptions(
            [
                "--runner=PortableRunner",
                f"--job_endpoint=localhost:{job_port}",
                "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{pool_port}",
                f"--direct_num_workers={workers}",
            ]
        )
        yield options, log_dir / "worker-pool.log"
    finally:
        watchdog.cancel()
        stop_all()


def _workers_started(pool_log: Path) -> int:
    text = pool_log.read_text(encoding="utf-8", errors="replace")
    return text.count("Starting worker with command")


def time_portable(
    splits: Splits, expected: Splits, work_dir: str, log_dir: Path, repeat: int
) -> tuple[float, float, float]:
    """Median seconds on the PortableRunner, workers started per job, largest gap."""
    with portable_services(log_dir, PORTABLE_WORKERS) as (options, pool_log):
        gap = largest_difference(expected, beam_preprocess(splits, work_dir, options))
        seconds = time_side_by_side(
            {"portable": lambda: beam_preprocess(splits, work_dir, options)}, repeat
        )["portable"]
        workers = _workers_started(pool_log) / (repeat + 1)
    return seconds, workers, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--portable",
        action="store_true",
        help="also time the PortableRunner with an external worker pool",
    )
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

        if args.portable:
            seconds, workers, gap = time_portable(
                splits, expected, work_dir, Path(folder), args.repeat
            )
            report(
                f"Beam PortableRunner, {workers:g} worker(s)/job",
                rows,
                seconds,
                median["pandas"],
            )
            print(
                f"  asked for {PORTABLE_WORKERS} workers (--direct_num_workers); "
                f"outputs equal, standardised values within {gap:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
