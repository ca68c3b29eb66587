"""Image builds: the cost of asking for nothing, and what each layer weighs.

    python benchmarks/images.py [--repeat 5]

Prints:
1. the wall time of `zenml image build` (every built-in image) when nothing
   changed, as a user runs it (goal: under 1 second in all);
2. for each integration image, how much it adds to its parent against the
   installed size of the packages it adds (goal: at most 10% more).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).parent.parent))

from zenml.images.spec import builtin_images  # noqa: E402

# Sums, inside an image, the installed size of the distributions its parent's
# lock does not hold (files listed in each distribution's RECORD).
_ADDED_SIZE = r"""
import importlib.metadata as m, os, sys
parent = {l.split("==")[0].lower().replace("_", "-")
          for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")}
total = 0
for dist in m.distributions():
    name = dist.metadata["Name"].lower().replace("_", "-").replace(".", "-")
    if name in parent:
        continue
    for f in dist.files or []:
        path = dist.locate_file(f)
        if os.path.isfile(path):
            total += os.path.getsize(path)
print(total)
"""


def _noop_build_seconds(repeat: int) -> list[float]:
    zenml = Path(sys.executable).with_name("zenml")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([str(zenml), "image", "build"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    times = _noop_build_seconds(args.repeat)
    print(
        f"zenml image build, nothing changed: median {statistics.median(times):.2f}s, "
        f"max {max(times):.2f}s over {args.repeat} runs (goal < 1s)"
    )

    client = docker.from_env()
    for name, spec in builtin_images().items():
        if spec.parent is None or spec.on_request:
            continue
        image = client.images.get(f"zenml/{name}:latest")
        parent = client.images.get(f"zenml/{spec.parent}:latest")
        grown = int(image.attrs["Size"]) - int(parent.attrs["Size"])
        added = int(
            client.containers.run(
                image,
                ["python", "-c", _ADDED_SIZE, f"/opt/zenml/locks/{spec.parent}.lock"],
                remove=True,
                network_mode="none",
            )
            .decode()
            .strip()
        )
        print(
            f"zenml/{name}: +{grown / 1e6:.0f} MB over zenml/{spec.parent} for "
            f"{added / 1e6:.0f} MB of added packages: "
            f"{100 * (grown / added - 1):+.1f}% (goal <= +10%)"
        )


if __name__ == "__main__":
    main()
