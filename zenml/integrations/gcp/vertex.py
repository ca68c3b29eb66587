"""Vertex AI: steps as CustomJobs, and a trained model served from an endpoint.

Training. A step runs as a CustomJob with one worker pool whose container is
the step's image, pulled from the registry it was pushed to, running
`python -m zenml.entrypoint TASK.json`. Vertex AI mounts the project's buckets
under `/gcs/<bucket>/` in the container, so an artifact store at `gs://b/p`
is the path `/gcs/b/p` there; the launching machine mounts it at the same path
(Cloud Storage FUSE), which makes the launcher's task files and artifact paths
valid in the job, as they are in a local container.

Serving. A model bundle written by the pytorch trainer is uploaded as a Model
whose serving container is the cortex image, and deployed to an Endpoint.
Vertex AI copies the bundle to its own storage and names it in
`AIP_STORAGE_URI`; `zenml.integrations.gcp.serve` fetches it from there and
starts the model server on the port Vertex AI sends requests to.

Requests are built as the client library's request types, so what would be
sent can be checked without a network.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from google.cloud import aiplatform_v1 as aip
from google.protobuf import duration_pb2

import zenml
from zenml.artifacts import ArtifactStore
from zenml.images import catalogue
from zenml.images.spec import REPOSITORY_PREFIX
from zenml.integrations.gcp.naming import gcp_label
from zenml.integrations.gcp.registry import check_registry, registry_image
from zenml.integrations.gcp.storage import fuse_path, gcs_uri, split_gcs_uri
from zenml.metadata import CANCELLED, COMPLETED, FAILED
from zenml.orchestrators.base import Orchestrator, RunContext, StepLaunch, StepOutcome
from zenml.spec import StepSpec

logger = logging.getLogger(__name__)

VERTEX_OUTPUT = ".vertex"
SERVE_COMMAND = ("python", "-m", "zenml.integrations.gcp.serve")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+(-[a-z]+)+\d+$")
_MACHINE = re.compile(r"^[a-z0-9]+-[a-z0-9-]+$")
_DONE = {
    aip.JobState.JOB_STATE_SUCCEEDED: COMPLETED,
    aip.JobState.JOB_STATE_FAILED: FAILED,
    aip.JobState.JOB_STATE_CANCELLED: CANCELLED,
    aip.JobState.JOB_STATE_EXPIRED: FAILED,
    aip.JobState.JOB_STATE_PARTIALLY_SUCCEEDED: FAILED,
}


@dataclass(frozen=True)
class VertexSettings:
    """Where the jobs run and where they read and write.

    Args:
        artifact_store: gs://BUCKET[/PATH] holding the artifact store.
        image_registry: where zenml's images were pushed, e.g.
            `europe-docker.pkg.dev/PROJECT/REPO`.
        machine_types: per-step machine types over `machine_type`.
        accelerator_type: the GPU of steps that ask for GPUs, as Vertex AI
            names it (`NVIDIA_TESLA_T4`, `NVIDIA_L4`, ...).
    """

    project: str
    region: str
    artifact_store: str
    image_registry: str
    service_account: str | None = None
    machine_type: str = "n1-standard-4"
    machine_types: Mapping[str, str] = field(default_factory=dict)
    accelerator_type: str | None = None
    replica_count: int = 1

    def __post_init__(self) -> None:
        if not _PROJECT.match(self.project):
            raise ValueError(
                f"project {self.project!r} is not a Google Cloud project id; "
                "give the id (6-30 lowercase letters, digits and '-'), not the "
                "display name or number"
            )
        if not _REGION.match(self.region):
            raise ValueError(
                f"region {self.region!r} is not a Vertex AI region; give one "
                "like europe-west4 or us-central1, not a zone"
            )
        try:
            split_gcs_uri(self.artifact_store)
        except ValueError as exc:
            raise ValueError(
                f"artifact_store: {exc}; Vertex AI reads and writes artifacts "
                "in Cloud Storage"
            ) from exc
        check_registry(self.image_registry)
        for machine in (self.machine_type, *self.machine_types.values()):
            if not _MACHINE.match(machine):
                raise ValueError(
                    f"machine type {machine!r} is not a Compute Engine machine "
                    "type; give one like n1-standard-4 or a2-highgpu-1g"
                )
        if self.accelerator_type is not None:
            _accelerator(self.accelerator_type)
        if self.replica_count < 1:
            raise ValueError(f"replica_count {self.replica_count} must be 1 or more")

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.region}-aiplatform.googleapis.com"

    @property
    def mount_root(self) -> PurePosixPath:
        """The artifact store's path inside a training job."""
        return fuse_path(self.artifact_store)


