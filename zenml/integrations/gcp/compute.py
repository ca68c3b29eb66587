"""A whole pipeline run on one Compute Engine VM that deletes itself afterwards.

The VM boots Container-Optimized OS (or Debian, which gets Docker installed),
and its startup script:

1. unpacks the pipeline's code and compiled YAML from the instance metadata;
2. logs Docker in to the registry with the VM's service account and pulls
   zenml's gcp image (the launcher) and every step's image, tagging each with
   its local name (`zenml/pytorch:0.1.0`), as the Docker orchestrator expects;
3. runs `zenml pipeline run PIPELINE.yaml` in the launcher with the host's
   Docker socket, so each step still runs in its own image;
4. copies the run's repository (metadata and artifacts) to `results`;
5. deletes the VM through the Compute Engine API, or shuts it down if that
   fails. `max_run_duration` deletes a VM whose script never gets there.

The script's output is in the VM's serial console
(`gcloud compute instances get-serial-port-output NAME`).

Metadata values hold at most 256 KB each and 512 KB together, which bounds
the code that can travel this way; larger code belongs in a custom image.
"""

from __future__ import annotations

import base64
import gzip
import io
import logging
import re
import shlex
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from google.cloud import compute_v1

import zenml
from zenml.images import catalogue
from zenml.images.spec import REPOSITORY_PREFIX
from zenml.integrations.gcp.naming import gcp_label, resource_name
from zenml.integrations.gcp.registry import check_registry, registry_image
from zenml.integrations.gcp.storage import join_gcs, split_gcs_uri
from zenml.spec import PipelineSpec

logger = logging.getLogger(__name__)

OS_IMAGES = {
    "cos": "projects/cos-cloud/global/images/family/cos-stable",
    "debian": "projects/debian-cloud/global/images/family/debian-12",
}
PIPELINE_KEY = "zenml-pipeline"
CODE_KEY = "zenml-code"
PIPELINE_FILE = "zenml-pipeline.yaml"
METADATA_VALUE_LIMIT = 256 * 1024
METADATA_TOTAL_LIMIT = 512 * 1024
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
IMAGE_UID = 1000
_SKIPPED = {".git", "__pycache__", ".zenml", ".venv", ".mypy_cache", ".pytest_cache"}
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_ZONE = re.compile(r"^[a-z]+(-[a-z]+)+\d+-[a-z]$")
_MACHINE = re.compile(r"^[a-z0-9]+-[a-z0-9-]+$")


@dataclass(frozen=True)
class ComputeSettings:
    """The VM a run gets, and where its results go.

    Args:
        results: gs:// folder under which each run's repository is copied,
            one subfolder per VM.
        service_account: the VM's identity; it pulls the images, writes
            `results` and deletes the VM. "default" is the project's default
            Compute Engine account.
        max_run_hours: Compute Engine deletes the VM after this long, whatever
            the script is doing.
    """

    project: str
    zone: str
    image_registry: str
    results: str
    machine_type: str = "e2-standard-4"
    os: str = "cos"
    disk_size_gb: int = 50
    service_account: str = "default"
    network: str = "global/networks/default"
    subnetwork: str | None = None
    external_ip: bool = True
    spot: bool = False
    max_run_hours: float = 24.0
    delete_when_done: bool = True
    work_dir: str = "/var/lib/zenml"
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _PROJECT.match(self.project):
            raise ValueError(
                f"project {self.project!r} is not a Google Cloud project id; "
                "give the id (6-30 lowercase letters, digits and '-')"
            )
        if not _ZONE.match(self.zone):
            raise ValueError(
                f"zone {self.zone!r} is not a Compute Engine zone; give one like "
                "europe-west4-a, not a region"
            )
        if not _MACHINE.match(self.machine_type):
            raise ValueError(
                f"machine type {self.machine_type!r} is not a Compute Engine "
                "machine type; give one like e2-standard-4"
            )
        if self.os not in OS_IMAGES:
            raise ValueError(f"os {self.os!r} is none of {sorted(OS_IMAGES)}")
        try:
            split_gcs_uri(self.results)
        except ValueError as exc:
            raise ValueError(
                f"results: {exc}; the VM copies the run there before it goes"
            ) from exc
        check_registry(self.image_registry)
        if self.disk_size_gb < 10:
            raise ValueError(
                f"disk_size_gb {self.disk_size_gb} is too small for zenml's "
                "images; give 10 or more (50 holds every built-in image)"
            )
        if self.max_run_hours <= 0:
            raise ValueError(f"max_run_hours {self.max_run_hours} must be positive")
        if not PurePosixPath(self.work_dir).is_absolute():
            raise ValueError(f"work_dir {self.work_dir!r} must be an absolute path")


def instance_name(pipeline: str, run_id: str) -> str:
    """The VM's name: from pipeline and run id, a valid, unique resource name."""
    return resource_name(pipeline, run_id)


