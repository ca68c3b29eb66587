"""tasks.py: each invoke task runs the zenml command it stands for."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from invoke import MockContext, Result


@pytest.fixture(scope="module")
def tasks() -> ModuleType:
    path = Path(__file__).parents[2] / "tasks.py"
    spec = importlib.util.spec_from_file_location("zenml_tasks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ran(task, **arguments: object) -> list[str]:
    context = MockContext(run=Result(), repeat=True)
    task(context, **arguments)
    return [call.args[0] for call in context.run.call_args_list]


@pytest.mark.parametrize(
    ("arguments", "command"),
    [
        ({}, "zenml image build"),
        (
            {"names": "base,pytorch", "force": True, "parent": "my/python:3.11"},
            "zenml image build base pytorch --force --parent my/python:3.11",
        ),
    ],
)
def test_images_builds_the_named_images(
    tasks: ModuleType, arguments: dict[str, object], command: str
) -> None:
    assert _ran(tasks.images, **arguments) == [command]


def test_lock_parent_and_test_run_their_commands(tasks: ModuleType) -> None:
    assert _ran(tasks.lock, names="gcp") == ["zenml image lock gcp"]
    assert _ran(tasks.parent) == ["zenml image parent --tag zenml/python:3.11-bookworm"]
    assert _ran(tasks.test) == ["python -m pytest -q"]