@dataclass(frozen=True)
class ServingSettings:
    """How a deployed model is served."""

    machine_type: str = "n1-standard-2"
    min_replica_count: int = 1
    max_replica_count: int = 1
    port: int = 8080
    predict_route: str = "/predict"
    health_route: str = "/healthz"

    def __post_init__(self) -> None:
        if not 1 <= self.min_replica_count <= self.max_replica_count:
            raise ValueError(
                f"replicas {self.min_replica_count}..{self.max_replica_count} "
                "need 1 <= min_replica_count <= max_replica_count"
            )
        if not _MACHINE.match(self.machine_type):
            raise ValueError(
                f"machine type {self.machine_type!r} is not a Compute Engine "
                "machine type; give one like n1-standard-2"
            )


@dataclass(frozen=True)
class Deployment:
    """A model served on an endpoint, by resource names."""

    model: str
    endpoint: str
    deployed_model_id: str


def step_image(step: StepSpec, settings: VertexSettings) -> str:
    """The step's image as pushed to the settings' registry."""
    return registry_image(catalogue.image_reference(step), settings.image_registry)


def custom_job(
    pipeline: str,
    run_id: str,
    step: StepSpec,
    task_file: PurePath | str,
    environment: Mapping[str, str],
    settings: VertexSettings,
) -> aip.CustomJob:
    """The CustomJob that runs `step` from `task_file`, a path under the mount."""
    task_path = PurePosixPath(str(task_file))
    if not task_path.is_relative_to(settings.mount_root):
        raise ValueError(
            f"task file {task_path} is outside {settings.mount_root}, where "
            f"Vertex AI mounts the artifact store {settings.artifact_store}; "
            "mount the bucket at that path on this machine (gcsfuse) and make "
            "it the repository's artifact store"
        )
    accelerator = _check_step(step, settings)

    machine = aip.MachineSpec(
        machine_type=settings.machine_types.get(step.name, settings.machine_type)
    )
    if accelerator is not None:
        machine.accelerator_type = accelerator
        machine.accelerator_count = step.resources.gpus
    container = aip.ContainerSpec(
        image_uri=step_image(step, settings),
        command=["python", "-m", "zenml.entrypoint", str(task_path)],
        env=[aip.EnvVar(name=k, value=v) for k, v in environment.items()],
    )
    job_spec = aip.CustomJobSpec(
        worker_pool_specs=[
            aip.WorkerPoolSpec(
                machine_spec=machine,
                replica_count=settings.replica_count,
                container_spec=container,
            )
        ],
        base_output_directory=aip.GcsDestination(
            output_uri_prefix=gcs_uri(task_path.parent / VERTEX_OUTPUT)
        ),
    )
    if settings.service_account:
        job_spec.service_account = settings.service_account
    if step.timeout is not None:
        job_spec.scheduling = aip.Scheduling(
            timeout=duration_pb2.Duration(seconds=math.ceil(step.timeout))
        )
    return aip.CustomJob(
        display_name=f"zenml {pipeline} {step.name} {run_id}"[:128],
        job_spec=job_spec,
        labels=_labels(pipeline, run_id, step.name),
    )


def create_custom_job_request(
    job: aip.CustomJob, settings: VertexSettings
) -> aip.CreateCustomJobRequest:
    return aip.CreateCustomJobRequest(parent=settings.parent, custom_job=job)


def job_client(settings: VertexSettings, **kwargs: Any) -> aip.JobServiceClient:
    """A client for the settings' regional endpoint; credentials from the env."""
    return aip.JobServiceClient(
        client_options={"api_endpoint": settings.api_endpoint}, **kwargs
    )


def submit_custom_job(
    job: aip.CustomJob,
    settings: VertexSettings,
    client: aip.JobServiceClient | None = None,
) -> aip.CustomJob:
    """Create the job; returns it as Vertex AI has it, with its resource name."""
    client = client or job_client(settings)
    created = client.create_custom_job(request=create_custom_job_request(job, settings))
    logger.info("Vertex AI job %s created for %s", created.name, job.display_name)
    return created


