"""What `docker run zenml/<image>` prints when given no command."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import sys

from zenml.images.selftest import IMAGE_ENV

# Packages worth naming per image, and the backends each image serves.
KEY_PACKAGES: dict[str, tuple[str, ...]] = {
    "base": ("apache-beam", "pandas", "pyarrow", "numpy", "protobuf"),
    "gcp": ("google-cloud-aiplatform", "google-cloud-storage"),
    "pytorch": ("torch",),
    "cortex": ("onnxruntime", "fastapi", "uvicorn"),
    "tensorflow": ("tensorflow-cpu",),
}
BACKENDS: dict[str, str] = {
    "base": "processing: Beam direct runner, Beam portable-runner workers",
    "gcp": "processing: Beam on Dataflow; training and serving: Vertex AI",
    "pytorch": "training: PyTorch (CPU, or CUDA when the container has a GPU)",
    "cortex": "serving: the HTTP model server that Cortex deploys",
    "tensorflow": "training: TensorFlow",
}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(image: str | None = None) -> str:
    image = image or os.environ.get(IMAGE_ENV, "base")
    names = dict.fromkeys(KEY_PACKAGES["base"] + KEY_PACKAGES.get(image, ()))
    lines = [
        f"zenml/{image}: zenml {_version('zenml')} on Python "
        f"{platform.python_version()} ({platform.machine()})",
        "",
        "Packages:",
        *(f"  {name:<26} {_version(name)}" for name in names),
        "",
        "Serves:",
        f"  {BACKENDS['base']}",
    ]
    if image != "base" and image in BACKENDS:
        lines.append(f"  {BACKENDS[image]}")
    lines += [
        "",
        "Use:",
        "  zenml runs each pipeline step in the image of its integration; run",
        "  `zenml pipeline run PIPELINE.py` on the host, not here.",
        f"  docker run zenml/{image} python -c 'import zenml'  run a command",
        f"  FROM zenml/{image}:{_version('zenml')}  build your own image",
        "  RUN pip install PACKAGE  add packages, as the image's user",
    ]
    return "\n".join(lines)


def largest_packages(count: int = 5) -> list[tuple[str, int]]:
    """The installed distributions that take the most space, with their bytes."""
    sizes = []
    for dist in metadata.distributions():
        total = 0
        for file in dist.files or []:
            path = str(dist.locate_file(file))
            if os.path.isfile(path):
                total += os.path.getsize(path)
        sizes.append((dist.metadata["Name"], total))
    return sorted(sizes, key=lambda item: -item[1])[:count]


if __name__ == "__main__":
    if sys.argv[1:] == ["--largest"]:
        print(
            ", ".join(
                f"{name} {size / 1e6:.0f} MB" for name, size in largest_packages()
            )
        )
    else:
        print(describe())
