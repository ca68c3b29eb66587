"""Running a pipeline: schedule its steps, record everything, report truly.

The scheduler starts every step whose inputs are ready, up to a limit of
parallel steps, hands each to the orchestrator, and records its outcome and
artifacts in one transaction. A failed step fails the run and its dependants
never start; Ctrl-C or SIGTERM stops what runs and marks the run cancelled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import string
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from zenml.artifacts import META_FILE, ArtifactStore
from zenml.entrypoint import TASK_FILE, Task
from zenml.exceptions import RunFailedError, StepFailedError, ZenMLError
from zenml.images.spec import source_hash
from zenml.metadata import (
    CACHED,
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    RUNNING,
    MetadataStore,
)
from zenml.orchestrators.base import Orchestrator, RunContext, StepLaunch, StepOutcome
from zenml.repository import Repository
from zenml.spec import PipelineSpec, StepSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """A finished run, with access to its artifacts."""

    run_id: str
    status: str
    repository: Repository

    def record(self) -> dict[str, Any]:
        return self.repository.metadata.run(self.run_id)

    def artifact(self, step: str, output: str = "output") -> Any:
        """Load one output of one step of this run."""
        for row in self.record()["steps"]:
            if row["name"] == step:
                for artifact in row["artifacts"]:
                    if artifact["name"] == output:
                        return ArtifactStore.read(artifact["uri"])
        raise ZenMLError(f"run {self.run_id} has no artifact {step}.{output}")


def new_run_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def step_environment(spec: PipelineSpec, step: StepSpec) -> dict[str, str]:
    """Environment of a step: step variables over pipeline variables.

    `${NAME}` in a value is replaced by the pipeline-level or host value of
    NAME, so a step can derive its variables from the pipeline's.
    """
    known = {**os.environ, **spec.environment}
    merged = {**spec.environment, **step.environment}
    return {
        key: string.Template(value).safe_substitute(known)
        for key, value in merged.items()
    }


SECRETS_DIR = "secrets"


def resolve_secrets(spec: PipelineSpec, repository: Repository) -> dict[str, str]:
    """Every secret the pipeline names, read now from the host; none is stored.

    A secret NAME comes from the host's environment variable NAME, or else
    from the file `.zenml/secrets/NAME`.
    """
    names = set(spec.secrets).union(*(step.secrets for step in spec.steps))
    values: dict[str, str] = {}
    missing = []
    for name in sorted(names):
        file = repository.config_dir / SECRETS_DIR / name
        if name in os.environ:
            values[name] = os.environ[name]
        elif file.is_file():
            values[name] = file.read_text(encoding="utf-8").rstrip("\n")
        else:
            missing.append(name)
    if missing:
        raise ZenMLError(
            f"secrets {missing} are not set; export each as an environment "
            f"variable, or write it to {repository.config_dir / SECRETS_DIR}/NAME"
        )
    return values


def default_orchestrator(name: str | None, repository: Repository) -> Orchestrator:
    """The named orchestrator, or local Docker whenever a daemon answers."""
    name = name or repository.settings.orchestrator or "docker"
    if name == "docker":
        from zenml.orchestrators.docker import DockerOrchestrator

        return DockerOrchestrator(
            stop_grace_period=repository.settings.stop_grace_period,
            beam_workers=repository.settings.beam_workers,
        )
    if name == "local":
        from zenml.orchestrators.local import LocalOrchestrator

        return LocalOrchestrator()
    raise ZenMLError(
        f"unknown orchestrator {name!r}; use `docker` (each step in its image) "
        "or `local` (in this process, for debugging)"
    )


def run_pipeline(
    spec: PipelineSpec,
    *,
    orchestrator: str | Orchestrator | None = None,
    repository: Repository | None = None,
    enable_cache: bool = True,
    run_id: str | None = None,
) -> RunResult:
    """Run `spec` to its end; raises `RunFailedError` unless every step succeeded."""
    repository = repository or Repository.find_or_init()
    recover_interrupted_runs(repository)
    if not isinstance(orchestrator, Orchestrator):
        orchestrator = default_orchestrator(orchestrator, repository)
    runner = _Runner(
        spec, repository, orchestrator, enable_cache, run_id or new_run_id()
    )
    return runner.run()


class _Runner:
    def __init__(
        self,
        spec: PipelineSpec,
        repository: Repository,
        orchestrator: Orchestrator,
        enable_cache: bool,
        run_id: str,
    ) -> None:
        self.spec = spec
        self.repository = repository
        self.metadata = repository.metadata
        self.store = repository.artifact_store
        self.orchestrator = orchestrator
        self.enable_cache = enable_cache
        self.run_id = run_id
        self.context = RunContext(
            run_id=run_id,
            spec=spec,
            artifact_root=self.store.root,
            run_dir=self.store.run_dir(spec.name, run_id),
        )
        self.secrets = resolve_secrets(spec, repository)
        self.cancelled = threading.Event()
        self.artifacts: dict[tuple[str, str], str] = {}
        self.cache_keys: dict[str, str] = {}

    def run(self) -> RunResult:
        order = self.spec.execution_order()
        _check_backends(self.spec)
        self.orchestrator.prepare(self.context)
        self.metadata.create_run(
            self.run_id,
            self.spec.name,
            self.orchestrator.name,
            self.spec.digest(),
            [
                {
                    "name": s.name,
                    "integration": s.integration,
                    "parameters": s.parameters,
                }
                for s in self.spec.steps
            ],
            os.getpid(),
            socket.gethostname(),
        )
        logger.info("Run %s of pipeline %s started", self.run_id, self.spec.name)

        with _signals_cancel(self):
            status, error = self._schedule(order)
        self.metadata.finish_run(self.run_id, status, error)
        logger.info("Run %s %s", self.run_id, status)
        if status != COMPLETED:
            raise RunFailedError(
                f"run {self.run_id} of pipeline {self.spec.name!r} {status}: {error}",
                run_id=self.run_id,
                status=status,
            )
        return RunResult(self.run_id, status, self.repository)

    def _schedule(self, order: list[str]) -> tuple[str, str | None]:
        remaining = list(order)
        done: set[str] = set()
        failure: StepFailedError | None = None
        limit = max(1, self.repository.settings.max_parallel_steps)
        running: dict[Future[StepOutcome], StepSpec] = {}
        with ThreadPoolExecutor(max_workers=limit) as pool:
            while remaining or running:
                if failure is None and not self.cancelled.is_set():
                    for name in list(remaining):
                        step = self.spec.step(name)
                        if len(running) >= limit:
                            break
                        if step.upstream <= done:
                            remaining.remove(name)
                            running[pool.submit(self._run_step, step)] = step
                elif not running:
                    break
                if not running:
                    break
                finished, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    step = running.pop(future)
                    outcome = future.result()
                    if outcome.status in (COMPLETED, CACHED):
                        done.add(step.name)
                    elif failure is None:
                        failure = StepFailedError(
                            f"step {step.name!r} {outcome.reason or outcome.status}",
                            step=step.name,
                            exit_code=outcome.exit_code,
                            reason=outcome.reason,
                            last_lines=outcome.last_lines,
                        )
        if self.cancelled.is_set():
            return CANCELLED, "cancelled by the user"
        if failure is not None:
            return FAILED, str(failure)
        return COMPLETED, None

    def _run_step(self, step: StepSpec) -> StepOutcome:
        try:
            return self._run_step_unguarded(step)
        except ZenMLError as exc:
            logger.error("Step %s could not be run: %s", step.name, exc)
            outcome = StepOutcome(status=FAILED, reason=str(exc))
            self.metadata.finish_step(
                self.run_id, step.name, FAILED, [], reason=outcome.reason
            )
            return outcome
        except Exception as exc:  # a bug here must fail the step, not hang the run
            logger.exception("step %s could not be run", step.name)
            outcome = StepOutcome(
                status=FAILED, reason=f"zenml could not run it: {exc}"
            )
            self.metadata.finish_step(
                self.run_id, step.name, FAILED, [], reason=outcome.reason
            )
            return outcome

    def _run_step_unguarded(self, step: StepSpec) -> StepOutcome:
        step_dir = self.store.step_dir(self.spec.name, self.run_id, step.name)
        inputs = {
            arg: self.artifacts[(ref.step, ref.output)]
            for arg, ref in step.inputs.items()
        }
        image = self.orchestrator.image_for(step)
        cache_key = self._cache_key(step, inputs, image)

        if self.enable_cache and step.cache:
            hit = self.metadata.cached_step(cache_key)
            if hit is not None and _all_present(hit["artifacts"], step.outputs):
                for artifact in hit["artifacts"]:
                    self.artifacts[(step.name, artifact["name"])] = artifact["uri"]
                self.metadata.finish_step(
                    self.run_id,
                    step.name,
                    CACHED,
                    [
                        {k: a[k] for k in ("name", "uri", "materializer", "size")}
                        for a in hit["artifacts"]
                    ],
                    cache_key=cache_key,
                    image=hit["image"],
                    image_id=hit["image_id"],
                    image_lock=hit["image_lock"],
                    started=time.time(),
                    reason=f"reused run {hit['run_id']}",
                )
                logger.info("Step %s reused from run %s", step.name, hit["run_id"])
                return StepOutcome(status=CACHED)

        outputs = {
            name: str(
                self.store.output_uri(self.spec.name, self.run_id, step.name, name)
            )
            for name in step.outputs
        }
        task = Task(
            step=step.name,
            source=step.source,
            code_root=self.spec.code_root,
            parameters=step.parameters,
            inputs=inputs,
            outputs=outputs,
        )
        task_file = step_dir / TASK_FILE
        task.write(task_file)
        wanted = set(self.spec.secrets) | set(step.secrets)
        launch = StepLaunch(
            step=step,
            task_file=task_file,
            log_file=step_dir / "logs.txt",
            environment=step_environment(self.spec, step),
            secrets={k: v for k, v in self.secrets.items() if k in wanted},
        )

        self.metadata.update_step(
            self.run_id,
            step.name,
            status=RUNNING,
            started=time.time(),
            image=image,
            cache_key=cache_key,
        )
        logger.info("Step %s started%s", step.name, f" in {image}" if image else "")
        started = time.monotonic()
        outcome = self.orchestrator.run_step(self.context, launch)
        if self.cancelled.is_set() and outcome.status != COMPLETED:
            outcome = replace(outcome, status=CANCELLED, reason="cancelled by the user")

        artifacts = []
        if outcome.status == COMPLETED:
            missing = [
                n for n, uri in outputs.items() if not (Path(uri) / META_FILE).is_file()
            ]
            if missing:
                outcome = replace(
                    outcome,
                    status=FAILED,
                    reason=f"exited 0 but wrote no output {missing}",
                )
            else:
                for name, uri in outputs.items():
                    meta = json.loads((Path(uri) / META_FILE).read_text())
                    artifacts.append({"name": name, "uri": uri, **meta})
                    self.artifacts[(step.name, name)] = uri
        self.metadata.finish_step(
            self.run_id,
            step.name,
            outcome.status,
            artifacts,
            exit_code=outcome.exit_code,
            reason=outcome.reason,
            image=outcome.image or image,
            image_id=outcome.image_id,
            image_lock=outcome.image_lock,
            container=outcome.container,
        )
        seconds = time.monotonic() - started
        if outcome.status == COMPLETED:
            logger.info("Step %s completed in %.1fs", step.name, seconds)
        else:
            logger.error(
                "Step %s %s after %.1fs: %s",
                step.name,
                outcome.status,
                seconds,
                outcome.reason,
            )
        return outcome

    def _cache_key(
        self, step: StepSpec, inputs: dict[str, str], image: str | None
    ) -> str:
        location = step.source.rpartition(":")[0]
        code = (
            Path(location).read_bytes()
            if location.endswith(".py")
            else location.encode()
        )
        payload = json.dumps(
            {
                "source": step.source,
                "backend": step.backend,
                "code": hashlib.sha256(code).hexdigest(),
                "parameters": step.parameters,
                "inputs": inputs,
                "outputs": step.outputs,
                "image": image,
                "zenml": source_hash(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def _check_backends(spec: PipelineSpec) -> None:
    """Refuse an unknown or unreliable processing backend before anything runs."""
    from zenml.integrations.beam.runners import check_backend

    for step in spec.steps:
        try:
            check_backend(step.backend)
        except ValueError as exc:
            raise ZenMLError(f"step {step.name!r}: {exc}") from exc


def _all_present(artifacts: list[dict[str, Any]], outputs: tuple[str, ...]) -> bool:
    names = {a["name"] for a in artifacts}
    return set(outputs) <= names and all(
        (Path(a["uri"]) / META_FILE).is_file() for a in artifacts
    )


class _signals_cancel:
    """While a run is scheduled, Ctrl-C and SIGTERM cancel it.

    The first signal stops the run's containers within the grace period; a
    second one kills them at once. Either way the run is recorded as cancelled.
    """

    def __init__(self, runner: _Runner) -> None:
        self.runner = runner
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        runner = self.runner
        if runner.cancelled.is_set():
            logger.warning("Second interrupt: killing the run's containers now")
            _force_stop(runner)
            return
        logger.warning(
            "Cancelling run %s; press Ctrl-C again to kill at once", runner.run_id
        )
        runner.cancelled.set()
        threading.Thread(
            target=runner.orchestrator.cancel, args=(runner.context,), daemon=True
        ).start()


def _force_stop(runner: _Runner) -> None:
    remover = getattr(runner.orchestrator, "remove_run_containers", None)
    if remover is not None:
        threading.Thread(target=remover, args=(runner.run_id,), daemon=True).start()


def recover_interrupted_runs(repository: Repository) -> list[str]:
    """Mark runs whose launcher died as interrupted and clean up after them."""
    metadata: MetadataStore = repository.metadata
    recovered = []
    host = socket.gethostname()
    for run in metadata.runs(limit=1000, status=RUNNING):
        if run["launcher_host"] != host or _alive(run["launcher_pid"]):
            continue
        _remove_containers(run["id"])
        repository.artifact_store.remove_partials(
            repository.artifact_store.run_dir(run["pipeline"], run["id"])
        )
        metadata.finish_run(
            run["id"], INTERRUPTED, "the launcher stopped before the run ended"
        )
        logger.warning("Run %s was interrupted; its containers were removed", run["id"])
        recovered.append(run["id"])
    return recovered


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_containers(run_id: str) -> None:
    try:
        from zenml.orchestrators.docker import DockerOrchestrator, connect

        DockerOrchestrator(connect()).remove_run_containers(run_id)
    except ZenMLError:
        logger.debug("no Docker daemon to clean up run %s", run_id)
