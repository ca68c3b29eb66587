"""The launcher under faults: timeouts, memory, signals, a killed launcher, secrets."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from zenml.exceptions import RunFailedError, ZenMLError
from zenml.orchestrators.docker import RUN_LABEL, DockerOrchestrator
from zenml.pipelines import load_pipeline
from zenml.repository import Repository
from zenml.runs import run_pipeline

pytestmark = pytest.mark.usefixtures("images", "no_leftovers")


def _run_in_process(
    code: Path, name: str, repository: Repository, lines: list | None = None
):
    spec = load_pipeline(code / "faults.py", name).compile()
    printer = (lambda step, line: lines.append(line)) if lines is not None else None
    return run_pipeline(
        spec,
        orchestrator=DockerOrchestrator(printer=printer),
        repository=repository,
        enable_cache=False,
    )


def _launch(code: Path, name: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zenml.cli",
            "pipeline",
            "run",
            str(code / "faults.py"),
            "--name",
            name,
            "--no-cache",
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_container(client: docker.DockerClient, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = client.containers.list(
            filters={"label": RUN_LABEL, "status": "running"}
        )
        if running:
            return running[0].labels[RUN_LABEL]
        time.sleep(0.2)
    raise AssertionError("no step container started")


def _runs(cwd: Path) -> list[dict]:
    listed = subprocess.run(
        [sys.executable, "-m", "zenml.cli", "runs", "list", "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(listed.stdout)


def test_a_step_past_its_timeout_is_stopped_and_reported_as_a_timeout(
    pipelines_dir: Path, repository: Repository
) -> None:
    with pytest.raises(RunFailedError) as failure:
        _run_in_process(pipelines_dir, "sleepy", repository)

    step = repository.metadata.run(failure.value.run_id)["steps"][0]
    assert step["status"] == "failed"
    assert "timed out after 2s" in step["reason"]


def test_a_step_out_of_memory_is_reported_as_such(
    pipelines_dir: Path, repository: Repository
) -> None:
    with pytest.raises(RunFailedError) as failure:
        _run_in_process(pipelines_dir, "hungry", repository)

    step = repository.metadata.run(failure.value.run_id)["steps"][0]
    assert step["status"] == "failed"
    assert "out of memory" in step["reason"]
    assert step["exit_code"] == 137


def test_sigint_stops_every_container_and_marks_the_run_cancelled(
    docker_client: docker.DockerClient, pipelines_dir: Path, repository: Repository
) -> None:
    launcher = _launch(pipelines_dir, "looping", repository.root)
    run_id = _wait_for_container(docker_client)
    time.sleep(2)

    launcher.send_signal(signal.SIGINT)
    output, _ = launcher.communicate(timeout=30)

    assert launcher.returncode == 130, output
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{RUN_LABEL}={run_id}"}
    )
    run = next(r for r in _runs(repository.root) if r["id"] == run_id)
    assert run["status"] == "cancelled"
    step = repository.metadata.run(run_id)["steps"][0]
    assert step["status"] == "cancelled"


def test_a_launcher_killed_with_sigkill_leaves_nothing_behind_after_the_next_command(
    docker_client: docker.DockerClient, pipelines_dir: Path, repository: Repository
) -> None:
    launcher = _launch(pipelines_dir, "looping", repository.root)
    run_id = _wait_for_container(docker_client)
    time.sleep(1)

    launcher.kill()
    launcher.wait(timeout=10)
    runs = _runs(repository.root)

    run = next(r for r in runs if r["id"] == run_id)
    assert run["status"] == "interrupted"
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{RUN_LABEL}={run_id}"}
    )
    run_dir = repository.artifact_store.run_dir("looping", run_id)
    assert not list(run_dir.rglob(".partial-*"))


def test_a_secret_reaches_the_step_and_is_never_printed_or_stored(
    pipelines_dir: Path, repository: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZENML_TEST_TOKEN", "s3cr3t-value")
    lines: list[str] = []

    result = _run_in_process(pipelines_dir, "secretive", repository, lines)

    assert result.artifact("use_secret") is True
    assert "token is ****" in lines
    stored = [p for p in repository.config_dir.rglob("*") if p.is_file()]
    assert stored
    for path in stored:
        assert b"s3cr3t-value" not in path.read_bytes(), path


def test_a_missing_secret_stops_the_run_before_it_starts(
    pipelines_dir: Path, repository: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZENML_TEST_TOKEN", raising=False)

    with pytest.raises(Exception, match="ZENML_TEST_TOKEN"):
        _run_in_process(pipelines_dir, "secretive", repository)
    assert repository.metadata.runs() == []


def test_the_same_pipeline_eight_times_at_once_all_finish_with_their_own_artifacts(
    pipelines_dir: Path, repository: Repository
) -> None:
    launchers = [_launch(pipelines_dir, "odd_names", repository.root) for _ in range(8)]
    outputs = [launcher.communicate(timeout=300)[0] for launcher in launchers]

    assert [launcher.returncode for launcher in launchers] == [0] * 8, outputs
    runs = [r for r in _runs(repository.root) if r["pipeline"] == "odd_names"]
    assert len(runs) == 8 and {r["status"] for r in runs} == {"completed"}
    uris = set()
    for run in runs:
        record = repository.metadata.run(run["id"])
        step = next(s for s in record["steps"] if s["name"] == "double (x2) step")
        uris.add(step["artifacts"][0]["uri"])
    assert len(uris) == 8


def test_independent_steps_run_side_by_side(
    pipelines_dir: Path, repository: Repository
) -> None:
    result = _run_in_process(pipelines_dir, "side_by_side", repository)

    steps = repository.metadata.run(result.run_id)["steps"]
    (first, second) = sorted(steps, key=lambda s: s["started"])
    assert second["started"] < first["ended"]


def test_a_gpu_where_none_exists_is_refused_before_the_run_starts(
    docker_client: docker.DockerClient, pipelines_dir: Path, repository: Repository
) -> None:
    if "nvidia" in docker_client.info().get("Runtimes", {}):
        pytest.skip("this daemon has a GPU runtime")

    with pytest.raises(ZenMLError, match="no GPU runtime"):
        _run_in_process(pipelines_dir, "gpu_hungry", repository)
    assert repository.metadata.runs() == []
