"""A pipeline run as Kubernetes Jobs: one batch/v1 Job per step, as manifests.

Each Job runs the step's image with `python -m zenml.entrypoint TASK.json`, like
the Docker orchestrator, and mounts the artifact store from a
PersistentVolumeClaim at the same path it has on the exporting machine, so the
task files and artifact paths written here are valid inside the pods.

Applying every manifest at once is safe: a Job's init container waits until
the outputs its step reads exist (an output folder appears only once complete,
see `zenml.artifacts`), so the steps run in the pipeline's order. The
`zenml.io/upstream-*` annotations list the same order for tools and readers.

The objects are built from the official client's models, whose setters check
required fields, and serialised with the client's own serialiser.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from kubernetes import client as k8s

from zenml.artifacts import META_FILE, ArtifactStore
from zenml.entrypoint import TASK_FILE, Task
from zenml.images import catalogue

# One naming rule for pushed images everywhere; the module needs no Google library.
from zenml.integrations.gcp.registry import check_registry, registry_image
from zenml.runs import step_environment
from zenml.spec import PipelineSpec, Resources, StepSpec

logger = logging.getLogger(__name__)

LABEL_PREFIX = "zenml.io"
RUN_LABEL = f"{LABEL_PREFIX}/run"
PIPELINE_LABEL = f"{LABEL_PREFIX}/pipeline"
STEP_LABEL = f"{LABEL_PREFIX}/step"
MANAGED_BY = "app.kubernetes.io/managed-by"
STEP_ANNOTATION = f"{LABEL_PREFIX}/step-name"
PIPELINE_ANNOTATION = f"{LABEL_PREFIX}/pipeline-name"
RUN_ANNOTATION = f"{LABEL_PREFIX}/run-id"
UPSTREAM_STEPS_ANNOTATION = f"{LABEL_PREFIX}/upstream-steps"
UPSTREAM_JOBS_ANNOTATION = f"{LABEL_PREFIX}/upstream-jobs"
CONTAINER_NAME = "step"
ARTIFACTS_VOLUME = "artifacts"
CODE_VOLUME = "code"
SHM_VOLUME = "shm"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DOCKER_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$", re.IGNORECASE)
_K8S_BINARY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei)$")
_BINARY_SUFFIX = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}

# The init container's wait loop: every argument is a file that must exist.
_WAIT_SCRIPT = """\
deadline=$(( $(date +%s) + $0 ))
for f in "$@"; do
  until [ -e "$f" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "zenml: no $f after $0s; see whether its step failed:" >&2
      echo "  kubectl get jobs -l $ZENML_RUN_SELECTOR" >&2
      exit 1
    fi
    sleep 5
  done
done"""


@dataclass(frozen=True)
class KubernetesSettings:
    """Where the Jobs run and what they mount.

    `artifact_root` is the artifact store's path on the exporting machine and
    inside every pod; the claim `claim_name` is mounted there. The pipeline's
    code is mounted read-only from `code_claim` at the code root; without a
    code claim, the code root must lie inside the artifact store.
    """

    artifact_root: str
    claim_name: str = "zenml-artifacts"
    code_claim: str | None = None
    namespace: str = "default"
    service_account: str | None = None
    ttl_seconds_after_finished: int = 86_400
    image_registry: str | None = None
    image_pull_policy: str = "IfNotPresent"
    secret_name: str = "zenml-secrets"
    gpu_resource: str = "nvidia.com/gpu"
    run_as_user: int | None = None
    fs_group: int | None = None
    wait_for_inputs_seconds: int = 86_400
    node_selector: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not PurePosixPath(self.artifact_root).is_absolute():
            raise ValueError(
                f"artifact_root {self.artifact_root!r} is relative; give the "
                "absolute path the artifact store has here and in the pods"
            )
        for name, value in (
            ("claim_name", self.claim_name),
            ("code_claim", self.code_claim),
            ("secret_name", self.secret_name),
        ):
            if value is not None and not _is_dns_subdomain(value):
                raise ValueError(
                    f"{name} {value!r} is not a Kubernetes object name; use at "
                    "most 253 lowercase letters, digits, '-' and '.'"
                )
        if not _DNS_LABEL.match(self.namespace) or len(self.namespace) > 63:
            raise ValueError(
                f"namespace {self.namespace!r} is not a Kubernetes namespace name; "
                "use at most 63 lowercase letters, digits and '-'"
            )
        if self.ttl_seconds_after_finished < 0 or self.wait_for_inputs_seconds < 1:
            raise ValueError(
                "ttl_seconds_after_finished must be 0 or more and "
                "wait_for_inputs_seconds 1 or more"
            )
        if self.image_pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise ValueError(
                f"image_pull_policy {self.image_pull_policy!r} is none of "
                "Always, IfNotPresent, Never"
            )
        if self.image_registry is not None:
            check_registry(self.image_registry)

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(Path(self.artifact_root))


def label_value(text: str) -> str:
    """`text` as a valid label value; distinct texts give distinct values.

    A value that had to change gets a short hash of the original, so
    `train (v2)` and `train-v2` do not end up with the same label.
    """
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
    digest = _digest(text)
    return f"{cleaned[:56]}-{digest}".strip("-.") if cleaned else digest


def job_name(run_id: str, step: str) -> str:
    """The Job's name: from run id and step, unique per pair, at most 63 chars.

    Kubernetes copies the name into a pod label, hence the label limit.
    """
    run = _dns(run_id)[:24].strip("-") or "run"
    part = _dns(step)
    suffix = _digest(f"{run_id}\0{step}")
    room = 63 - len("zenml-") - len(run) - len(suffix) - 2
    return f"zenml-{run}-{part[:room].strip('-') or 'step'}-{suffix}"


def task_path(spec: PipelineSpec, run_id: str, step: str, root: str) -> Path:
    """Where a step's task file lives in the artifact store at `root`."""
    return ArtifactStore(Path(root)).step_dir(spec.name, run_id, step) / TASK_FILE


def step_tasks(spec: PipelineSpec, run_id: str, root: str) -> dict[str, Task]:
    """The task of every step of a run whose artifact store is at `root`.

    Inputs point at the upstream outputs of the same run: an exported run
    reuses nothing from earlier runs.
    """
    store = ArtifactStore(Path(root))
    tasks = {}
    for step in spec.steps:
        tasks[step.name] = Task(
            step=step.name,
            source=step.source,
            code_root=spec.code_root,
            parameters=step.parameters,
            inputs={
                arg: str(store.output_uri(spec.name, run_id, ref.step, ref.output))
                for arg, ref in step.inputs.items()
            },
            outputs={
                name: str(store.output_uri(spec.name, run_id, step.name, name))
                for name in step.outputs
            },
        )
    return tasks


def write_tasks(
    spec: PipelineSpec, run_id: str, settings: KubernetesSettings
) -> dict[str, Path]:
    """Write every step's task file into the artifact store the pods mount."""
    root = Path(settings.artifact_root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"artifact root {root} does not exist on this machine; mount the "
            f"volume behind claim {settings.claim_name!r} at {root}, the path "
            "the pods see, before exporting the run"
        )
    written = {}
    for name, task in step_tasks(spec, run_id, settings.artifact_root).items():
        path = task_path(spec, run_id, name, settings.artifact_root)
        if path.exists():
            raise FileExistsError(
                f"{path} exists already; run {run_id} was exported before, so "
                "export it under a new run id"
            )
        task.write(path)
        written[name] = path
    logger.info("Wrote %d task files of run %s under %s", len(written), run_id, root)
    return written


def step_job(
    spec: PipelineSpec, step: StepSpec, run_id: str, settings: KubernetesSettings
) -> k8s.V1Job:
    """The Job that runs one step of run `run_id`."""
    _check_code_root(spec, settings)
    image = catalogue.image_reference(step)
    if settings.image_registry is not None:
        image = registry_image(image, settings.image_registry)
    labels = _labels(spec, run_id, step)
    tasks = step_tasks(spec, run_id, settings.artifact_root)
    upstream = sorted(step.upstream)

    volumes, mounts = _volumes(spec, step, settings)
    container = k8s.V1Container(
        name=CONTAINER_NAME,
        image=image,
        image_pull_policy=settings.image_pull_policy,
        command=[
            "python",
            "-m",
            "zenml.entrypoint",
            str(task_path(spec, run_id, step.name, settings.artifact_root)),
        ],
        working_dir=spec.code_root,
        env=_env(spec, step, settings),
        resources=_resources(step.resources, settings.gpu_resource),
        volume_mounts=mounts,
    )
    init_containers = None
    inputs = sorted(set(tasks[step.name].inputs.values()))
    if inputs:
        # The step's own image, which the node pulls anyway, provides the shell.
        init_containers = [
            k8s.V1Container(
                name="wait-for-inputs",
                image=image,
                image_pull_policy=settings.image_pull_policy,
                command=[
                    "sh",
                    "-c",
                    _WAIT_SCRIPT,
                    str(settings.wait_for_inputs_seconds),
                    *(str(Path(uri) / META_FILE) for uri in inputs),
                ],
                env=[
                    k8s.V1EnvVar(
                        name="ZENML_RUN_SELECTOR",
                        value=f"{RUN_LABEL}={labels[RUN_LABEL]}",
                    )
                ],
                volume_mounts=[m for m in mounts if m.name == ARTIFACTS_VOLUME],
            )
        ]

    security = None
    if settings.run_as_user is not None or settings.fs_group is not None:
        security = k8s.V1PodSecurityContext(
            run_as_user=settings.run_as_user, fs_group=settings.fs_group
        )
    pod = k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=labels),
        spec=k8s.V1PodSpec(
            restart_policy="Never",
            containers=[container],
            init_containers=init_containers,
            volumes=volumes,
            service_account_name=settings.service_account,
            security_context=security,
            node_selector=dict(settings.node_selector) or None,
        ),
    )
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(
            name=job_name(run_id, step.name),
            namespace=settings.namespace,
            labels=labels,
            annotations={
                STEP_ANNOTATION: step.name,
                PIPELINE_ANNOTATION: spec.name,
                RUN_ANNOTATION: run_id,
                UPSTREAM_STEPS_ANNOTATION: json.dumps(upstream),
                UPSTREAM_JOBS_ANNOTATION: json.dumps(
                    [job_name(run_id, name) for name in upstream]
                ),
            },
        ),
        spec=k8s.V1JobSpec(
            backoff_limit=0,
            ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
            active_deadline_seconds=(
                math.ceil(step.timeout) if step.timeout is not None else None
            ),
            template=pod,
        ),
    )


