"""The quickstart end to end: every step in its image, everything recorded."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from zenml.orchestrators.docker import RUN_LABEL

ZenmlCli = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.usefixtures("images", "no_leftovers")


def test_the_quickstart_trains_evaluates_and_serves_in_the_right_images(
    tmp_path: Path,
    docker_client: docker.DockerClient,
    zenml_cli: ZenmlCli,
    quickstart: Path,
) -> None:
    done = zenml_cli("pipeline", "run", str(quickstart), cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    accuracy = float(re.search(r"Accuracy:\s+([0-9.]+)", done.stdout).group(1))
    assert accuracy >= 0.9
    prediction = json.loads(
        re.search(r"Prediction: (\{.*\}) \(true", done.stdout).group(1)
    )
    assert prediction["predictions"][0]["label"] in {"Adelie", "Chinstrap", "Gentoo"}
    for step in ("preprocess", "train", "deploy"):
        assert f"[{step}]" in done.stdout

    run_id = re.search(r"Run id:\s+(\S+)", done.stdout).group(1)
    shown = zenml_cli("runs", "show", run_id, "--json", cwd=tmp_path)
    run = json.loads(shown.stdout)
    images = {s["name"]: s["image"] for s in run["steps"]}
    assert images["preprocess"] == "zenml/base:0.1.0"
    assert images["train"] == "zenml/pytorch:0.1.0"
    assert images["deploy"] == "zenml/cortex:0.1.0"
    for step in run["steps"]:
        assert step["status"] == "completed"
        assert step["exit_code"] == 0
        assert step["image_id"].startswith("sha256:")
        labels = docker_client.images.get(step["image_id"]).labels
        assert step["image_lock"] == labels["org.zenml.lock-sha256"]
    assert not docker_client.containers.list(
        all=True, filters={"label": f"{RUN_LABEL}={run_id}"}
    )

    confusion = next(s for s in run["steps"] if s["name"] == "evaluate")["artifacts"][0]
    metrics = json.loads((Path(confusion["uri"]) / "data.json").read_text())
    assert len(metrics["confusion_matrix"]) == 3
