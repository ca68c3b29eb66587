"""Launcher overhead against bare `docker run`, measured side by side.

    python benchmarks/launcher.py [--repeat 5]

Prints three figures:
1. per-step time of a one-step pipeline against `docker run --rm` of the same
   image and command (the step's own entrypoint and task), interleaved;
2. the wall time of two independent 5-second steps;
3. for 20 trivial steps in a chain, the share of the run's time during which
   no step container was running (zenml and Docker's container start and
   removal), and the CPU time the launcher itself spent (zenml's own work).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from zenml.entrypoint import Task  # noqa: E402
from zenml.orchestrators.docker import DockerOrchestrator  # noqa: E402
from zenml.pipelines import load_pipeline  # noqa: E402
from zenml.repository import Repository  # noqa: E402
from zenml.runs import run_pipeline  # noqa: E402

PIPELINES = HERE / "pipelines.py"


class _Timed(DockerOrchestrator):
    """Records when each container really ran, as Docker reports it."""

    intervals: list[tuple[float, float]]

    def __init__(self) -> None:
        super().__init__(printer=lambda step, line: None)
        self.intervals = []

    def run_step(self, context, launch):  # type: ignore[no-untyped-def]
        outcome = super().run_step(context, launch)
        if outcome.started_at and outcome.finished_at:
            self.intervals.append((outcome.started_at, outcome.finished_at))
        return outcome


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _run(repo: Repository, name: str, **params: object) -> tuple[float, _Timed]:
    spec = load_pipeline(PIPELINES, name).compile(**params)
    orchestrator = _Timed()
    started = time.perf_counter()
    run_pipeline(spec, orchestrator=orchestrator, repository=repo, enable_cache=False)
    return time.perf_counter() - started, orchestrator


def _bare(repo: Repository, image: str, code_root: str) -> float:
    """`docker run --rm` of the step's own command, on a fresh output path."""
    out = repo.artifact_root / "bare" / f"{time.time_ns()}"
    task = Task(
        step="noop",
        source=f"{PIPELINES}:noop",
        code_root=code_root,
        outputs={"output": str(out)},
    )
    task_file = out.parent / f"{out.name}.json"
    task.write(task_file)
    root = str(repo.artifact_root)
    command = [
        "docker",
        "run",
        "--rm",
        "--init",
        "--user",
        f"{os.getuid()}:{os.getgid()}",
        "-e",
        "HOME=/tmp",
        "-v",
        f"{root}:{root}",
        "-v",
        f"{code_root}:{code_root}:ro",
        "-w",
        code_root,
        image,
        "python",
        "-m",
        "zenml.entrypoint",
        str(task_file),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        repo = Repository.init(Path(folder))
        _run(repo, "one_step")  # warm the image cache

        zenml_times, bare_times = [], []
        for _ in range(args.repeat):
            zenml_times.append(_run(repo, "one_step")[0])
            bare_times.append(_bare(repo, "zenml/base:0.1.0", str(HERE)))
        z, b = statistics.median(zenml_times), statistics.median(bare_times)
        print(
            f"one step:   zenml {z:.2f}s, docker run --rm {b:.2f}s, "
            f"overhead {100 * (z / b - 1):+.1f}% (goal <= +15%)"
        )

        wall, _ = _run(repo, "side_by_side", seconds=5.0)
        print(f"two 5s steps side by side: {wall:.2f}s (goal < 7s)")

        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        wall, timed = _run(repo, "twenty")
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
            cpu_after.ru_stime - cpu_before.ru_stime
        )
        inside = _union(timed.intervals)
        print(
            f"20 trivial steps: {wall:.2f}s, containers running {inside:.2f}s; "
            f"no container running {100 * (1 - inside / wall):.1f}% of the time; "
            f"zenml's own CPU time {cpu:.2f}s = {100 * cpu / wall:.1f}% (goal < 10%)"
        )
        started = time.perf_counter()
        for _ in range(20):
            _bare(repo, "zenml/base:0.1.0", str(HERE))
        bare = time.perf_counter() - started
        print(
            f"the same 20 steps as docker run --rm in a row: {bare:.2f}s "
            f"(zenml's run: {100 * (wall / bare - 1):+.1f}%)"
        )


if __name__ == "__main__":
    main()