class VertexOrchestrator(Orchestrator):
    """Runs every step as a Vertex AI CustomJob and waits for its end."""

    name = "vertex"

    def __init__(
        self,
        settings: VertexSettings,
        client: Any | None = None,
        *,
        poll_interval: float = 15.0,
    ) -> None:
        self.settings = settings
        self.client = client or job_client(settings)
        self.poll_interval = poll_interval
        self._running: dict[str, str] = {}
        self._lock = threading.Lock()
        self._cancelled = False

    def prepare(self, context: RunContext) -> None:
        root = PurePosixPath(context.artifact_root)
        if not root.is_relative_to(self.settings.mount_root):
            raise ValueError(
                f"the artifact store is at {root}, but Vertex AI jobs see "
                f"{self.settings.artifact_store} at {self.settings.mount_root}; "
                f"mount the bucket there (gcsfuse) and set the repository's "
                "artifact store to that path"
            )
        for step in context.spec.steps:
            _check_step(step, self.settings)
            if context.spec.secrets or step.secrets:
                raise ValueError(
                    f"step {step.name!r} needs secrets, which a CustomJob could "
                    "only receive as plain environment values; read them in the "
                    "step from Secret Manager instead"
                )

    def image_for(self, step: StepSpec) -> str | None:
        return step_image(step, self.settings)

    def run_step(self, context: RunContext, launch: StepLaunch) -> StepOutcome:
        step = launch.step
        image = step_image(step, self.settings)
        job = custom_job(
            context.spec.name,
            context.run_id,
            step,
            launch.task_file,
            {"HOME": "/tmp", **launch.environment},
            self.settings,
        )
        try:
            created = submit_custom_job(job, self.settings, self.client)
        except Exception as exc:  # a refused job fails the step, not the run
            return StepOutcome(
                status=FAILED,
                reason=f"Vertex AI refused the job: {exc}",
                image=image,
            )
        with self._lock:
            self._running[step.name] = created.name
            cancelled = self._cancelled
        if cancelled:
            # The run was cancelled while this job was being created.
            self.client.cancel_custom_job(name=created.name)

        try:
            state = created
            while state.state not in _DONE:
                time.sleep(self.poll_interval)
                state = self.client.get_custom_job(name=created.name)
        finally:
            with self._lock:
                self._running.pop(step.name, None)

        status = _DONE[state.state]
        reason = "" if status == COMPLETED else aip.JobState(state.state).name
        if state.error.message:
            reason = f"{reason}: {state.error.message}"
        return StepOutcome(
            status=status, reason=reason, image=image, container=created.name
        )

    def cancel(self, context: RunContext) -> None:
        with self._lock:
            self._cancelled = True
            names = list(self._running.values())
        for name in names:
            self.client.cancel_custom_job(name=name)


def model_bundle_uri(
    settings: VertexSettings,
    pipeline: str,
    run_id: str,
    step: str = "train",
    output: str = "output",
) -> str:
    """The gs:// folder of a model bundle a step returned as a folder."""
    store = ArtifactStore(Path(str(settings.mount_root)))
    # A returned folder is stored as the artifact's `data` folder.
    folder = store.output_uri(pipeline, run_id, step, output) / "data"
    return gcs_uri(PurePosixPath(folder.as_posix()))


def serving_image(settings: VertexSettings) -> str:
    local = f"{REPOSITORY_PREFIX}/cortex:{zenml.__version__}"
    return registry_image(local, settings.image_registry)


def upload_model_request(
    display_name: str,
    bundle_uri: str,
    settings: VertexSettings,
    serving: ServingSettings | None = None,
    labels: Mapping[str, str] | None = None,
) -> aip.UploadModelRequest:
    """Upload the bundle at `bundle_uri` as a Model served by the cortex image."""
    serving = serving or ServingSettings()
    try:
        split_gcs_uri(bundle_uri)
    except ValueError as exc:
        raise ValueError(
            f"model bundle: {exc}; Vertex AI copies models from Cloud Storage"
        ) from exc
    model = aip.Model(
        display_name=display_name,
        artifact_uri=bundle_uri.rstrip("/"),
        container_spec=aip.ModelContainerSpec(
            image_uri=serving_image(settings),
            command=list(SERVE_COMMAND),
            predict_route=serving.predict_route,
            health_route=serving.health_route,
            ports=[aip.Port(container_port=serving.port)],
        ),
        labels=dict(labels or {}),
    )
    return aip.UploadModelRequest(parent=settings.parent, model=model)


