"""Tests of the model server, with models trained on the penguins data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import palmerpenguins
import pandas as pd
import pytest
import torch
import yaml
from fastapi.testclient import TestClient

from zenml.integrations.beam.preprocess import preprocess
from zenml.integrations.cortex.api import cortex_api_spec, write_cortex_api_spec
from zenml.integrations.cortex.server import create_app, local_bundle_path
from zenml.integrations.pytorch.trainer import load_model, train

REPO_ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
NUMERIC = [*FEATURES, "body_mass_g"]
CATEGORICAL = ["island", "sex"]
LABEL = "species"
READY_TIMEOUT_S = 30.0


def wait_until_ready(client: TestClient) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return palmerpenguins.load_penguins()


@pytest.fixture(scope="module")
def centroids(penguins: pd.DataFrame) -> pd.DataFrame:
    """Mean bill and flipper sizes of each species: unambiguous instances."""
    return penguins.groupby(LABEL)[FEATURES].mean()


@pytest.fixture(scope="module")
def numeric_bundle(
    penguins: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A model on three raw numeric features, without preprocessing stats."""
    data = penguins[[*FEATURES, LABEL]].dropna()
    bundle = tmp_path_factory.mktemp("numeric-bundle")
    train(data, LABEL, bundle, epochs=150, num_threads=1)
    return bundle


