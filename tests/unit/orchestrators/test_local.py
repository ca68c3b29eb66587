from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from zenml.artifacts import ArtifactStore
from zenml.entrypoint import Task
from zenml.metadata import COMPLETED, FAILED
from zenml.orchestrators.base import RunContext, StepLaunch
from zenml.orchestrators.local import LocalOrchestrator
from zenml.pipelines import load_pipeline
from zenml.repository import Repository
from zenml.runs import run_pipeline

STEPS = """
    import os
    import sys
    import time

    from zenml import pipeline, step


    @step
    def chatty() -> int:
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return 1


    @step
    def read_var() -> str:
        return os.environ["ZENML_TEST_VAR"]


    @step
    def crash() -> int:
        print("about to fail")
        raise ValueError("the data is bad")


    @step
    def leave() -> int:
        print("leaving")
        sys.exit(4)


    # Two independent steps the scheduler may start together; in one process a
    # step that ends must not reset the environment of one still running.
    @step(environment={"WHO": "fast"})
    def fast() -> str:
        time.sleep(0.05)
        return os.environ.get("WHO", "")


    @step(environment={"WHO": "slow"})
    def slow() -> str:
        time.sleep(0.2)
        return os.environ.get("WHO", "")


    @pipeline
    def side_by_side():
        fast()
        slow()
"""


@pytest.fixture
def steps_file(write_file) -> Path:
    return write_file("local_steps.py", STEPS)


def launch_step(steps_file: Path, tmp_path: Path, name: str) -> tuple:
    spec = load_pipeline(steps_file).compile()
    task = tmp_path / name / "task.json"
    Task(
        step=name,
        source=f"{steps_file}:{name}",
        code_root=str(tmp_path),
        outputs={"output": str(tmp_path / name / "output")},
    ).write(task)
    context = RunContext(
        run_id="r", spec=spec, artifact_root=tmp_path, run_dir=tmp_path
    )
    launch = StepLaunch(
        step=spec.steps[0],
        task_file=task,
        log_file=tmp_path / name / "logs.txt",
        environment={"ZENML_TEST_VAR": "set"},
    )
    return context, launch


def test_a_step_log_holds_what_it_printed(steps_file: Path, tmp_path: Path) -> None:
    outcome = LocalOrchestrator().run_step(*launch_step(steps_file, tmp_path, "chatty"))

    assert outcome.status == COMPLETED
    assert outcome.exit_code == 0
    log = (tmp_path / "chatty" / "logs.txt").read_text().splitlines()
    assert sorted(log) == ["to stderr", "to stdout"]


def test_a_failed_step_keeps_its_last_lines(steps_file: Path, tmp_path: Path) -> None:
    outcome = LocalOrchestrator().run_step(*launch_step(steps_file, tmp_path, "leave"))

    assert outcome.status == FAILED
    assert outcome.exit_code == 4
    assert outcome.last_lines == ("leaving",)


def test_a_step_that_raises_logs_its_traceback(
    steps_file: Path, tmp_path: Path
) -> None:
    outcome = LocalOrchestrator().run_step(*launch_step(steps_file, tmp_path, "crash"))

    assert outcome.status == FAILED
    assert outcome.exit_code == 1
    assert outcome.reason == "raised ValueError: the data is bad"
    assert outcome.last_lines[0] == "about to fail"
    assert outcome.last_lines[-1] == "ValueError: the data is bad"
    log = (tmp_path / "crash" / "logs.txt").read_text()
    assert "Traceback (most recent call last)" in log


def test_streams_and_environment_are_restored(
    steps_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZENML_TEST_VAR", raising=False)
    streams = sys.stdout, sys.stderr

    LocalOrchestrator().run_step(*launch_step(steps_file, tmp_path, "read_var"))

    assert ArtifactStore.read(tmp_path / "read_var" / "output") == "set"
    assert (sys.stdout, sys.stderr) == streams
    assert "ZENML_TEST_VAR" not in os.environ


def test_steps_that_could_run_side_by_side_keep_their_own_environment(
    steps_file: Path, repository: Repository
) -> None:
    streams = sys.stdout, sys.stderr

    result = run_pipeline(
        load_pipeline(steps_file).compile(), orchestrator="local", repository=repository
    )

    assert result.artifact("slow") == "slow"
    assert result.artifact("fast") == "fast"
    assert (sys.stdout, sys.stderr) == streams