def pipeline_jobs(
    spec: PipelineSpec, run_id: str, settings: KubernetesSettings
) -> list[k8s.V1Job]:
    """One Job per step, in an order that respects every input."""
    return [
        step_job(spec, spec.step(name), run_id, settings)
        for name in spec.execution_order()
    ]


def export_manifests(
    spec: PipelineSpec, run_id: str, settings: KubernetesSettings
) -> list[dict[str, Any]]:
    """The Jobs of a run as plain manifests, ready for YAML or the API."""
    with k8s.ApiClient() as api:
        return [
            api.sanitize_for_serialization(job)
            for job in pipeline_jobs(spec, run_id, settings)
        ]


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the wait script) as readable literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def manifests_yaml(manifests: list[dict[str, Any]]) -> str:
    """Manifests as one multi-document YAML stream, for `kubectl apply -f`."""
    return yaml.dump_all(
        manifests, Dumper=_Dumper, sort_keys=False, explicit_start=True
    )


def write_manifests(manifests: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifests_yaml(manifests), encoding="utf-8")
    return path


def memory_quantity(size: str) -> str:
    """A zenml (Docker-style) memory size as a Kubernetes quantity.

    Docker reads `512m` as 512 MiB, Kubernetes as 0.512 bytes, so Docker's
    one-letter units become binary suffixes; Kubernetes quantities pass as is.
    """
    text = size.strip()
    if _K8S_BINARY.match(text):
        return text
    match = _DOCKER_SIZE.match(text)
    if not match:
        raise ValueError(
            f"memory {size!r} is neither a Docker size (512m, 4g) nor a "
            "Kubernetes quantity (512Mi, 4Gi); write it as one of those"
        )
    number, unit = match.groups()
    return f"{number}{_BINARY_SUFFIX[unit.lower()]}"