def launcher_image(settings: ComputeSettings) -> str:
    local = f"{REPOSITORY_PREFIX}/gcp:{zenml.__version__}"
    return registry_image(local, settings.image_registry)


def step_images(spec: PipelineSpec, settings: ComputeSettings) -> dict[str, str]:
    """Every image the run pulls, as pushed name to local name."""
    local = [f"{REPOSITORY_PREFIX}/gcp:{zenml.__version__}"]
    local += [catalogue.image_reference(step) for step in spec.steps]
    return {registry_image(ref, settings.image_registry): ref for ref in local}


def pipeline_yaml(spec: PipelineSpec) -> str:
    """The spec as YAML for a file placed at the code root on the VM."""
    root = PurePosixPath(spec.code_root)
    data = spec.model_dump(mode="json")
    data["code_root"] = "."
    for step in data["steps"]:
        location, _, attribute = step["source"].rpartition(":")
        if not location.endswith(".py"):
            continue
        path = PurePosixPath(location)
        if not path.is_relative_to(root):
            raise ValueError(
                f"step {step['name']!r} comes from {location}, outside the code "
                f"root {spec.code_root}; only the code root travels to the VM, "
                "so move the file under it"
            )
        step["source"] = f"{path.relative_to(root)}:{attribute}"
    return yaml.safe_dump(data, sort_keys=False)


def code_archive(code_root: Path) -> bytes:
    """The code root as a gzipped tar; the same files always give the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(code_root.rglob("*")):
            relative = path.relative_to(code_root)
            if _SKIPPED & set(relative.parts) or path.suffix == ".pyc":
                continue
            if not path.is_file():
                continue
            info = archive.gettarinfo(str(path), arcname=relative.as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as handle:
                archive.addfile(info, handle)
    return gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)


def startup_script(
    settings: ComputeSettings, instance: str, images: Mapping[str, str]
) -> str:
    """The bash script the VM runs as root at boot."""
    work = settings.work_dir
    results = join_gcs(settings.results, instance)
    host = settings.image_registry.split("/", 1)[0]
    instance_url = (
        "https://compute.googleapis.com/compute/v1/projects/"
        f"{settings.project}/zones/{settings.zone}/instances/{instance}"
    )
    q = shlex.quote
    pulls = "\n".join(
        f"pull {q(pushed)} {q(local)}" for pushed, local in images.items()
    )
    install_docker = ""
    if settings.os == "debian":
        install_docker = (
            "if ! command -v docker >/dev/null; then\n"
            "  apt-get update -qq && apt-get install -y -qq docker.io\n"
            "fi\n"
        )
    return f"""#!/bin/bash
# zenml: runs one pipeline in zenml's gcp image, copies the run to
# {results}, then {"deletes" if settings.delete_when_done else "stops"} this VM.
set -euo pipefail

WORK={q(work)}
LAUNCHER={q(launcher_image(settings))}
RESULTS={q(results)}
INSTANCE_URL={q(instance_url)}
DELETE_WHEN_DONE={"yes" if settings.delete_when_done else "no"}
METADATA=http://metadata.google.internal/computeMetadata/v1/instance
# Container-Optimized OS keeps / read-only; Docker's login goes under $WORK.
export DOCKER_CONFIG="$WORK/.docker"

log() {{ echo "zenml: $*"; }}
metadata() {{ curl -sSf --retry 5 -H "Metadata-Flavor: Google" "$METADATA/$1"; }}
token() {{
  metadata service-accounts/default/token \\
    | sed -E 's/.*"access_token" *: *"([^"]+)".*/\\1/'
}}

finish() {{
  status=$?
  log "finished with status $status"
  if [ "$DELETE_WHEN_DONE" = yes ]; then
    log "deleting this VM"
    curl -sSf -X DELETE -H "Authorization: Bearer $(token)" "$INSTANCE_URL" \\
      >/dev/null || log "could not delete this VM; shutting it down instead"
  fi
  shutdown -h now
}}
trap finish EXIT

{install_docker}mkdir -p "$WORK/code" "$WORK/repo" "$DOCKER_CONFIG"
metadata attributes/{CODE_KEY} | base64 -d | tar -xzf - -C "$WORK/code"
metadata attributes/{PIPELINE_KEY} > "$WORK/code/{PIPELINE_FILE}"
# Steps run as the images' user; the run's files must be theirs.
chown -R {IMAGE_UID}:{IMAGE_UID} "$WORK"

token | docker login -u oauth2accesstoken --password-stdin {q("https://" + host)}
pull() {{ docker pull "$1" && docker tag "$1" "$2"; }}
{pulls}

log "running the pipeline"
run_status=0
docker run --rm --name zenml-launcher \\
  --group-add "$(stat -c %g /var/run/docker.sock)" \\
  -v /var/run/docker.sock:/var/run/docker.sock \\
  -v "$WORK:$WORK" -w "$WORK/repo" -e HOME=/tmp \\
  "$LAUNCHER" zenml pipeline run "$WORK/code/{PIPELINE_FILE}" \\
  --orchestrator docker || run_status=$?
