"""The same Beam preprocess step on the direct runner and on the portable runner.

    python benchmarks/portable.py [--rows 1000000] [--workers 2]

Runs `benchmarks/pipelines/beam_runners.py` through the local Docker
orchestrator twice, with the step's backend `direct` (Beam in the step's
container) and `portable` (Beam's job service and `--workers` worker
containers of the base image, started and removed by zenml). The step times
its own `preprocess` call, so container start-up is left out; the outputs of
both runs must be identical. Prints rows per second for each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from zenml.orchestrators.docker import DockerOrchestrator  # noqa: E402
from zenml.pipelines import load_pipeline  # noqa: E402
from zenml.repository import Repository  # noqa: E402
from zenml.runs import run_pipeline  # noqa: E402

PIPELINE = HERE / "pipelines" / "beam_runners.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    spec = load_pipeline(PIPELINE).compile(rows=args.rows)
    timings = {}
    with tempfile.TemporaryDirectory(prefix="zenml-bench-") as folder:
        repository = Repository.init(Path(folder))
        for backend in ("direct", "portable"):
            steps = tuple(
                s.model_copy(update={"backend": backend})
                if s.name == "timed_preprocess"
                else s
                for s in spec.steps
            )
            result = run_pipeline(
                spec.model_copy(update={"steps": steps}),
                orchestrator=DockerOrchestrator(
                    printer=lambda step, line: None, beam_workers=args.workers
                ),
                repository=repository,
            )
            timings[backend] = result.artifact("timed_preprocess")

    direct, portable = timings["direct"], timings["portable"]
    if direct["digest"] != portable["digest"]:
        raise SystemExit("the two runners gave different outputs")
    for label, timing in (
        ("direct runner (in the step's container)", direct),
        (f"portable runner, {args.workers} worker containers", portable),
    ):
        rate = timing["rows"] / timing["seconds"]
        print(
            f"{label:<45} {timing['seconds']:6.1f} s  "
            f"{rate / 1e6:.2f}M rows/s  ({timing['rows']:,} rows)"
        )
    print("outputs identical: yes")


if __name__ == "__main__":
    main()
