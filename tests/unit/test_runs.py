from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from zenml.artifacts import PARTIAL_PREFIX
from zenml.exceptions import RunFailedError, ZenMLError
from zenml.metadata import (
    CACHED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    RUNNING,
    SKIPPED,
)
from zenml.pipelines import load_pipeline
from zenml.repository import Repository
from zenml.runs import default_orchestrator, recover_interrupted_runs, run_pipeline
from zenml.runs import step_environment as environment_of
from zenml.spec import PipelineSpec, StepSpec


def statuses(record: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in record["steps"]}


def test_a_pipeline_runs_and_records_its_steps(
    numbers_file: Path, repository: Repository, ran
) -> None:
    spec = load_pipeline(numbers_file).compile(n=4)

    result = run_pipeline(spec, orchestrator="local", repository=repository)
    record = result.record()

    assert result.status == COMPLETED
    assert ran() == ["load", "summarise", "report"]
    assert result.artifact("report") == "6/4"
    assert result.artifact("summarise", "count") == 4
    assert record["status"] == COMPLETED
    assert record["orchestrator"] == "local"
    assert PipelineSpec.model_validate_json(record["spec"]) == spec
    assert statuses(record) == {
        "load": COMPLETED,
        "summarise": COMPLETED,
        "report": COMPLETED,
    }
    assert all(s["exit_code"] == 0 for s in record["steps"])
    artifacts = {
        (s["name"], a["name"]): a for s in record["steps"] for a in s["artifacts"]
    }
    assert sorted(artifacts) == [
        ("load", "output"),
        ("report", "output"),
        ("summarise", "count"),
        ("summarise", "total"),
    ]
    run_dir = repository.artifact_store.run_dir("numbers", result.run_id)
    assert artifacts[("load", "output")]["uri"] == str(run_dir / "load" / "output")
    assert artifacts[("load", "output")]["materializer"] == "json"


def test_an_unknown_artifact_of_a_run(
    numbers_file: Path, repository: Repository
) -> None:
    spec = load_pipeline(numbers_file).compile()
    result = run_pipeline(spec, orchestrator="local", repository=repository)

    with pytest.raises(ZenMLError, match="no artifact summarise.output"):
        result.artifact("summarise")


def test_a_failing_step_fails_the_run_and_skips_its_dependant(
    failing_file: Path, repository: Repository, ran
) -> None:
    spec = load_pipeline(failing_file).compile()

    with pytest.raises(RunFailedError, match="the data is bad") as failed:
        run_pipeline(spec, orchestrator="local", repository=repository)
    record = repository.metadata.run(failed.value.run_id)

    assert failed.value.status == FAILED
    assert ran() == ["start", "boom"]
    assert record["status"] == FAILED
    assert "boom" in record["error"]
    assert statuses(record) == {"start": COMPLETED, "boom": FAILED, "after": SKIPPED}
    boom = next(s for s in record["steps"] if s["name"] == "boom")
    assert boom["exit_code"] == 1
    assert boom["reason"] == "raised ValueError: the data is bad"
    assert boom["artifacts"] == []


def test_a_step_that_exits_records_its_exit_code(
    write_file, repository: Repository
) -> None:
    path = write_file(
        "exits.py",
        """
        import sys

        from zenml import pipeline, step


        @step
        def leave() -> int:
            sys.exit(3)


        @pipeline
        def exits():
            leave()
    """,
    )

    with pytest.raises(RunFailedError) as failed:
        run_pipeline(
            load_pipeline(path).compile(), orchestrator="local", repository=repository
        )
    step = repository.metadata.run(failed.value.run_id)["steps"][0]

    assert step["status"] == FAILED
    assert step["exit_code"] == 3
    assert step["reason"] == "exited with code 3"


def test_a_step_that_returns_without_writing_its_output_fails(
    write_file, repository: Repository
) -> None:
    path = write_file(
        "quits.py",
        """
        import sys

        from zenml import pipeline, step


        @step
        def quit_early() -> int:
            sys.exit(0)


        @pipeline
        def quits():
            quit_early()
    """,
    )

    with pytest.raises(RunFailedError) as failed:
        run_pipeline(
            load_pipeline(path).compile(), orchestrator="local", repository=repository
        )
    step = repository.metadata.run(failed.value.run_id)["steps"][0]

    assert step["status"] == FAILED
    assert "wrote no output ['output']" in step["reason"]


