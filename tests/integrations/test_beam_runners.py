"""Tests of the Beam backends: the options each sends, and one real portable run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from zenml.integrations.beam.runners import (
    DASK_REFUSAL,
    BeamSettings,
    beam_options,
    options_for,
)

REGISTRY = "europe-docker.pkg.dev/proj/repo"
DATAFLOW = {
    "project": "proj",
    "region": "europe-west1",
    "temp_location": "gs://zenml-bucket/tmp",
    "image_registry": REGISTRY,
}
PAIRS = [("b", 2), ("a", 1), ("c", 5), ("a", 3), ("b", 4), ("a", 6)]
START_TIMEOUT = 30.0
RUN_TIMEOUT = 120.0


def sent(options: PipelineOptions) -> dict[str, Any]:
    """The options that differ from Beam's defaults: what a backend sets."""
    return options.get_all_options(drop_default=True)


def test_direct_runs_in_this_process_by_default() -> None:
    for options in (beam_options(), beam_options("direct"), beam_options(None)):
        everything = options.get_all_options()
        assert everything["runner"] == "FnApiRunner"
        assert everything["direct_running_mode"] == "in_memory"


def test_direct_with_parallelism_uses_processes() -> None:
    assert sent(beam_options("direct", parallelism=4)) == {
        "runner": "FnApiRunner",
        "direct_num_workers": 4,
        "direct_running_mode": "multi_processing",
    }


def test_portable_with_a_worker_pool_is_external() -> None:
    options = beam_options(
        "portable", job_endpoint="localhost:8099", worker_pool="localhost:50000"
    )

    assert sent(options) == {
        "runner": "PortableRunner",
        "job_endpoint": "localhost:8099",
        "environment_type": "EXTERNAL",
        "environment_config": "localhost:50000",
    }


def test_portable_without_a_pool_starts_zenml_base_containers() -> None:
    local = beam_options("portable", job_endpoint="localhost:8099")
    pushed = beam_options(
        "portable", job_endpoint="localhost:8099", image_registry=REGISTRY
    )
    own = beam_options(
        "portable",
        job_endpoint="localhost:8099",
        environment="docker",
        worker_image="apache/beam_python3.11_sdk:2.77.0",
        parallelism=2,
    )

    assert sent(local)["environment_type"] == "DOCKER"
    assert sent(local)["environment_config"] == "zenml/base:0.1.0"
    assert sent(pushed)["environment_config"] == f"{REGISTRY}/zenml-base:0.1.0"
    assert sent(own)["environment_config"] == "apache/beam_python3.11_sdk:2.77.0"
    assert sent(own)["sdk_worker_parallelism"] == 2


def test_portable_loopback_is_local_only() -> None:
    options = beam_options(
        "portable", job_endpoint="localhost:8099", environment="loopback"
    )
    assert sent(options)["environment_type"] == "LOOPBACK"
    with pytest.raises(ValueError, match="cannot reach"):
        beam_options("flink", job_endpoint="flink:8099", environment="loopback")


@pytest.mark.parametrize("backend", ["flink", "spark"])
def test_flink_and_spark_submit_to_the_users_job_server(backend: str) -> None:
    options = beam_options(
        backend,
        job_endpoint="jobserver.cluster.local:8099",
        worker_pool="localhost:50000",
    )

    assert sent(options) == {
        "runner": "PortableRunner",
        "job_endpoint": "jobserver.cluster.local:8099",
        "environment_type": "EXTERNAL",
        "environment_config": "localhost:50000",
    }


@pytest.mark.parametrize("backend", ["portable", "flink", "spark"])
def test_portable_backends_need_a_job_endpoint(backend: str) -> None:
    with pytest.raises(ValueError, match=f"backend '{backend}' needs job_endpoint"):
        beam_options(backend)


def test_external_environment_needs_a_worker_pool() -> None:
    with pytest.raises(ValueError, match="needs worker_pool"):
        beam_options("portable", job_endpoint="localhost:8099", environment="external")


def test_dataflow_sends_project_region_locations_and_the_gcp_image() -> None:
    options = beam_options(
        "dataflow",
        **DATAFLOW,
        service_account="runner@proj.iam.gserviceaccount.com",
        experiments=["use_runner_v2", "no_use_multiple_sdk_containers"],
        job_name="quickstart-preprocess",
    )

    assert sent(options) == {
        "runner": "DataflowRunner",
        "project": "proj",
        "region": "europe-west1",
        "temp_location": "gs://zenml-bucket/tmp",
        "staging_location": "gs://zenml-bucket/tmp/staging",
        "service_account_email": "runner@proj.iam.gserviceaccount.com",
        "sdk_container_image": f"{REGISTRY}/zenml-gcp-dataflow:0.1.0",
        "sdk_location": "container",
        "experiments": ["use_runner_v2", "no_use_multiple_sdk_containers"],
        "job_name": "quickstart-preprocess",
    }


