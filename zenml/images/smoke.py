"""The one-step pipeline every image runs through the launcher before its tag."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import tempfile
from pathlib import Path

import docker

from zenml.orchestrators.docker import DockerOrchestrator
from zenml.repository import Repository
from zenml.spec import PipelineSpec, StepSpec


def smoke() -> dict[str, str]:
    """What the image reports about itself from inside a step."""
    return {
        "python": platform.python_version(),
        "zenml": importlib.metadata.version("zenml"),
        "image": os.environ.get("ZENML_IMAGE", "?"),
    }


def run_smoke_pipeline(client: docker.DockerClient, image: str) -> dict[str, str]:
    """Run `smoke` in `image` with a throw-away repository; returns its output."""
    from zenml.runs import run_pipeline

    with tempfile.TemporaryDirectory(prefix="zenml-smoke-") as folder:
        root = Path(folder)
        spec = PipelineSpec(
            name="smoke",
            code_root=str(root),
            steps=(StepSpec(name="smoke", source=f"{__name__}:smoke", image=image),),
        )
        repository = Repository.init(root)
        orchestrator = DockerOrchestrator(client, printer=lambda step, line: None)
        result = run_pipeline(
            spec, orchestrator=orchestrator, repository=repository, enable_cache=False
        )
        answer: dict[str, str] = result.artifact("smoke")
        return answer
