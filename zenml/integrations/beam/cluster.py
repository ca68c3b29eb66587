"""Beam's portable runner on the local Docker daemon, in zenml's base image.

A step whose backend is `portable` gets companions, all containers of the
step's image: Beam's job service (see `jobservice`) and, by default, two
worker containers, each running Beam's worker-pool entrypoint and reached as
an EXTERNAL environment. Every job runs one SDK worker per worker container,
and Beam's runner splits each stage's bundles among them. The containers
share one network namespace with the step, because the job service tells
workers to call it back on `localhost`. This is the machinery Flink and Spark
clusters use to run Python Beam code, so it shows that zenml's images work as
Beam workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from docker.types import Mount

from zenml.exceptions import ZenMLError

logger = logging.getLogger(__name__)

JOB_PORT = 8099
POOL_PORT = 50000
DISPATCHER_PORT = 50100
DEFAULT_WORKERS = 2
POOL_INDEX_ENV = "ZENML_BEAM_WORKER_INDEX"
BACKEND_ENV = "ZENML_BEAM_BACKEND"
JOB_ENDPOINT_ENV = "ZENML_BEAM_JOB_ENDPOINT"
WORKER_POOL_ENV = "ZENML_BEAM_WORKER_POOL"
_READY = b"Listening for beam jobs"


@dataclass(frozen=True)
class PortableCluster:
    """A running job service and its worker containers."""

    job_service: Any
    workers: tuple[Any, ...]

    @property
    def network_mode(self) -> str:
        """Join the job service's network namespace, as the workers do."""
        return f"container:{self.job_service.id}"

    @property
    def environment(self) -> dict[str, str]:
        """What tells a step's Beam code where to submit (see runners)."""
        return {
            BACKEND_ENV: "portable",
            JOB_ENDPOINT_ENV: f"localhost:{JOB_PORT}",
            WORKER_POOL_ENV: f"localhost:{DISPATCHER_PORT}",
        }


@contextmanager
def portable_cluster(
    client: docker.DockerClient,
    image: str,
    name: str,
    *,
    labels: dict[str, str],
    mounts: list[Mount],
    user: str,
    workers: int = DEFAULT_WORKERS,
    ready_timeout: float = 60.0,
) -> Iterator[PortableCluster]:
    """Start a job service and `workers` worker containers; remove all when done."""
    if workers < 1:
        raise ZenMLError(f"a portable cluster needs 1 worker or more, not {workers}")
    pools = [f"localhost:{POOL_PORT + index}" for index in range(workers)]
    common: dict[str, Any] = {
        "labels": labels,
        "mounts": mounts,
        "user": user,
        "environment": {"HOME": "/tmp"},
        "detach": True,
        "init": True,
    }
    started: list[Any] = []
    try:
        job_service = client.containers.run(
            image,
            [
                "python",
                "-m",
                "zenml.integrations.beam.jobservice",
                "--port",
                str(JOB_PORT),
                "--worker-pools",
                ",".join(pools),
                "--dispatcher-port",
                str(DISPATCHER_PORT),
            ],
            name=f"{name}-beam-job",
            **common,
        )
        started.append(job_service)
        for index in range(workers):
            worker = client.containers.run(
                image,
                [
                    "python",
                    "-m",
                    "apache_beam.runners.worker.worker_pool_main",
                    "--service_port",
                    str(POOL_PORT + index),
                ],
                name=f"{name}-beam-worker-{index}",
                network_mode=f"container:{job_service.id}",
                **{
                    **common,
                    "environment": {
                        **common["environment"],
                        POOL_INDEX_ENV: str(index),
                    },
                },
            )
            started.append(worker)
        _wait_until_ready(job_service, ready_timeout)
        logger.info(
            "Beam job service and %d worker containers started for %s", workers, name
        )
        yield PortableCluster(job_service, tuple(started[1:]))
    finally:
        for container in reversed(started):
            try:
                container.remove(force=True)
            except docker.errors.APIError as exc:
                logger.warning("could not remove %s: %s", container.name, exc)


def _wait_until_ready(job_service: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _READY in job_service.logs():
            return
        job_service.reload()
        if job_service.status == "exited":
            break
        time.sleep(0.2)
    tail = job_service.logs(tail=20).decode(errors="replace")
    raise ZenMLError(
        f"Beam's job service did not start within {timeout:g}s; its last lines:\n{tail}"
    )