def test_dataflow_keeps_an_explicit_staging_location_and_image() -> None:
    options = beam_options(
        "dataflow",
        **{**DATAFLOW, "image_registry": None},
        staging_location="gs://zenml-staging/beam/",
        sdk_container_image="gcr.io/proj/beam-worker:1",
    )

    assert sent(options)["staging_location"] == "gs://zenml-staging/beam"
    assert sent(options)["sdk_container_image"] == "gcr.io/proj/beam-worker:1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"project": None}, r"needs project \(the Google Cloud project id\)"),
        ({"region": None}, r"needs region"),
        ({"project": None, "region": None}, r"needs project .*, region"),
        ({"temp_location": None}, r"needs temp_location"),
        ({"temp_location": "/tmp/beam"}, r"temp_location: .*gs://BUCKET"),
        ({"temp_location": "s3://bucket/tmp"}, r"temp_location: .*gs://BUCKET"),
        ({"staging_location": "/tmp/staging"}, r"staging_location: .*gs://"),
        ({"image_registry": None}, r"set image_registry"),
        ({"image_registry": "https://gcr.io/proj"}, r"scheme"),
        ({"job_name": "Nightly_Run"}, r"not a Dataflow job name"),
    ],
)
def test_dataflow_is_validated_before_submitting(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        beam_options("dataflow", **{**DATAFLOW, **change})


def test_dask_is_refused_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    monkeypatch.setattr(
        beam.Pipeline, "run", lambda *args, **kwargs: started.append("run")
    )

    with pytest.raises(ValueError) as refusal:
        beam_options("dask", job_endpoint="localhost:8786")

    message = str(refusal.value)
    assert message == DASK_REFUSAL
    assert "finishes a bundle" in message and "only one branch" in message
    assert "`portable`" in message and "`flink` / `spark`" in message
    assert started == []
    assert "apache_beam.runners.dask.dask_runner" not in sys.modules


def test_settings_are_typed_and_named_in_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown Beam settings \['job_server'\]"):
        beam_options("portable", job_server="localhost:8099")
    with pytest.raises(ValueError, match="HOST:PORT"):
        beam_options("portable", job_endpoint="http://localhost")
    with pytest.raises(ValueError, match="unknown Beam backend 'samza'"):
        beam_options("samza")
    with pytest.raises(ValueError, match="environment 'kubernetes'"):
        BeamSettings(environment="kubernetes")
    with pytest.raises(ValueError, match="not one string"):
        beam_options("dataflow", **DATAFLOW, experiments="use_runner_v2")


def test_extra_options_pass_through_and_win() -> None:
    options = options_for(
        "direct", BeamSettings(extra={"direct_running_mode": "multi_threading"})
    )
    assert options.get_all_options()["direct_running_mode"] == "multi_threading"


def test_options_ignore_this_processs_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", ["pytest", "--runner=DataflowRunner"])
    assert beam_options().get_all_options()["runner"] == "FnApiRunner"


# A real portable run: Beam's Python job service with workers from a worker
# pool, both on loopback, against the same pipeline on the direct backend.


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(
        f"nothing listened on port {port} in {START_TIMEOUT}s:\n{log.read_text()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def portable_endpoints(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """A job service and a worker pool on loopback; both stopped afterwards."""
    logs = tmp_path_factory.mktemp("beam-services")
    # The worker pool starts each worker with the `python` found on PATH.
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    job_port, pool_port = _free_port(), _free_port()
    commands = {
        "job_service": (
            [
                sys.executable,
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port",
                str(job_port),
            ],
            job_port,
        ),
        "worker_pool": (
            [
                sys.executable,
                "-m",
                "apache_beam.runners.worker.worker_pool_main",
                "--service_port",
                str(pool_port),
            ],
            pool_port,
        ),
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        for name, (command, port) in commands.items():
            log = logs / f"{name}.log"
            with open(log, "wb") as output:
                process = subprocess.Popen(
                    command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=logs
                )
            started.append(process)
            _wait_for_port(port, process, log)
        yield {
            "job_endpoint": f"localhost:{job_port}",
            "worker_pool": f"localhost:{pool_port}",
        }
    finally:
        for process in reversed(started):
            _stop(process)


def _group_by_key(options: PipelineOptions, out: Path) -> list[str]:
    """Group string-keyed pairs; the workers write the result to `out`."""
    pipeline = beam.Pipeline(options=options)
    (
        pipeline
        | beam.Create(PAIRS)
        | beam.GroupByKey()
        | beam.MapTuple(lambda key, values: f"{key}={sorted(values)}")
        | beam.io.WriteToText(str(out), shard_name_template="")
    )
    state = pipeline.run().wait_until_finish(duration=int(RUN_TIMEOUT * 1000))
    assert state == "DONE", f"the pipeline ended {state} within {RUN_TIMEOUT}s"
    return sorted(out.read_text().splitlines())


def test_group_by_key_agrees_on_portable_and_direct(
    portable_endpoints: dict[str, str], tmp_path: Path
) -> None:
    portable = _group_by_key(
        beam_options("portable", **portable_endpoints), tmp_path / "portable.txt"
    )
    direct = _group_by_key(beam_options("direct"), tmp_path / "direct.txt")

    assert portable == direct == ["a=[1, 3, 6]", "b=[2, 4]", "c=[5]"]
