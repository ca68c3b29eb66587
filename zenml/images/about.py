"""What `docker run zenml/<image>` prints when given no command."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform

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


if __name__ == "__main__":
    print(describe())