echo "$run_status" > "$WORK/repo/exit-status"

log "copying the run to $RESULTS"
docker run --rm -v "$WORK:$WORK" -e HOME=/tmp "$LAUNCHER" \\
  python -m zenml.integrations.gcp.storage upload "$WORK/repo" "$RESULTS"
exit "$run_status"
"""


def instance_request(
    spec: PipelineSpec, run_id: str, settings: ComputeSettings
) -> compute_v1.InsertInstanceRequest:
    """The `instances.insert` request that runs `spec` on a fresh VM."""
    gpu_steps = [s.name for s in spec.steps if s.resources.gpus]
    if gpu_steps:
        raise ValueError(
            f"steps {gpu_steps} ask for GPUs, which this VM's Docker cannot hand "
            "to containers; run those steps on Vertex AI "
            "(zenml.integrations.gcp.vertex), or drop their gpus resource"
        )
    secret_names = set(spec.secrets).union(*(s.secrets for s in spec.steps))
    if secret_names:
        raise ValueError(
            f"the pipeline needs secrets {sorted(secret_names)}; instance metadata "
            "is readable by anyone who can view the VM, so zenml does not put "
            "them there; read them in the steps from Secret Manager instead"
        )

    name = instance_name(spec.name, run_id)
    code = base64.b64encode(code_archive(Path(spec.code_root))).decode("ascii")
    items = {
        "startup-script": startup_script(settings, name, step_images(spec, settings)),
        PIPELINE_KEY: pipeline_yaml(spec),
        CODE_KEY: code,
    }
    _check_metadata_size(items, spec.code_root)

    interface = compute_v1.NetworkInterface(network=settings.network)
    if settings.subnetwork:
        interface.subnetwork = settings.subnetwork
    if settings.external_ip:
        # The VM pulls images and reaches Google APIs over the internet.
        interface.access_configs = [
            compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")
        ]
    scheduling = compute_v1.Scheduling(
        provisioning_model="SPOT" if settings.spot else "STANDARD",
        # A restarted VM would run the pipeline again from the start.
        automatic_restart=False,
        on_host_maintenance="TERMINATE" if settings.spot else "MIGRATE",
        max_run_duration=compute_v1.Duration(
            seconds=round(settings.max_run_hours * 3600)
        ),
        instance_termination_action="DELETE",
    )
    instance = compute_v1.Instance(
        name=name,
        machine_type=f"zones/{settings.zone}/machineTypes/{settings.machine_type}",
        labels={
            **{k: gcp_label(v) for k, v in settings.labels.items()},
            "managed-by": "zenml",
            "zenml-pipeline": gcp_label(spec.name),
            "zenml-run": gcp_label(run_id),
        },
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=OS_IMAGES[settings.os],
                    disk_size_gb=settings.disk_size_gb,
                ),
            )
        ],
        network_interfaces=[interface],
        service_accounts=[
            compute_v1.ServiceAccount(
                email=settings.service_account, scopes=[CLOUD_PLATFORM_SCOPE]
            )
        ],
        metadata=compute_v1.Metadata(
            items=[compute_v1.Items(key=k, value=v) for k, v in items.items()]
        ),
        scheduling=scheduling,
    )
    return compute_v1.InsertInstanceRequest(
        project=settings.project, zone=settings.zone, instance_resource=instance
    )


def launch(
    request: compute_v1.InsertInstanceRequest,
    client: compute_v1.InstancesClient | None = None,
) -> Any:
    """Send the insert request; returns the operation without waiting for it."""
    client = client or compute_v1.InstancesClient()
    operation = client.insert(request=request)
    logger.info(
        "VM %s requested in %s; follow it with `gcloud compute instances "
        "get-serial-port-output %s --zone %s`",
        request.instance_resource.name,
        request.zone,
        request.instance_resource.name,
        request.zone,
    )
    return operation


def _check_metadata_size(items: Mapping[str, str], code_root: str) -> None:
    sizes = {key: len(value.encode()) for key, value in items.items()}
    if sizes[CODE_KEY] > METADATA_VALUE_LIMIT:
        raise ValueError(
            f"the code root {code_root} packs to {sizes[CODE_KEY] // 1024} KB, "
            f"over the {METADATA_VALUE_LIMIT // 1024} KB an instance metadata "
            "value holds; move data files out of it, or build the code into a "
            "custom image (`image:` on the steps)"
        )
    too_big = [k for k, size in sizes.items() if size > METADATA_VALUE_LIMIT]
    if too_big or sum(sizes.values()) > METADATA_TOTAL_LIMIT:
        raise ValueError(
            f"the VM's metadata ({sum(sizes.values()) // 1024} KB) exceeds what "
            f"Compute Engine takes ({METADATA_VALUE_LIMIT // 1024} KB a value, "
            f"{METADATA_TOTAL_LIMIT // 1024} KB in all); shrink the code root"
        )
