"""Beam's portable runner with its job service and workers in zenml's base image."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from zenml.orchestrators.docker import RUN_LABEL
from zenml.pipelines import load_pipeline
from zenml.repository import Repository
from zenml.runs import run_pipeline

ZenmlCli = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.usefixtures("images", "no_leftovers")


def _preprocess_outputs(zenml_cli: ZenmlCli, cwd: Path) -> tuple[str, dict[str, bytes]]:
    runs = json.loads(zenml_cli("runs", "list", "--json", cwd=cwd).stdout)
    run = json.loads(zenml_cli("runs", "show", runs[0]["id"], "--json", cwd=cwd).stdout)
    step = next(s for s in run["steps"] if s["name"] == "preprocess")
    files = {}
    for artifact in step["artifacts"]:
        for path in sorted(Path(artifact["uri"]).iterdir()):
            if path.name != "meta.json":
                files[f"{artifact['name']}/{path.name}"] = path.read_bytes()
    return run["id"], files


def test_the_quickstart_preprocess_is_byte_identical_on_the_portable_runner(
    tmp_path: Path,
    docker_client: docker.DockerClient,
    zenml_cli: ZenmlCli,
    quickstart: Path,
) -> None:
    direct = zenml_cli("pipeline", "run", str(quickstart), "--no-cache", cwd=tmp_path)
    assert direct.returncode == 0, direct.stdout + direct.stderr
    assert "(direct runner)" in direct.stdout
    _, on_direct = _preprocess_outputs(zenml_cli, tmp_path)

    portable = zenml_cli(
        "pipeline",
        "run",
        str(quickstart),
        "--no-cache",
        "--backend",
        "preprocess=portable",
        cwd=tmp_path,
    )
    assert portable.returncode == 0, portable.stdout + portable.stderr
    assert "(portable runner)" in portable.stdout
    run_id, on_portable = _preprocess_outputs(zenml_cli, tmp_path)

    assert set(on_direct) == {
        "eval/data.parquet",
        "test/data.parquet",
        "train/data.parquet",
        "stats/data.json",
    }
    assert on_portable == on_direct
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{RUN_LABEL}={run_id}"}
    )


def test_beams_dask_runner_is_refused_before_anything_runs(
    tmp_path: Path, zenml_cli: ZenmlCli, quickstart: Path
) -> None:
    done = zenml_cli(
        "pipeline", "run", str(quickstart), "--backend", "preprocess=dask", cwd=tmp_path
    )

    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "Dask runner" in message and "portable" in message
    listed = zenml_cli("runs", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout) == []


def test_grouping_string_keys_matches_with_two_worker_containers(
    pipelines_dir: Path, repository: Repository
) -> None:
    spec = load_pipeline(pipelines_dir / "beam_groups.py", "groups").compile()
    portable = spec.model_copy(
        update={
            "steps": tuple(
                s.model_copy(update={"backend": "portable"}) for s in spec.steps
            )
        }
    )

    direct = run_pipeline(spec, orchestrator="docker", repository=repository)
    on_workers = run_pipeline(portable, orchestrator="docker", repository=repository)

    expected = direct.artifact("group_by_key")
    got = on_workers.artifact("group_by_key")
    assert expected["workers"] == {"in-process": 20000}
    assert len(expected["groups"]) == 7
    assert got["groups"] == expected["groups"]
    assert set(got["workers"]) == {"0", "1"}
    assert sum(got["workers"].values()) == 20000