def cpu_quantity(cpu: float) -> str:
    """CPUs as a Kubernetes quantity: whole cores as is, fractions in millicores."""
    if cpu <= 0:
        raise ValueError(f"cpu {cpu} must be more than 0")
    if float(cpu).is_integer():
        return str(int(cpu))
    return f"{math.ceil(cpu * 1000)}m"


def _resources(
    resources: Resources, gpu_resource: str
) -> k8s.V1ResourceRequirements | None:
    requests: dict[str, str] = {}
    if resources.cpu:
        requests["cpu"] = cpu_quantity(resources.cpu)
    if resources.memory:
        requests["memory"] = memory_quantity(resources.memory)
    limits = dict(requests)
    if resources.gpus:
        # Extended resources are set as limits only; the request follows them.
        limits[gpu_resource] = str(resources.gpus)
    if not limits:
        return None
    return k8s.V1ResourceRequirements(requests=requests or None, limits=limits)


def _volumes(
    spec: PipelineSpec, step: StepSpec, settings: KubernetesSettings
) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    volumes = [
        k8s.V1Volume(
            name=ARTIFACTS_VOLUME,
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                claim_name=settings.claim_name
            ),
        )
    ]
    mounts = [
        k8s.V1VolumeMount(name=ARTIFACTS_VOLUME, mount_path=settings.artifact_root)
    ]
    if settings.code_claim is not None:
        volumes.append(
            k8s.V1Volume(
                name=CODE_VOLUME,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=settings.code_claim, read_only=True
                ),
            )
        )
        mounts.append(
            k8s.V1VolumeMount(
                name=CODE_VOLUME, mount_path=spec.code_root, read_only=True
            )
        )
    if step.resources.shm_size:
        # A pod's /dev/shm is 64 MiB unless a memory-backed volume replaces it.
        volumes.append(
            k8s.V1Volume(
                name=SHM_VOLUME,
                empty_dir=k8s.V1EmptyDirVolumeSource(
                    medium="Memory",
                    size_limit=memory_quantity(step.resources.shm_size),
                ),
            )
        )
        mounts.append(k8s.V1VolumeMount(name=SHM_VOLUME, mount_path="/dev/shm"))
    return volumes, mounts


