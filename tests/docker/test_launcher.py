"""The launcher against the real daemon: outcomes, logs, environment, paths."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from zenml.exceptions import ImageNotFoundError, RunFailedError
from zenml.orchestrators.docker import DockerOrchestrator, container_name
from zenml.pipelines import load_pipeline
from zenml.repository import Repository
from zenml.runs import RunResult, run_pipeline

pytestmark = pytest.mark.usefixtures("images", "no_leftovers")


def _run(
    code: Path,
    name: str,
    repository: Repository,
    lines: list[tuple[str, str]] | None = None,
) -> RunResult:
    spec = load_pipeline(code / "faults.py", name).compile()
    printer = (
        (lambda step, line: lines.append((step, line))) if lines is not None else None
    )
    return run_pipeline(
        spec,
        orchestrator=DockerOrchestrator(printer=printer),
        repository=repository,
        enable_cache=False,
    )


def test_a_step_exiting_3_fails_the_run_and_its_dependant_never_starts(
    pipelines_dir: Path, repository: Repository
) -> None:
    with pytest.raises(RunFailedError) as failure:
        _run(pipelines_dir, "failing", repository)

    run = repository.metadata.run(failure.value.run_id)
    steps = {s["name"]: s for s in run["steps"]}
    assert run["status"] == "failed"
    assert steps["produce"]["status"] == "completed"
    assert steps["exit_with"]["status"] == "failed"
    assert steps["exit_with"]["exit_code"] == 3
    assert "exited with code 3" in steps["exit_with"]["reason"]
    assert steps["consume"]["status"] == "skipped"
    assert steps["consume"]["started"] is None


def test_every_line_of_a_step_that_exits_at_once_arrives_in_order(
    pipelines_dir: Path, repository: Repository
) -> None:
    lines: list[tuple[str, str]] = []
    result = _run(pipelines_dir, "talking", repository, lines)

    said = [line for step, line in lines if step == "chatty"]
    assert said == ["line one", "line two", "line three"]
    log = (
        repository.artifact_store.step_dir("talking", result.run_id, "chatty")
        / "logs.txt"
    )
    assert log.read_text().splitlines() == said
    assert result.artifact("chatty") == "said"


def test_pipeline_and_step_variables_and_parameters_reach_the_container(
    pipelines_dir: Path, repository: Repository
) -> None:
    result = _run(pipelines_dir, "environment", repository)

    assert result.artifact("environment_probe") == {"FOO": "bar", "BAZ": "bar", "P": 1}


def test_an_artifact_store_under_a_space_and_an_accent_works(
    tmp_path: Path, pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "mes données" / "zen ml"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    repository = Repository.init(folder)

    result = _run(pipelines_dir, "odd_names", repository)

    assert result.artifact("double (x2) step") == 42
    run = repository.metadata.run(result.run_id)
    uris = [a["uri"] for s in run["steps"] for a in s["artifacts"]]
    assert all(uri.startswith(str(folder)) for uri in uris)


def test_container_names_are_valid_and_distinct_per_run_and_step() -> None:
    first = container_name("run-a", "double (x2) step", 1)
    second = container_name("run-b", "double (x2) step", 1)

    assert first != second
    assert " " not in first and "(" not in first


def test_a_missing_image_says_which_command_builds_it(
    pipelines_dir: Path, repository: Repository
) -> None:
    spec = load_pipeline(pipelines_dir / "faults.py", "talking").compile()
    step = spec.steps[0].model_copy(update={"integration": "nosuch"})
    spec = spec.model_copy(update={"steps": (step,)})

    with pytest.raises(ImageNotFoundError, match="zenml image build nosuch"):
        run_pipeline(spec, orchestrator="docker", repository=repository)

    assert repository.metadata.runs() == []


def test_images_run_steps_as_the_host_user(
    docker_client: docker.DockerClient, pipelines_dir: Path, repository: Repository
) -> None:
    result = _run(pipelines_dir, "talking", repository)

    artifact = repository.artifact_store.output_uri(
        "talking", result.run_id, "chatty", "output"
    )
    import os

    assert artifact.stat().st_uid == os.getuid()
