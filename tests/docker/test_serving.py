"""The cortex image serving a model, started with docker compose (pytest-docker)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import zenml

FEATURES = ["bill_length_mm", "flipper_length_mm", "body_mass_g"]

pytestmark = pytest.mark.usefixtures("images")


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    """Compose v2 where the plugin exists, else the v1 `docker-compose` command."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if plugin.returncode == 0:
        return "docker compose"
    if shutil.which("docker-compose"):
        return "docker-compose"
    pytest.fail("neither `docker compose` nor `docker-compose` is installed")


@pytest.fixture(scope="session")
def docker_setup() -> str:
    """`up -d`: the v1 command has no `--wait`; readiness is polled below."""
    return "up -d"


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on three numeric penguin features."""
    import palmerpenguins

    from zenml.integrations.pytorch import trainer

    data = palmerpenguins.load_penguins().dropna(subset=[*FEATURES, "species"])
    frame = data[FEATURES].astype(float)
    frame = (frame - frame.mean()) / frame.std()
    frame["species"] = data["species"].to_numpy()
    folder = tmp_path_factory.mktemp("bundle") / "model"
    trainer.train(frame.reset_index(drop=True), "species", folder, epochs=40, seed=0)
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o644)
    return folder


@pytest.fixture(scope="session")
def docker_compose_file(bundle: Path) -> str:
    os.environ["ZENML_TEST_BUNDLE"] = str(bundle)
    os.environ["ZENML_VERSION"] = zenml.__version__
    return str(Path(__file__).parent / "serving" / "docker-compose.yml")


def _call(url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _ready(url: str) -> bool:
    try:
        return _call(f"{url}/readyz")[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def server(docker_ip: str, docker_services: Any) -> str:
    url = f"http://{docker_ip}:{docker_services.port_for('model', 8080)}"
    docker_services.wait_until_responsive(
        check=lambda: _ready(url), timeout=90, pause=0.5
    )
    return url


def test_one_keyed_instance_gets_a_prediction(server: str) -> None:
    gentoo = {"bill_length_mm": 0.3, "flipper_length_mm": 1.5, "body_mass_g": 1.6}

    status, answer = _call(f"{server}/predict", gentoo)

    assert status == 200
    assert answer["predictions"][0]["label"] == "Gentoo"


def test_a_list_of_positional_instances_gets_one_prediction_each(server: str) -> None:
    status, answer = _call(f"{server}/predict", [[-1.0, -1.0, -0.8], [0.3, 1.5, 1.6]])

    assert status == 200
    assert [p["label"] for p in answer["predictions"]] == ["Adelie", "Gentoo"]


def test_a_missing_field_gets_a_4xx_that_names_it(server: str) -> None:
    status, answer = _call(
        f"{server}/predict", {"bill_length_mm": 0.3, "flipper_length_mm": 1.5}
    )

    assert 400 <= status < 500
    assert "body_mass_g" in json.dumps(answer)


def test_health_and_readiness_answer(server: str) -> None:
    assert _call(f"{server}/healthz")[0] == 200
    assert _call(f"{server}/readyz")[0] == 200
