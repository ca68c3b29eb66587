"""Tests of the Vertex AI requests, checked where the client hands them to gRPC."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import pytest
from google.api_core import client_options
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1 as aip
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, duration_pb2

from zenml.integrations.gcp import serve
from zenml.integrations.gcp.registry import check_registry, registry_image
from zenml.integrations.gcp.storage import (
    download_folder,
    fuse_path,
    gcs_uri,
    join_gcs,
    split_gcs_uri,
    upload_folder,
)
from zenml.integrations.gcp.vertex import (
    ServingSettings,
    VertexOrchestrator,
    VertexSettings,
    create_endpoint_request,
    custom_job,
    deploy,
    deploy_model_request,
    job_client,
    model_bundle_uri,
    submit_custom_job,
    upload_model_request,
)
from zenml.metadata import CANCELLED, COMPLETED, FAILED
from zenml.orchestrators.base import RunContext, StepLaunch
from zenml.pipelines import load_pipeline
from zenml.spec import PipelineSpec, Resources, StepSpec

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart" / "pipeline.py"
REGISTRY = "europe-docker.pkg.dev/zenml-proj/images"
RUN_ID = "20240101-120000-abcdef"
PARENT = "projects/zenml-proj/locations/europe-west4"
TASK = PurePosixPath(f"/gcs/zenml-store/artifacts/quickstart/{RUN_ID}/train/task.json")


@pytest.fixture(scope="module")
def quickstart() -> PipelineSpec:
    return load_pipeline(QUICKSTART).compile()


@pytest.fixture
def settings() -> VertexSettings:
    return VertexSettings(
        project="zenml-proj",
        region="europe-west4",
        artifact_store="gs://zenml-store/artifacts",
        image_registry=REGISTRY,
        service_account="trainer@zenml-proj.iam.gserviceaccount.com",
        machine_types={"train": "n1-standard-8"},
        accelerator_type="NVIDIA_TESLA_T4",
    )


def gpu_step(
    spec: PipelineSpec, name: str, gpus: int, timeout: float | None
) -> StepSpec:
    return spec.step(name).model_copy(
        update={"resources": Resources(gpus=gpus), "timeout": timeout}
    )


def anonymous(client_class: type, settings: VertexSettings) -> Any:
    return client_class(
        credentials=AnonymousCredentials(),
        client_options=client_options.ClientOptions(api_endpoint=settings.api_endpoint),
    )


def done_operation(response: Any) -> operations_pb2.Operation:
    packed = any_pb2.Any()
    packed.Pack(type(response).pb(response))
    return operations_pb2.Operation(name="operations/1", done=True, response=packed)


# Training


def test_train_step_becomes_a_custom_job_with_the_pushed_image(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    step = gpu_step(quickstart, "train", gpus=2, timeout=3600.5)

    job = custom_job(
        "quickstart", RUN_ID, step, TASK, {"HOME": "/tmp", "SEED": "1"}, settings
    )

    assert job == aip.CustomJob(
        display_name=f"zenml quickstart train {RUN_ID}",
        labels={
            "managed-by": "zenml",
            "zenml-pipeline": "quickstart",
            "zenml-run": RUN_ID,
            "zenml-step": "train",
        },
        job_spec=aip.CustomJobSpec(
            worker_pool_specs=[
                aip.WorkerPoolSpec(
                    machine_spec=aip.MachineSpec(
                        machine_type="n1-standard-8",
                        accelerator_type=aip.AcceleratorType.NVIDIA_TESLA_T4,
                        accelerator_count=2,
                    ),
                    replica_count=1,
                    container_spec=aip.ContainerSpec(
                        image_uri=f"{REGISTRY}/zenml-pytorch:0.1.0",
                        command=["python", "-m", "zenml.entrypoint", str(TASK)],
                        env=[
                            aip.EnvVar(name="HOME", value="/tmp"),
                            aip.EnvVar(name="SEED", value="1"),
                        ],
                    ),
                )
            ],
            base_output_directory=aip.GcsDestination(
                output_uri_prefix=f"gs://zenml-store/artifacts/quickstart/{RUN_ID}/train/.vertex"
            ),
            service_account="trainer@zenml-proj.iam.gserviceaccount.com",
            scheduling=aip.Scheduling(timeout=duration_pb2.Duration(seconds=3601)),
        ),
    )


def test_create_custom_job_sends_the_request_to_the_regional_endpoint(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    client = anonymous(aip.JobServiceClient, settings)
    job = custom_job("quickstart", RUN_ID, quickstart.step("train"), TASK, {}, settings)
    created = aip.CustomJob(
        name=f"{PARENT}/customJobs/42", display_name=job.display_name
    )

    with mock.patch.object(
        type(client.transport.create_custom_job), "__call__"
    ) as call:
        call.return_value = aip.CustomJob.pb(created)
        answer = submit_custom_job(job, settings, client)

    (request,), kwargs = call.call_args
    assert request == aip.CreateCustomJobRequest(parent=PARENT, custom_job=job)
    assert ("x-goog-request-params", f"parent={PARENT}") in kwargs["metadata"]
    assert client.transport._host == "europe-west4-aiplatform.googleapis.com:443"
    assert answer.name == f"{PARENT}/customJobs/42"
    spec = request.custom_job.job_spec.worker_pool_specs[0]
    assert spec.machine_spec.accelerator_count == 0
    assert spec.container_spec.image_uri == f"{REGISTRY}/zenml-pytorch:0.1.0"


def test_job_client_targets_the_region(settings: VertexSettings) -> None:
    client = job_client(settings, credentials=AnonymousCredentials())
    assert client.transport._host == "europe-west4-aiplatform.googleapis.com:443"


def test_each_quickstart_step_pulls_its_own_image(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    images = {
        step.name: custom_job("q", RUN_ID, step, TASK, {}, settings)
        .job_spec.worker_pool_specs[0]
        .container_spec.image_uri
        for step in quickstart.steps
    }
    assert images["preprocess"] == f"{REGISTRY}/zenml-base:0.1.0"
    assert images["train"] == f"{REGISTRY}/zenml-pytorch:0.1.0"
    assert images["deploy"] == f"{REGISTRY}/zenml-cortex:0.1.0"


def test_a_tensorflow_step_runs_in_the_pushed_tensorflow_image(
    settings: VertexSettings,
) -> None:
    spec = load_pipeline(QUICKSTART.parents[1] / "tensorflow" / "pipeline.py").compile()

    job = custom_job("keras", RUN_ID, spec.step("train"), TASK, {}, settings)

    container = job.job_spec.worker_pool_specs[0].container_spec
    assert container.image_uri == f"{REGISTRY}/zenml-tensorflow:0.1.0"


def test_gpu_steps_need_an_accelerator_type(quickstart: PipelineSpec) -> None:
    settings = VertexSettings(
        project="zenml-proj",
        region="europe-west4",
        artifact_store="gs://zenml-store",
        image_registry=REGISTRY,
    )
    step = gpu_step(quickstart, "train", gpus=1, timeout=None)
    task = PurePosixPath("/gcs/zenml-store/q/r/train/task.json")
    with pytest.raises(
        ValueError, match=r"set accelerator_type \(e.g. NVIDIA_TESLA_T4\)"
    ):
        custom_job("q", RUN_ID, step, task, {}, settings)


def test_task_file_must_be_under_the_bucket_mount(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    with pytest.raises(ValueError, match="mount the bucket at that path"):
        custom_job(
            "q", RUN_ID, quickstart.step("train"), "/home/me/task.json", {}, settings
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("project", "My Project", "not a Google Cloud project id"),
        ("region", "europe-west4-a", "not a zone"),
        ("artifact_store", "/mnt/artifacts", r"gs://BUCKET.*Cloud Storage"),
        ("artifact_store", "s3://zenml-store", r"gs://BUCKET"),
        ("image_registry", "docker.io", "registry host and path"),
        ("accelerator_type", "GTX_1080", "unknown to Vertex AI.*NVIDIA_TESLA_T4"),
        ("machine_type", "big machine", "machine type"),
        ("replica_count", 0, "1 or more"),
    ],
)
def test_settings_name_the_remedy(field: str, value: Any, message: str) -> None:
    arguments = {
        "project": "zenml-proj",
        "region": "europe-west4",
        "artifact_store": "gs://zenml-store",
        "image_registry": REGISTRY,
        field: value,
    }
    with pytest.raises(ValueError, match=message):
        VertexSettings(**arguments)


# The orchestrator, against a fake job service.


class FakeJobs:
    def __init__(self, states: list[aip.JobState], error: str = "") -> None:
        self.states = states
        self.error = error
        self.created: list[aip.CreateCustomJobRequest] = []
        self.cancelled: list[str] = []

    def create_custom_job(self, request: aip.CreateCustomJobRequest) -> aip.CustomJob:
        self.created.append(request)
        return aip.CustomJob(name=f"{PARENT}/customJobs/7", state=self.states.pop(0))

    def get_custom_job(self, name: str) -> aip.CustomJob:
        job = aip.CustomJob(name=name, state=self.states.pop(0))
        if self.error:
            job.error.message = self.error
        return job

    def cancel_custom_job(self, name: str) -> None:
        self.cancelled.append(name)


def run_context(spec: PipelineSpec, root: str) -> RunContext:
    return RunContext(
        run_id=RUN_ID, spec=spec, artifact_root=Path(root), run_dir=Path(root) / "run"
    )


def launch(spec: PipelineSpec) -> StepLaunch:
    return StepLaunch(
        step=spec.step("train"),
        task_file=Path(str(TASK)),
        log_file=Path("/tmp/log"),
        environment={"SEED": "1"},
    )


def test_orchestrator_waits_for_the_job_and_reports_success(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    S = aip.JobState
    jobs = FakeJobs([S.JOB_STATE_PENDING, S.JOB_STATE_RUNNING, S.JOB_STATE_SUCCEEDED])
    orchestrator = VertexOrchestrator(settings, jobs, poll_interval=0)
    context = run_context(quickstart, "/gcs/zenml-store/artifacts")

    orchestrator.prepare(context)
    outcome = orchestrator.run_step(context, launch(quickstart))

    assert outcome.status == COMPLETED
    assert outcome.container == f"{PARENT}/customJobs/7"
    assert outcome.image == f"{REGISTRY}/zenml-pytorch:0.1.0"
    env = jobs.created[0].custom_job.job_spec.worker_pool_specs[0].container_spec.env
    assert [(e.name, e.value) for e in env] == [("HOME", "/tmp"), ("SEED", "1")]


def test_orchestrator_reports_the_jobs_error(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    S = aip.JobState
    jobs = FakeJobs([S.JOB_STATE_RUNNING, S.JOB_STATE_FAILED], error="exit code 1")
    orchestrator = VertexOrchestrator(settings, jobs, poll_interval=0)

    outcome = orchestrator.run_step(
        run_context(quickstart, "/gcs/zenml-store/artifacts"), launch(quickstart)
    )

    assert outcome.status == FAILED
    assert outcome.reason == "JOB_STATE_FAILED: exit code 1"


def test_orchestrator_cancels_a_job_created_after_the_run_was_cancelled(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    S = aip.JobState
    jobs = FakeJobs([S.JOB_STATE_PENDING, S.JOB_STATE_CANCELLED])
    orchestrator = VertexOrchestrator(settings, jobs, poll_interval=0)
    context = run_context(quickstart, "/gcs/zenml-store/artifacts")

    orchestrator.cancel(context)
    outcome = orchestrator.run_step(context, launch(quickstart))

    assert jobs.cancelled == [f"{PARENT}/customJobs/7"]
    assert outcome.status == CANCELLED


def test_orchestrator_refuses_a_store_vertex_cannot_see(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    orchestrator = VertexOrchestrator(settings, FakeJobs([]), poll_interval=0)
    with pytest.raises(ValueError, match="mount the bucket there"):
        orchestrator.prepare(run_context(quickstart, "/home/me/.zenml/artifacts"))


def test_orchestrator_refuses_secrets(
    quickstart: PipelineSpec, settings: VertexSettings
) -> None:
    spec = quickstart.model_copy(update={"secrets": ("API_TOKEN",)})
    orchestrator = VertexOrchestrator(settings, FakeJobs([]), poll_interval=0)
    with pytest.raises(ValueError, match="Secret Manager"):
        orchestrator.prepare(run_context(spec, "/gcs/zenml-store/artifacts"))


# Serving


def test_model_upload_serves_the_bundle_with_the_cortex_image(
    settings: VertexSettings,
) -> None:
    bundle = model_bundle_uri(settings, "quickstart", RUN_ID)

    request = upload_model_request("penguins", bundle, settings)

    assert bundle == f"gs://zenml-store/artifacts/quickstart/{RUN_ID}/train/output/data"
    assert request == aip.UploadModelRequest(
        parent=PARENT,
        model=aip.Model(
            display_name="penguins",
            artifact_uri=bundle,
            container_spec=aip.ModelContainerSpec(
                image_uri=f"{REGISTRY}/zenml-cortex:0.1.0",
                command=["python", "-m", "zenml.integrations.gcp.serve"],
                predict_route="/predict",
                health_route="/healthz",
                ports=[aip.Port(container_port=8080)],
            ),
        ),
    )


def test_model_upload_needs_a_gcs_bundle(settings: VertexSettings) -> None:
    with pytest.raises(ValueError, match="copies models from Cloud Storage"):
        upload_model_request("penguins", "/tmp/model", settings)


def test_deploy_request_sizes_the_endpoint(settings: VertexSettings) -> None:
    serving = ServingSettings(
        machine_type="n1-highcpu-4", min_replica_count=1, max_replica_count=3
    )
    endpoint = f"{PARENT}/endpoints/9"
    model = f"{PARENT}/models/5"

    request = deploy_model_request(endpoint, model, "penguins", settings, serving)

    assert request == aip.DeployModelRequest(
        endpoint=endpoint,
        deployed_model=aip.DeployedModel(
            model=model,
            display_name="penguins",
            dedicated_resources=aip.DedicatedResources(
                machine_spec=aip.MachineSpec(machine_type="n1-highcpu-4"),
                min_replica_count=1,
                max_replica_count=3,
            ),
            service_account="trainer@zenml-proj.iam.gserviceaccount.com",
        ),
        traffic_split={"0": 100},
    )
    assert create_endpoint_request("penguins", settings) == aip.CreateEndpointRequest(
        parent=PARENT, endpoint=aip.Endpoint(display_name="penguins")
    )


def test_serving_settings_check_replicas() -> None:
    with pytest.raises(ValueError, match="min_replica_count <= max_replica_count"):
        ServingSettings(min_replica_count=3, max_replica_count=1)


def test_deploy_uploads_creates_an_endpoint_and_deploys(
    settings: VertexSettings,
) -> None:
    models = anonymous(aip.ModelServiceClient, settings)
    endpoints = anonymous(aip.EndpointServiceClient, settings)
    bundle = model_bundle_uri(settings, "quickstart", RUN_ID)
    model = f"{PARENT}/models/5"
    endpoint = f"{PARENT}/endpoints/9"

    answers = {
        aip.UploadModelRequest: done_operation(aip.UploadModelResponse(model=model)),
        aip.CreateEndpointRequest: done_operation(aip.Endpoint(name=endpoint)),
        aip.DeployModelRequest: done_operation(
            aip.DeployModelResponse(deployed_model=aip.DeployedModel(id="123"))
        ),
    }
    requests: list[Any] = []

    def answer(request: Any, **kwargs: Any) -> operations_pb2.Operation:
        requests.append(request)
        return answers[type(request)]

    # Every unary gRPC method shares one callable type: one patch sees them all.
    with mock.patch.object(
        type(models.transport.upload_model), "__call__", side_effect=answer
    ):
        deployment = deploy(
            "penguins", bundle, settings, model_client=models, endpoint_client=endpoints
        )

    assert (deployment.model, deployment.endpoint, deployment.deployed_model_id) == (
        model,
        endpoint,
        "123",
    )
    labels = {"zenml-model": "penguins"}
    assert requests == [
        upload_model_request("penguins", bundle, settings, labels=labels),
        create_endpoint_request("penguins", settings, labels),
        deploy_model_request(endpoint, model, "penguins", settings),
    ]


def test_serving_container_fetches_the_bundle_then_serves(tmp_path: Path) -> None:
    storage = FakeStorage(
        {"vertex-copy": {"m/model.onnx": b"onnx", "m/signature.json": b"{}"}}
    )
    served: list[tuple[Path, str, int]] = []

    serve.fetch_and_serve(
        {"AIP_STORAGE_URI": "gs://vertex-copy/m", "AIP_HTTP_PORT": "8080"},
        storage_client=storage,
        server=lambda bundle, host, port: served.append((bundle, host, port)),
    )

    ((bundle, host, port),) = served
    assert (host, port) == ("0.0.0.0", 8080)
    assert (bundle / "model.onnx").read_bytes() == b"onnx"
    assert (bundle / "signature.json").read_bytes() == b"{}"
    with pytest.raises(ValueError, match="artifact_uri"):
        serve.fetch_and_serve({}, storage_client=storage, server=lambda *a: None)


# Registry names and gs:// locations


@pytest.mark.parametrize(
    ("local", "pushed"),
    [
        ("zenml/pytorch:0.1.0", f"{REGISTRY}/zenml-pytorch:0.1.0"),
        ("zenml/base", f"{REGISTRY}/zenml-base:latest"),
        ("team/deep/model:2", f"{REGISTRY}/team-deep-model:2"),
        ("zenml/gcp:0.1.0@sha256:abc", f"{REGISTRY}/zenml-gcp:0.1.0@sha256:abc"),
        ("gcr.io/other/image:1", "gcr.io/other/image:1"),
        ("localhost:5000/zenml/base:0.1.0", "localhost:5000/zenml/base:0.1.0"),
    ],
)
def test_registry_image_rule(local: str, pushed: str) -> None:
    assert registry_image(local, REGISTRY + "/") == pushed


def test_registry_check_names_the_form() -> None:
    assert check_registry("gcr.io/proj/") == "gcr.io/proj"
    with pytest.raises(ValueError, match="drop it"):
        check_registry("https://gcr.io/proj")
    with pytest.raises(ValueError, match="invalid path parts"):
        check_registry("gcr.io/My_Project")


def test_gcs_locations_and_the_fuse_mount() -> None:
    assert split_gcs_uri("gs://zenml-store/a/b/") == ("zenml-store", "a/b")
    assert split_gcs_uri("gs://zenml-store") == ("zenml-store", "")
    assert join_gcs("gs://zenml-store/a/", "/b/", "c") == "gs://zenml-store/a/b/c"
    assert fuse_path("gs://zenml-store/a") == PurePosixPath("/gcs/zenml-store/a")
    assert gcs_uri("/gcs/zenml-store/a/b") == "gs://zenml-store/a/b"
    with pytest.raises(ValueError, match="gs://BUCKET"):
        split_gcs_uri("zenml-store/a")
    with pytest.raises(ValueError, match="not a valid bucket name"):
        split_gcs_uri("gs://Zenml Store/a")
    with pytest.raises(ValueError, match="where Vertex AI mounts"):
        gcs_uri("/mnt/zenml-store/a")


class FakeBlob:
    def __init__(self, store: dict[str, bytes], name: str) -> None:
        self.store, self.name = store, name

    def download_to_filename(self, path: str) -> None:
        Path(path).write_bytes(self.store[self.name])

    def upload_from_filename(self, path: str) -> None:
        self.store[self.name] = Path(path).read_bytes()


class FakeBucket:
    def __init__(self, store: dict[str, bytes]) -> None:
        self.store = store

    def blob(self, name: str) -> FakeBlob:
        return FakeBlob(self.store, name)


class FakeStorage:
    """The few calls of google.cloud.storage.Client the copies make."""

    def __init__(self, buckets: dict[str, dict[str, bytes]]) -> None:
        self.buckets = buckets

    def list_blobs(self, bucket: str, prefix: str = "") -> list[FakeBlob]:
        store = self.buckets.get(bucket, {})
        return [FakeBlob(store, n) for n in sorted(store) if n.startswith(prefix)]

    def bucket(self, name: str) -> FakeBucket:
        return FakeBucket(self.buckets.setdefault(name, {}))


def test_folders_copy_both_ways(tmp_path: Path) -> None:
    source = tmp_path / "repo"
    (source / ".zenml" / "artifacts").mkdir(parents=True)
    (source / ".zenml" / "metadata.db").write_bytes(b"db")
    (source / ".zenml" / "artifacts" / "a.json").write_bytes(b"[]")
    storage = FakeStorage({})

    assert upload_folder(source, "gs://zenml-store/runs/vm-1", storage) == 2
    assert sorted(storage.buckets["zenml-store"]) == [
        "runs/vm-1/.zenml/artifacts/a.json",
        "runs/vm-1/.zenml/metadata.db",
    ]
    storage.buckets["zenml-store"]["runs/vm-1/folder/"] = b""
    count = download_folder("gs://zenml-store/runs/vm-1", tmp_path / "back", storage)

    assert count == 2
    assert (tmp_path / "back" / ".zenml" / "metadata.db").read_bytes() == b"db"
    with pytest.raises(FileNotFoundError, match="may list the bucket"):
        download_folder("gs://zenml-store/nothing", tmp_path / "none", storage)