def test_a_second_run_reuses_every_step(
    numbers_file: Path, repository: Repository, ran
) -> None:
    spec = load_pipeline(numbers_file).compile()
    first = run_pipeline(spec, orchestrator="local", repository=repository)

    second = run_pipeline(spec, orchestrator="local", repository=repository)
    record = second.record()

    assert ran() == ["load", "summarise", "report"]
    assert statuses(record) == {"load": CACHED, "summarise": CACHED, "report": CACHED}
    assert all(s["reason"] == f"reused run {first.run_id}" for s in record["steps"])
    assert second.artifact("report") == first.artifact("report")


def test_a_changed_parameter_runs_the_step_and_what_follows(
    numbers_file: Path, repository: Repository, ran
) -> None:
    found = load_pipeline(numbers_file)
    run_pipeline(found.compile(n=3), orchestrator="local", repository=repository)

    result = run_pipeline(
        found.compile(n=5), orchestrator="local", repository=repository
    )

    assert ran() == ["load", "summarise", "report"] * 2
    assert statuses(result.record()) == {
        "load": COMPLETED,
        "summarise": COMPLETED,
        "report": COMPLETED,
    }
    assert result.artifact("report") == "10/5"


def test_disabled_cache_runs_every_step(
    numbers_file: Path, repository: Repository, ran
) -> None:
    spec = load_pipeline(numbers_file).compile()
    run_pipeline(spec, orchestrator="local", repository=repository)

    result = run_pipeline(
        spec, orchestrator="local", repository=repository, enable_cache=False
    )

    assert ran() == ["load", "summarise", "report"] * 2
    assert set(statuses(result.record()).values()) == {COMPLETED}


def test_a_step_marked_uncacheable_always_runs(
    numbers_file: Path, repository: Repository, ran
) -> None:
    spec = load_pipeline(numbers_file).compile()
    steps = tuple(
        s.model_copy(update={"cache": s.name != "summarise"}) for s in spec.steps
    )
    spec = spec.model_copy(update={"steps": steps})
    run_pipeline(spec, orchestrator="local", repository=repository)

    result = run_pipeline(spec, orchestrator="local", repository=repository)

    # report reads the new outputs of summarise, so it runs again as well.
    assert ran() == ["load", "summarise", "report", "summarise", "report"]
    assert statuses(result.record()) == {
        "load": CACHED,
        "summarise": COMPLETED,
        "report": COMPLETED,
    }


def test_a_deleted_artifact_is_not_reused(
    numbers_file: Path, repository: Repository, ran
) -> None:
    spec = load_pipeline(numbers_file).compile()
    first = run_pipeline(spec, orchestrator="local", repository=repository)
    shutil.rmtree(repository.artifact_store.step_dir("numbers", first.run_id, "load"))

    second = run_pipeline(spec, orchestrator="local", repository=repository)

    # The new output of load is a new input of summarise, so all of them run.
    assert ran() == ["load", "summarise", "report"] * 2
    assert set(statuses(second.record()).values()) == {COMPLETED}