def create_endpoint_request(
    display_name: str,
    settings: VertexSettings,
    labels: Mapping[str, str] | None = None,
) -> aip.CreateEndpointRequest:
    return aip.CreateEndpointRequest(
        parent=settings.parent,
        endpoint=aip.Endpoint(display_name=display_name, labels=dict(labels or {})),
    )


def deploy_model_request(
    endpoint: str,
    model: str,
    display_name: str,
    settings: VertexSettings,
    serving: ServingSettings | None = None,
) -> aip.DeployModelRequest:
    """Deploy `model` to `endpoint` (resource names) with all the traffic."""
    serving = serving or ServingSettings()
    deployed = aip.DeployedModel(
        model=model,
        display_name=display_name,
        dedicated_resources=aip.DedicatedResources(
            machine_spec=aip.MachineSpec(machine_type=serving.machine_type),
            min_replica_count=serving.min_replica_count,
            max_replica_count=serving.max_replica_count,
        ),
    )
    if settings.service_account:
        deployed.service_account = settings.service_account
    # "0" is the model this request deploys, whatever id it is given.
    return aip.DeployModelRequest(
        endpoint=endpoint, deployed_model=deployed, traffic_split={"0": 100}
    )


def deploy(
    display_name: str,
    bundle_uri: str,
    settings: VertexSettings,
    serving: ServingSettings | None = None,
    *,
    endpoint: str | None = None,
    model_client: aip.ModelServiceClient | None = None,
    endpoint_client: aip.EndpointServiceClient | None = None,
    timeout: float = 3600.0,
) -> Deployment:
    """Upload the bundle, create an endpoint unless given one, deploy, wait."""
    options = {"api_endpoint": settings.api_endpoint}
    model_client = model_client or aip.ModelServiceClient(client_options=options)
    endpoint_client = endpoint_client or aip.EndpointServiceClient(
        client_options=options
    )
    labels = {"zenml-model": gcp_label(display_name)}

    upload = model_client.upload_model(
        request=upload_model_request(
            display_name, bundle_uri, settings, serving, labels
        )
    )
    model = upload.result(timeout=timeout).model
    logger.info("Vertex AI model %s uploaded from %s", model, bundle_uri)

    if endpoint is None:
        created = endpoint_client.create_endpoint(
            request=create_endpoint_request(display_name, settings, labels)
        )
        endpoint = created.result(timeout=timeout).name
        logger.info("Vertex AI endpoint %s created", endpoint)

    deployed = endpoint_client.deploy_model(
        request=deploy_model_request(endpoint, model, display_name, settings, serving)
    )
    deployed_id = deployed.result(timeout=timeout).deployed_model.id
    logger.info("Model %s deployed to %s as %s", model, endpoint, deployed_id)
    return Deployment(model=model, endpoint=endpoint, deployed_model_id=deployed_id)


def _check_step(step: StepSpec, settings: VertexSettings) -> aip.AcceleratorType | None:
    """The accelerator the step's GPUs need, or an error saying what to set."""
    if not step.resources.gpus:
        return None
    if settings.accelerator_type is None:
        raise ValueError(
            f"step {step.name!r} asks for {step.resources.gpus} GPU(s); set "
            "accelerator_type (e.g. NVIDIA_TESLA_T4) and a machine type that "
            "takes it"
        )
    return _accelerator(settings.accelerator_type)


def _accelerator(name: str) -> aip.AcceleratorType:
    # proto-plus enums are IntEnums at run time, which their stubs do not say.
    kinds: Any = aip.AcceleratorType
    try:
        return kinds[name]  # type: ignore[no-any-return]
    except KeyError:
        known = [a.name for a in kinds if a.value]
        raise ValueError(
            f"accelerator type {name!r} is unknown to Vertex AI; use one of {known}"
        ) from None


def _labels(pipeline: str, run_id: str, step: str) -> dict[str, str]:
    return {
        "managed-by": "zenml",
        "zenml-pipeline": gcp_label(pipeline),
        "zenml-run": gcp_label(run_id),
        "zenml-step": gcp_label(step),
    }
