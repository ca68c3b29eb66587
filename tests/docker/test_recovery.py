"""A launcher killed at random points: the store stays consistent every time."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from zenml.orchestrators.docker import RUN_LABEL
from zenml.repository import Repository

pytestmark = pytest.mark.usefixtures("images", "no_leftovers")

KILLS = 6


def test_killing_the_launcher_anywhere_never_leaves_a_partial_artifact_or_container(
    docker_client: docker.DockerClient, pipelines_dir: Path, repository: Repository
) -> None:
    delays = random.Random(20261203)
    for attempt in range(KILLS):
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zenml.cli",
                "pipeline",
                "run",
                str(pipelines_dir / "faults.py"),
                "--name",
                "chain",
                "--no-cache",
            ],
            cwd=repository.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delays.uniform(0.5, 6.0))
        launcher.kill()
        launcher.wait(timeout=10)

        listed = subprocess.run(
            [
                sys.executable,
                "-m",
                "zenml.cli",
                "runs",
                "list",
                "--json",
                "--limit",
                "100",
            ],
            cwd=repository.root,
            capture_output=True,
            text=True,
            check=True,
        )
        runs = json.loads(listed.stdout)
        assert {r["status"] for r in runs} <= {"completed", "interrupted"}, attempt
        assert (
            not docker_client.containers.list(
                all=True, filters={"label": RUN_LABEL + "=" + runs[0]["id"]}
            )
            if runs
            else True
        )

        for run in runs:
            record = repository.metadata.run(run["id"])
            for step in record["steps"]:
                assert step["status"] in {"completed", "skipped", "interrupted"}, step
                for artifact in step["artifacts"]:
                    assert (Path(artifact["uri"]) / "meta.json").is_file()
        assert not list(repository.artifact_root.rglob(".partial-*"))

        db = sqlite3.connect(repository.metadata_path)
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            db.close()