def test_a_yaml_spec_runs(
    numbers_file: Path,
    repository: Repository,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_pipeline(numbers_file).compile(n=2).to_yaml(tmp_path / "numbers.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    spec = PipelineSpec.from_yaml(Path("../numbers.yaml"))
    result = run_pipeline(spec, orchestrator="local", repository=repository)

    assert result.artifact("report") == "1/2"


def environment_spec(
    pipeline_env: dict[str, str], step_env: dict[str, str]
) -> PipelineSpec:
    return PipelineSpec(
        name="p",
        code_root="/",
        environment=pipeline_env,
        steps=(StepSpec(name="s", source="m:s", environment=step_env),),
    )


def test_step_environment_is_step_over_pipeline() -> None:
    spec = environment_spec(
        {"A": "pipeline", "B": "pipeline"}, {"B": "step", "C": "step"}
    )

    assert environment_of(spec, spec.steps[0]) == {
        "A": "pipeline",
        "B": "step",
        "C": "step",
    }


def test_step_environment_expands_pipeline_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOO", "from-host")
    monkeypatch.setenv("HOST_ONLY", "host")
    monkeypatch.delenv("UNSET_HERE", raising=False)
    spec = environment_spec(
        {"FOO": "bar"},
        {"BAZ": "${FOO}", "PATHS": "$HOST_ONLY:${FOO}", "KEEP": "${UNSET_HERE}"},
    )

    assert environment_of(spec, spec.steps[0]) == {
        "FOO": "bar",
        "BAZ": "bar",
        "PATHS": "host:bar",
        "KEEP": "${UNSET_HERE}",
    }


def test_a_step_sees_its_environment(write_file, repository: Repository) -> None:
    path = write_file(
        "env.py",
        """
        import os

        from zenml import pipeline, step


        @step(environment={"BAZ": "${FOO}"})
        def read_env() -> list:
            return [os.environ.get("FOO"), os.environ.get("BAZ")]


        @pipeline(environment={"FOO": "bar"})
        def env():
            read_env()
    """,
    )

    result = run_pipeline(
        load_pipeline(path).compile(), orchestrator="local", repository=repository
    )

    assert result.artifact("read_env") == ["bar", "bar"]
    assert "BAZ" not in os.environ


def test_unknown_orchestrator(repository: Repository) -> None:
    with pytest.raises(ZenMLError, match="`docker`.*`local`"):
        default_orchestrator("kubernetes", repository)


def test_the_orchestrator_set_in_the_config_is_the_default(tmp_path: Path) -> None:
    (tmp_path / ".zenml").mkdir()
    (tmp_path / ".zenml" / "config.yaml").write_text("orchestrator: local\n")

    assert default_orchestrator(None, Repository.init(tmp_path)).name == "local"


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


@pytest.fixture
def removed_containers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run ids whose containers recovery removed, without asking Docker."""
    removed: list[str] = []
    monkeypatch.setattr("zenml.runs._remove_containers", removed.append)
    return removed


def start_run(
    repository: Repository, run_id: str, pid: int, host: str | None = None
) -> None:
    repository.metadata.create_run(
        run_id,
        "p",
        "docker",
        "{}",
        [{"name": "train", "integration": "base", "parameters": {}}],
        pid,
        host or socket.gethostname(),
    )


def test_a_run_whose_launcher_died_is_interrupted(
    repository: Repository, dead_pid: int, removed_containers: list[str]
) -> None:
    start_run(repository, "run-dead", dead_pid)
    run_dir = repository.artifact_store.run_dir("p", "run-dead")
    partial = run_dir / "train" / f"{PARTIAL_PREFIX}model-0000"
    partial.mkdir(parents=True)
    repository.artifact_store.write(1, run_dir / "train" / "kept")

    recovered = recover_interrupted_runs(repository)
    record = repository.metadata.run("run-dead")

    assert recovered == ["run-dead"]
    assert removed_containers == ["run-dead"]
    assert record["status"] == INTERRUPTED
    assert "launcher stopped" in record["error"]
    assert statuses(record) == {"train": INTERRUPTED}
    assert not partial.exists()
    assert (run_dir / "train" / "kept").is_dir()


def test_runs_of_a_live_launcher_or_another_host_are_left_alone(
    repository: Repository, dead_pid: int, removed_containers: list[str]
) -> None:
    start_run(repository, "run-alive", os.getpid())
    start_run(repository, "run-elsewhere", dead_pid, host="another-machine")

    assert recover_interrupted_runs(repository) == []
    assert removed_containers == []
    assert {r["status"] for r in repository.metadata.runs()} == {RUNNING}


def test_a_new_run_recovers_interrupted_ones_first(
    numbers_file: Path,
    repository: Repository,
    dead_pid: int,
    removed_containers: list[str],
) -> None:
    start_run(repository, "run-dead", dead_pid)

    run_pipeline(
        load_pipeline(numbers_file).compile(),
        orchestrator="local",
        repository=repository,
    )

    assert repository.metadata.run("run-dead")["status"] == INTERRUPTED
