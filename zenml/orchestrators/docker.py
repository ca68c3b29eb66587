"""The local Docker orchestrator: each step in a new container of its image.

A step's container gets the artifact store and the pipeline's code mounted at
the same paths as on the host, runs `python -m zenml.entrypoint TASK.json` as
the host user (so artifacts belong to whoever ran the pipeline), and is removed
once its outcome has been read from Docker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, Mount

from zenml.exceptions import DockerUnavailableError, ZenMLError
from zenml.images import catalogue
from zenml.integrations.beam.cluster import BACKEND_ENV, portable_cluster
from zenml.metadata import CANCELLED, COMPLETED, FAILED
from zenml.orchestrators.base import (
    Orchestrator,
    RunContext,
    StepLaunch,
    StepOutcome,
)
from zenml.spec import StepSpec

logger = logging.getLogger(__name__)

RUN_LABEL = "org.zenml.run"
STEP_LABEL = "org.zenml.step"
PIPELINE_LABEL = "org.zenml.pipeline"
LAST_LINES = 20
LinePrinter = Callable[[str, str], None]


def connect() -> docker.DockerClient:
    """A client for the local daemon, or an error that says how to get one."""
    try:
        client = docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise DockerUnavailableError(
            "no Docker daemon answers (" + str(exc).split("\n")[0] + "). Start "
            "one (`sudo dockerd &`, or start Docker Desktop), or run the "
            "pipeline in this process with `--orchestrator local`"
        ) from exc
    return client


def container_name(run_id: str, step: str, attempt: int) -> str:
    """A name Docker accepts, unique per run, step and attempt."""
    cleaned = re.sub(r"[^a-zA-Z0-9_.-]+", "-", step).strip("-.") or "step"
    return f"zenml-{run_id}-{cleaned[:60]}-{attempt}"


class DockerOrchestrator(Orchestrator):
    """Runs every step in a container on the local Docker daemon."""

    name = "docker"

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        printer: LinePrinter | None = None,
        stop_grace_period: float = 10.0,
        beam_workers: int = 2,
    ) -> None:
        self.client = client or connect()
        self.printer = printer or _print_line
        self.stop_grace_period = stop_grace_period
        self.beam_workers = beam_workers
        self._images: dict[str, catalogue.ResolvedImage] = {}

    def prepare(self, context: RunContext) -> None:
        for step in context.spec.steps:
            self._images[step.name] = catalogue.resolve(self.client, step)
            _check_gpus(self.client, step)

    def image_for(self, step: StepSpec) -> str | None:
        return catalogue.image_reference(step)

    def run_step(self, context: RunContext, launch: StepLaunch) -> StepOutcome:
        step = launch.step
        image = self._images.get(step.name) or catalogue.resolve(self.client, step)
        name = container_name(context.run_id, step.name, launch.attempt)
        code_root = context.spec.code_root
        labels = {
            RUN_LABEL: context.run_id,
            STEP_LABEL: step.name,
            PIPELINE_LABEL: context.spec.name,
        }
        mounts = [
            Mount(str(context.artifact_root), str(context.artifact_root), type="bind"),
            Mount(code_root, code_root, type="bind", read_only=True),
        ]
        user = f"{os.getuid()}:{os.getgid()}"
        environment = {"HOME": "/tmp", **launch.environment}
        placement: dict[str, Any] = {}

        with contextlib.ExitStack() as companions:
            if step.backend:
                environment[BACKEND_ENV] = step.backend
            if step.backend == "portable":
                cluster = companions.enter_context(
                    portable_cluster(
                        self.client,
                        image.reference,
                        name,
                        labels=labels,
                        mounts=mounts,
                        user=user,
                        workers=self.beam_workers,
                    )
                )
                environment.update(cluster.environment)
                placement["network_mode"] = cluster.network_mode
            return self._run_container(
                launch,
                image,
                name,
                code_root,
                labels,
                mounts,
                user,
                {**environment, **launch.secrets},
                placement,
            )

    def _run_container(
        self,
        launch: StepLaunch,
        image: catalogue.ResolvedImage,
        name: str,
        code_root: str,
        labels: dict[str, str],
        mounts: list[Mount],
        user: str,
        environment: dict[str, str],
        placement: dict[str, Any],
    ) -> StepOutcome:
        """Create, start, stream, wait, inspect and remove one step container."""
        step = launch.step
        try:
            container = self.client.containers.create(
                image.reference,
                # The entrypoint is zenml's, whatever the image's own is.
                entrypoint=["python", "-m", "zenml.entrypoint"],
                command=[str(launch.task_file)],
                name=name,
                labels=labels,
                mounts=mounts,
                working_dir=code_root,
                user=user,
                environment=environment,
                detach=True,
                # An init process forwards `docker stop`'s SIGTERM to the step,
                # which as PID 1 would otherwise ignore it until the grace ends.
                init=True,
                **placement,
                **_resources(step),
            )
        except docker.errors.APIError as exc:
            return StepOutcome(
                status=FAILED,
                reason=f"Docker could not create the container: {exc.explanation}",
                image=image.reference,
                image_id=image.image_id,
                image_lock=image.lock_sha256,
                container=name,
            )

        last_lines: deque[str] = deque(maxlen=LAST_LINES)
        try:
            container.start()
            streamer = threading.Thread(
                target=self._stream_logs,
                args=(container, launch, last_lines),
                daemon=True,
            )
            streamer.start()

            timed_out = False
            started = time.monotonic()
            try:
                container.wait(timeout=step.timeout)
            except (
                requests.exceptions.ReadTimeout,
                requests.exceptions.ConnectionError,
            ) as exc:
                # Over a unix socket docker-py may report its timeout either
                # way; a wait that ends early means the daemon went away.
                if step.timeout is None or time.monotonic() - started < step.timeout:
                    raise DockerUnavailableError(
                        f"the Docker daemon stopped answering while step "
                        f"{step.name!r} ran ({exc}); start it again and rerun "
                        "the pipeline: steps that finished are kept and reused"
                    ) from exc
                timed_out = True
                container.stop(timeout=int(self.stop_grace_period))
                container.wait()
            streamer.join(timeout=30)

            container.reload()
            state: dict[str, Any] = container.attrs["State"]
            return _outcome(state, timed_out, step, image, name, tuple(last_lines))
        except docker.errors.NotFound:
            return StepOutcome(
                status=CANCELLED,
                reason="the container was removed while the step ran",
                image=image.reference,
                image_id=image.image_id,
                image_lock=image.lock_sha256,
                container=name,
                last_lines=tuple(last_lines),
            )
        finally:
            _remove(container)

    def _stream_logs(
        self, container: Any, launch: StepLaunch, last_lines: deque[str]
    ) -> None:
        """Copy every line the container writes to the terminal and the log file."""
        launch.log_file.parent.mkdir(parents=True, exist_ok=True)
        pending = b""
        with open(launch.log_file, "a", encoding="utf-8") as log:
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._emit(launch, raw, log, last_lines)
            if pending:
                self._emit(launch, pending, log, last_lines)

    def _emit(
        self, launch: StepLaunch, raw: bytes, log: Any, last_lines: deque[str]
    ) -> None:
        line = launch.mask(raw.decode("utf-8", errors="replace").rstrip("\r"))
        last_lines.append(line)
        log.write(line + "\n")
        log.flush()
        self.printer(launch.step.name, line)

    def cancel(self, context: RunContext) -> None:
        for container in self.run_containers(context.run_id):
            try:
                container.stop(timeout=int(self.stop_grace_period))
            except docker.errors.APIError:
                pass

    def run_containers(self, run_id: str) -> list[Any]:
        return list(
            self.client.containers.list(
                all=True, filters={"label": f"{RUN_LABEL}={run_id}"}
            )
        )

    def remove_run_containers(self, run_id: str) -> int:
        containers = self.run_containers(run_id)
        for container in containers:
            _remove(container)
        return len(containers)


def _outcome(
    state: dict[str, Any],
    timed_out: bool,
    step: StepSpec,
    image: catalogue.ResolvedImage,
    name: str,
    last_lines: tuple[str, ...],
) -> StepOutcome:
    exit_code = int(state.get("ExitCode", -1))
    if timed_out:
        status, reason = FAILED, f"timed out after {step.timeout:g}s and was stopped"
    elif state.get("OOMKilled"):
        status, reason = (
            FAILED,
            (
                "killed for running out of memory; raise the step's memory "
                "resource or lower its use"
            ),
        )
    elif exit_code == 0:
        status, reason = COMPLETED, ""
    elif exit_code > 128:
        status, reason = FAILED, f"killed by signal {exit_code - 128}"
    else:
        status, reason = FAILED, f"exited with code {exit_code}"
    if state.get("Error"):
        reason = f"{reason}; Docker: {state['Error']}"
    return StepOutcome(
        status=status,
        exit_code=exit_code,
        reason=reason,
        image=image.reference,
        image_id=image.image_id,
        image_lock=image.lock_sha256,
        container=name,
        last_lines=last_lines,
        started_at=_docker_time(state.get("StartedAt")),
        finished_at=_docker_time(state.get("FinishedAt")),
    )


def _docker_time(text: str | None) -> float | None:
    """Seconds since the epoch from Docker's RFC 3339 time (in nanoseconds)."""
    if not text or text.startswith("0001-"):
        return None
    head, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{head}.{fraction}+00:00").timestamp()


def _resources(step: StepSpec) -> dict[str, Any]:
    resources = step.resources
    options: dict[str, Any] = {}
    if resources.cpu:
        options["nano_cpus"] = int(resources.cpu * 1e9)
    if resources.memory:
        options["mem_limit"] = resources.memory
    if resources.shm_size:
        options["shm_size"] = resources.shm_size
    if resources.gpus:
        options["device_requests"] = [
            DeviceRequest(count=resources.gpus, capabilities=[["gpu"]])
        ]
    return options


def _check_gpus(client: docker.DockerClient, step: StepSpec) -> None:
    if not step.resources.gpus:
        return
    runtimes = client.info().get("Runtimes", {})
    if "nvidia" not in runtimes:
        raise ZenMLError(
            f"step {step.name!r} asks for {step.resources.gpus} GPU(s), but this "
            "Docker daemon has no GPU runtime; install the NVIDIA container "
            "toolkit, or remove the step's gpus resource to run on the CPU"
        )


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
        logger.warning("could not remove container %s: %s", container.name, exc)


def _print_line(step: str, line: str) -> None:
    print(f"[{step}] {line}", flush=True)