def _env(
    spec: PipelineSpec, step: StepSpec, settings: KubernetesSettings
) -> list[k8s.V1EnvVar]:
    values = {"HOME": "/tmp", **step_environment(spec, step)}
    env = [k8s.V1EnvVar(name=k, value=v) for k, v in values.items()]
    # Secret values never enter a manifest: each one is read from a Secret.
    for name in sorted(set(spec.secrets) | set(step.secrets)):
        env.append(
            k8s.V1EnvVar(
                name=name,
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(
                        name=settings.secret_name, key=name
                    )
                ),
            )
        )
    return env


def _labels(spec: PipelineSpec, run_id: str, step: StepSpec) -> dict[str, str]:
    return {
        MANAGED_BY: "zenml",
        RUN_LABEL: label_value(run_id),
        PIPELINE_LABEL: label_value(spec.name),
        STEP_LABEL: label_value(step.name),
    }


def _check_code_root(spec: PipelineSpec, settings: KubernetesSettings) -> None:
    if settings.code_claim is not None:
        return
    code_root = PurePosixPath(spec.code_root)
    if not code_root.is_relative_to(PurePosixPath(settings.artifact_root)):
        raise ValueError(
            f"the pods mount only the artifact store ({settings.artifact_root}), "
            f"not the code root {spec.code_root}; set code_claim to a "
            "PersistentVolumeClaim holding the code, or keep the code inside "
            "the artifact store"
        )


def _dns(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def _is_dns_subdomain(text: str) -> bool:
    return len(text) <= 253 and bool(_DNS_SUBDOMAIN.match(text))