@pytest.fixture(scope="module")
def raw_bundle(
    penguins: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A model with preprocess.json, and the raw and processed test split."""
    order = np.random.default_rng(11).permutation(len(penguins))
    raw = {
        "train": penguins.iloc[order[:206]],
        "test": penguins.iloc[order[206:]],
    }
    result = preprocess(
        raw,
        NUMERIC,
        CATEGORICAL,
        [LABEL],
        work_dir=str(tmp_path_factory.mktemp("beam")),
    )
    bundle = tmp_path_factory.mktemp("raw-bundle")
    train(result.splits["train"], LABEL, bundle, epochs=40, num_threads=1)
    result.stats.save(bundle / "preprocess.json")
    return bundle, raw["test"], result.splits["test"]


@pytest.fixture(scope="module")
def client(numeric_bundle: Path) -> Iterator[TestClient]:
    with TestClient(create_app(numeric_bundle)) as test_client:
        wait_until_ready(test_client)
        yield test_client


@pytest.fixture(scope="module")
def raw_client(
    raw_bundle: tuple[Path, pd.DataFrame, pd.DataFrame],
) -> Iterator[TestClient]:
    with TestClient(create_app(raw_bundle[0])) as test_client:
        wait_until_ready(test_client)
        yield test_client


def instance(centroids: pd.DataFrame, species: str) -> dict[str, float]:
    return {name: float(centroids.loc[species, name]) for name in FEATURES}


def test_keyed_instance_gets_the_right_label(
    client: TestClient, centroids: pd.DataFrame
) -> None:
    response = client.post("/predict", json=instance(centroids, "Gentoo"))

    assert response.status_code == 200
    (prediction,) = response.json()["predictions"]
    assert prediction["label"] == "Gentoo"
    probabilities = prediction["probabilities"]
    assert list(probabilities) == ["Adelie", "Chinstrap", "Gentoo"]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(probabilities, key=probabilities.__getitem__) == "Gentoo"


def test_list_of_positional_instances_gets_the_right_labels(
    client: TestClient, centroids: pd.DataFrame
) -> None:
    rows = [list(instance(centroids, s).values()) for s in ("Adelie", "Chinstrap")]

    listed = client.post("/predict", json=rows)
    wrapped = client.post("/predict", json={"instances": rows})

    assert listed.status_code == 200
    labels = [p["label"] for p in listed.json()["predictions"]]
    assert labels == ["Adelie", "Chinstrap"]
    assert wrapped.json() == listed.json()


def test_single_positional_instance(
    client: TestClient, centroids: pd.DataFrame
) -> None:
    row = list(instance(centroids, "Adelie").values())

    response = client.post("/predict", json=row)

    assert response.status_code == 200
    assert [p["label"] for p in response.json()["predictions"]] == ["Adelie"]


def test_missing_field_is_named_in_a_4xx(
    client: TestClient, centroids: pd.DataFrame
) -> None:
    body = instance(centroids, "Gentoo")
    del body["flipper_length_mm"]

    response = client.post("/predict", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "flipper_length_mm" in detail["message"]
    assert detail["missing_fields"] == ["flipper_length_mm"]
    assert detail["expected_fields"] == FEATURES
    assert detail["received_fields"] == ["bill_length_mm", "bill_depth_mm"]


GOOD = {"bill_length_mm": 40.0, "bill_depth_mm": 18.0, "flipper_length_mm": 190.0}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({**GOOD, "beak_colour": "red"}, "beak_colour"),
        ([40.0, 18.0], "received_length"),
        ([[40.0, 18.0, 190.0], [1.0]], "Instance 1"),
        ({**GOOD, "bill_depth_mm": "deep"}, "bill_depth_mm"),
        ({**GOOD, "bill_depth_mm": True}, "bill_depth_mm"),
        ({**GOOD, "bill_depth_mm": None}, "null"),
        ({**GOOD, "bill_depth_mm": [1.0]}, "bill_depth_mm"),
        ({"instances": GOOD}, "instances"),
        ([], "no instances"),
        ("hello", "bill_length_mm"),
        ([1.0, {"a": 1}], "bill_length_mm"),
    ],
)
def test_requests_outside_the_schema_get_422(
    client: TestClient, body: Any, named: str
) -> None:
    response = client.post("/predict", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert named in json.dumps(detail)
    assert detail["expected_fields"] == FEATURES


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b""])
def test_unparseable_bodies_get_400(client: TestClient, content: bytes) -> None:
    response = client.post(
        "/predict", content=content, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]["message"]


def test_non_finite_numbers_are_rejected(client: TestClient) -> None:
    content = b'{"bill_length_mm": NaN, "bill_depth_mm": 1, "flipper_length_mm": 2}'

    response = client.post(
        "/predict", content=content, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert "bill_length_mm" in response.json()["detail"]["invalid_values"]


def test_health_readiness_and_signature(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json() == {"status": "ready"}
    signature = client.get("/signature").json()
    assert [f["name"] for f in signature["fields"]] == FEATURES
    assert signature["class_labels"] == ["Adelie", "Chinstrap", "Gentoo"]


def test_raw_requests_are_preprocessed_like_training(
    raw_bundle: tuple[Path, pd.DataFrame, pd.DataFrame], raw_client: TestClient
) -> None:
    bundle, raw_test, processed_test = raw_bundle
    fields = NUMERIC + CATEGORICAL
    # NaN becomes null: the server imputes it with the train stats.
    records = raw_test[fields].astype(object).where(raw_test[fields].notna(), None)
    instances = records.to_dict(orient="records")
    assert any(v is None for row in instances for v in row.values())

    response = raw_client.post("/predict", json={"instances": instances})

    assert response.status_code == 200
    served = [p["label"] for p in response.json()["predictions"]]
    model, feature_names, labels = load_model(bundle, device="cpu")
    with torch.no_grad():
        logits = model(torch.tensor(processed_test[feature_names].to_numpy(np.float32)))
    assert served == [labels[i] for i in logits.argmax(dim=1).tolist()]
    assert np.mean(np.array(served) == raw_test[LABEL].to_numpy()) >= 0.9


def test_raw_fields_come_from_the_stats(raw_client: TestClient) -> None:
    signature = raw_client.get("/signature").json()

    assert [(f["name"], f["type"]) for f in signature["fields"]] == [
        *((name, "number") for name in NUMERIC),
        ("island", "string"),
        ("sex", "string"),
    ]
    positional = [45.0, None, 210.0, 5000.0, "Biscoe", None]
    assert raw_client.post("/predict", json=positional).status_code == 200
    bad = raw_client.post("/predict", json=[45.0, "x", 210.0, 5000.0, "Biscoe", None])
    assert bad.status_code == 422
    assert "bill_depth_mm" in bad.json()["detail"]["invalid_values"]


def test_a_broken_bundle_stays_alive_but_not_ready(
    numeric_bundle: Path, tmp_path: Path
) -> None:
    (tmp_path / "signature.json").write_bytes(
        (numeric_bundle / "signature.json").read_bytes()
    )
    (tmp_path / "model.onnx").write_bytes(b"not a model")

    with TestClient(create_app(tmp_path)) as broken:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while broken.get("/readyz").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)

        assert broken.get("/healthz").status_code == 200
        readyz = broken.get("/readyz")
        assert readyz.status_code == 503
        assert readyz.json()["status"] == "failed"
        assert broken.post("/predict", json=GOOD).status_code == 503


def test_stats_that_do_not_fit_the_model_fail_loading(
    numeric_bundle: Path,
    raw_bundle: tuple[Path, pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
) -> None:
    for name in ("signature.json", "model.onnx"):
        (tmp_path / name).write_bytes((numeric_bundle / name).read_bytes())
    stats = raw_bundle[0] / "preprocess.json"
    (tmp_path / "preprocess.json").write_bytes(stats.read_bytes())

    with TestClient(create_app(tmp_path)) as mismatched:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while mismatched.get("/readyz").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "expects" in mismatched.get("/readyz").json()["error"]


def test_create_app_needs_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        create_app(tmp_path)


def test_cortex_api_spec(tmp_path: Path) -> None:
    spec = cortex_api_spec(
        "penguins", "zenml/cortex:abc123", "/mnt/models/penguins", cpu="2", mem="2Gi"
    )

    (api,) = spec
    assert api["name"] == "penguins" and api["kind"] == "RealtimeAPI"
    assert api["pod"]["port"] == 8080
    (container,) = api["pod"]["containers"]
    assert container["image"] == "zenml/cortex:abc123"
    assert container["env"] == {"ZENML_MODEL_URI": "/mnt/models/penguins"}
    assert container["compute"] == {"cpu": "2", "mem": "2Gi"}
    assert container["command"][:3] == [
        "python",
        "-m",
        "zenml.integrations.cortex.server",
    ]
    assert container["readiness_probe"] == {
        "http_get": {"path": "/readyz", "port": 8080}
    }
    assert container["liveness_probe"]["http_get"]["path"] == "/healthz"

    path = write_cortex_api_spec(
        tmp_path / "cortex.yaml", "penguins", "zenml/cortex:abc123", "/mnt/m", gpu=1
    )
    written = yaml.safe_load(path.read_text())
    assert written[0]["pod"]["containers"][0]["compute"]["gpu"] == 1

    with pytest.raises(ValueError, match="lowercase"):
        cortex_api_spec("Penguins_API", "image", "/m")


def test_local_bundle_path() -> None:
    assert local_bundle_path("/mnt/model") == Path("/mnt/model")
    assert local_bundle_path("file:///mnt/model") == Path("/mnt/model")
    with pytest.raises(ValueError, match="not local"):
        local_bundle_path("s3://bucket/model")


def test_server_module_needs_neither_torch_nor_beam() -> None:
    check = (
        "import sys, zenml.integrations.cortex.server; "
        "print(sorted(m for m in ('torch', 'apache_beam') if m in sys.modules))"
    )

    output = subprocess.run(
        [sys.executable, "-c", check],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout

    assert output.strip() == "[]"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_command_line_serves_the_bundle_from_the_environment(
    numeric_bundle: Path, centroids: pd.DataFrame
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ZENML_MODEL_URI": f"file://{numeric_bundle}",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "zenml.integrations.cortex.server"]
        + ["--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)

        response = httpx.post(
            f"{base}/predict", json=instance(centroids, "Chinstrap"), timeout=10
        )
        assert response.status_code == 200
        assert response.json()["predictions"][0]["label"] == "Chinstrap"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
