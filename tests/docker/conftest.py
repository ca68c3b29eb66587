"""Fixtures for tests against the real Docker daemon.

These tests are part of the suite, not optional: without a daemon they skip on
a laptop but fail under CI=true. Every test checks that the containers its
runs created are gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from zenml.images.builder import ImageBuilder
from zenml.orchestrators.docker import RUN_LABEL

PIPELINES = Path(__file__).parent / "pipelines"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/docker/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        message = f"no Docker daemon: {exc}; start one (scripts/setup.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return client


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> dict[str, str]:
    """zenml's images, built on demand (a no-op when they are current)."""
    built = ImageBuilder(docker_client, printer=lambda line: None).build([])
    return {image.name: image.tag for image in built}


@pytest.fixture
def no_leftovers(docker_client: docker.DockerClient) -> Iterator[None]:
    """Fail a test that leaves any zenml step container behind."""
    before = {
        c.id
        for c in docker_client.containers.list(all=True, filters={"label": RUN_LABEL})
    }
    yield
    after = docker_client.containers.list(all=True, filters={"label": RUN_LABEL})
    leftovers = [c for c in after if c.id not in before]
    for container in leftovers:
        container.remove(force=True)
    assert not leftovers, f"containers left behind: {[c.name for c in leftovers]}"


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> Path:
    """A copy of the test pipelines, so their code root is private to the test."""
    target = tmp_path / "code"
    shutil.copytree(PIPELINES, target)
    return target


ZenmlCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def quickstart() -> Path:
    return Path(__file__).parents[2] / "examples" / "quickstart" / "pipeline.py"


@pytest.fixture(scope="session")
def zenml_cli() -> ZenmlCli:
    """Run the `zenml` command line as a user would, in a given folder."""

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zenml.cli", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "COLUMNS": "200"},
        )

    return run
