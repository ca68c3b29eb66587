"""TensorFlow training in its own image, beside Beam work in the base image."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import pytest

from zenml.pipelines import load_pipeline
from zenml.repository import Repository
from zenml.runs import run_pipeline

EXAMPLE = Path(__file__).parents[2] / "examples" / "tensorflow" / "pipeline.py"
ZenmlCli = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.usefixtures("images", "no_leftovers")


def test_beam_preprocessing_then_keras_training_each_in_its_image(
    repository: Repository,
) -> None:
    spec = load_pipeline(EXAMPLE).compile(epochs=40)

    result = run_pipeline(spec, orchestrator="docker", repository=repository)

    assert result.artifact("evaluate")["accuracy"] >= 0.9
    images = {step["name"]: step["image"] for step in result.record()["steps"]}
    assert images["preprocess"].startswith("zenml/base:")
    assert images["train"].startswith("zenml/tensorflow:")
    assert images["evaluate"].startswith("zenml/tensorflow:")


def test_the_tensorflow_image_holds_beam_and_no_torch(
    docker_client: docker.DockerClient, images: dict[str, str]
) -> None:
    probe = (
        "import importlib.util as u; import apache_beam, tensorflow; "
        "print(tensorflow.__version__, u.find_spec('torch') is None)"
    )
    output = docker_client.containers.run(
        images["tensorflow"], ["python", "-c", probe], remove=True
    ).decode()

    version, no_torch = output.split()[-2:]
    assert version.startswith("2.")
    assert no_torch == "True"
