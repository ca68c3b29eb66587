"""Docker orchestrator branches a real daemon cannot reach on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from zenml.exceptions import DockerUnavailableError
from zenml.images.catalogue import ResolvedImage
from zenml.orchestrators.base import RunContext, StepLaunch
from zenml.orchestrators.docker import DockerOrchestrator, _outcome
from zenml.spec import PipelineSpec, StepSpec


class _VanishingContainer:
    """A container whose daemon goes away while the step runs."""

    name = "zenml-run-step-1"
    removed = False

    def start(self) -> None:
        pass

    def logs(self, **kwargs: Any) -> list[bytes]:
        return [b"working\n"]

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        raise requests.exceptions.ConnectionError("connection refused")

    def remove(self, force: bool = False) -> None:
        raise requests.exceptions.ConnectionError("connection refused")


class _Client:
    def __init__(self) -> None:
        self.containers = self
        self.created: list[_VanishingContainer] = []

    def create(self, *args: Any, **kwargs: Any) -> _VanishingContainer:
        self.created.append(_VanishingContainer())
        return self.created[-1]


def _context(tmp_path: Path, step: StepSpec) -> RunContext:
    spec = PipelineSpec(name="p", code_root=str(tmp_path), steps=(step,))
    return RunContext(run_id="r1", spec=spec, artifact_root=tmp_path, run_dir=tmp_path)


def test_a_daemon_that_goes_away_mid_step_gives_a_clear_error(tmp_path: Path) -> None:
    step = StepSpec(name="train", source="x.py:train")
    orchestrator = DockerOrchestrator(_Client(), printer=lambda step, line: None)  # type: ignore[arg-type]
    orchestrator._images["train"] = ResolvedImage("zenml/base:0.1.0", "sha256:abc")
    launch = StepLaunch(
        step=step,
        task_file=tmp_path / "task.json",
        log_file=tmp_path / "logs.txt",
        environment={},
    )

    with pytest.raises(
        DockerUnavailableError, match="stopped answering.*start it again"
    ):
        orchestrator.run_step(_context(tmp_path, step), launch)


@pytest.mark.parametrize(
    ("state", "status", "reason"),
    [
        ({"ExitCode": 0}, "completed", ""),
        ({"ExitCode": 3}, "failed", "exited with code 3"),
        ({"ExitCode": 137}, "failed", "killed by signal 9"),
        ({"ExitCode": 137, "OOMKilled": True}, "failed", "out of memory"),
    ],
)
def test_outcomes_are_read_from_the_container_state(
    state: dict[str, Any], status: str, reason: str
) -> None:
    step = StepSpec(name="s", source="x.py:s")
    image = ResolvedImage("zenml/base:0.1.0", "sha256:abc")

    outcome = _outcome(
        {
            "StartedAt": "2026-12-03T10:00:00.123456789Z",
            "FinishedAt": "2026-12-03T10:00:02.5Z",
            **state,
        },
        False,
        step,
        image,
        "c",
        (),
    )

    assert outcome.status == status
    assert reason in outcome.reason
    assert outcome.finished_at - outcome.started_at == pytest.approx(2.376544, abs=1e-5)
