"""Where a Beam step's pipeline runs: a backend name and settings, as PipelineOptions.

A Beam step names its processing backend in its spec (`backend:`); this module
turns that name and the user's settings into the options Beam is given, and
refuses a setting that cannot work before anything is submitted:

- `direct` (default): in this process, on Beam's FnApiRunner.
- `portable`: a Beam job service (`job_endpoint`), with workers from a worker
  pool (`worker_pool`, EXTERNAL) or started as containers (DOCKER).
- `flink`, `spark`: the user's Flink or Spark job server, through the
  PortableRunner; workers as for `portable`.
- `dataflow`: Google Cloud Dataflow, with zenml's gcp image as the SDK container.
- `dask`: refused; see `DASK_REFUSAL`.

A DOCKER environment or a Dataflow SDK container must start Beam's boot
program (`/opt/apache/beam/boot`) as its entrypoint, as Beam's own SDK images
do; an image that starts anything else never becomes a worker.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import zenml
from zenml.images.spec import REPOSITORY_PREFIX
from zenml.integrations.gcp.registry import registry_image
from zenml.integrations.gcp.storage import join_gcs, split_gcs_uri

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

logger = logging.getLogger(__name__)

DEFAULT_BACKEND = "direct"
BACKENDS = ("direct", "portable", "flink", "spark", "dataflow", "dask")
ENVIRONMENTS = ("external", "docker", "loopback")

DASK_REFUSAL = (
    "zenml does not run Beam on Dask: Beam's Dask runner (Beam 2.77) silently "
    "drops what a transform emits when it finishes a bundle, so file sinks "
    "write empty files and batching transforms lose elements, and it runs "
    "only one branch of a pipeline that has several. Use `portable` with "
    "worker containers, or `flink` / `spark` with your cluster's job server, "
    "instead."
)

_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class BeamSettings:
    """Everything a backend may need; each backend reads only its own fields.

    Args:
        job_endpoint: `host:port` of a Beam job service or Flink/Spark job server.
        environment: how workers start on a portable backend: `external`
            (a worker pool at `worker_pool`), `docker` (`worker_image`
            containers) or `loopback` (in the submitting process; local only).
        worker_pool: `host:port` of `python -m
            apache_beam.runners.worker.worker_pool_main`.
        worker_image: the DOCKER environment's image; zenml's base image by
            default, from `image_registry` when one is set.
        parallelism: workers of the direct runner, or SDK workers per portable
            worker.
        project, region, temp_location, staging_location, service_account,
            experiments, job_name: Dataflow's settings; the locations are
            gs:// URIs, staging defaulting to `<temp_location>/staging`.
        image_registry: where zenml's images were pushed, e.g.
            `europe-docker.pkg.dev/PROJECT/REPO`.
        sdk_container_image: Dataflow's SDK image; by default zenml's
            gcp-dataflow image (the gcp image with Beam's boot entrypoint) from
            `image_registry`.
        extra: further Beam options by name, passed unchanged; they win.
    """

    job_endpoint: str | None = None
    environment: str | None = None
    worker_pool: str | None = None
    worker_image: str | None = None
    parallelism: int | None = None
    project: str | None = None
    region: str | None = None
    temp_location: str | None = None
    staging_location: str | None = None
    service_account: str | None = None
    image_registry: str | None = None
    sdk_container_image: str | None = None
    experiments: tuple[str, ...] = ()
    job_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.environment is not None and self.environment not in ENVIRONMENTS:
            raise ValueError(
                f"environment {self.environment!r} is none of {list(ENVIRONMENTS)}"
            )
        if self.parallelism is not None and self.parallelism < 1:
            raise ValueError(f"parallelism {self.parallelism} must be 1 or more")
        for name in ("job_endpoint", "worker_pool"):
            value = getattr(self, name)
            if value is not None and not _ADDRESS.match(value):
                raise ValueError(
                    f"{name} {value!r} is not an address; give it as HOST:PORT, "
                    "e.g. localhost:8099"
                )
        if isinstance(self.experiments, str):
            raise ValueError(
                "experiments is a list of names, e.g. ('use_runner_v2',), "
                "not one string"
            )

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> BeamSettings:
        """Settings from keyword arguments, naming any that do not exist."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(
                f"unknown Beam settings {unknown}; the settings are "
                f"{sorted(known)}, and `extra` passes any other Beam option"
            )
        values = dict(settings)
        if "experiments" in values and not isinstance(values["experiments"], str):
            values["experiments"] = tuple(values["experiments"])
        return cls(**values)


def beam_options(backend: str | None = None, **settings: Any) -> PipelineOptions:
    """The PipelineOptions of `backend` with `settings`; validated, not submitted."""
    return options_for(backend, BeamSettings.parse(settings))


def options_from_environment(
    environ: Mapping[str, str] | None = None,
) -> PipelineOptions:
    """The options of the backend the orchestrator chose for this step.

    The local Docker orchestrator names the backend and, for `portable`, the
    job service and worker pool it started, in environment variables; a step
    run anywhere else gets the in-process runner.
    """
    from zenml.integrations.beam.cluster import (
        BACKEND_ENV,
        JOB_ENDPOINT_ENV,
        WORKER_POOL_ENV,
    )

    environ = os.environ if environ is None else environ
    settings = {
        key: environ[variable]
        for key, variable in (
            ("job_endpoint", JOB_ENDPOINT_ENV),
            ("worker_pool", WORKER_POOL_ENV),
        )
        if environ.get(variable)
    }
    return beam_options(environ.get(BACKEND_ENV) or DEFAULT_BACKEND, **settings)


def check_backend(backend: str | None) -> None:
    """Refuse, before anything runs, a backend zenml does not offer."""
    if backend is None:
        return
    name = backend.lower()
    if name == "dask":
        raise ValueError(DASK_REFUSAL)
    if name not in BACKENDS:
        raise ValueError(
            f"unknown processing backend {backend!r}; use one of "
            f"{[b for b in BACKENDS if b != 'dask']}"
        )


def options_for(backend: str | None, settings: BeamSettings) -> PipelineOptions:
    """The PipelineOptions of `backend` (default `direct`) with typed settings."""
    from apache_beam.options.pipeline_options import PipelineOptions

    name = (backend or DEFAULT_BACKEND).lower()
    if name == "dask":
        raise ValueError(DASK_REFUSAL)
    builders = {
        "direct": _direct,
        "portable": _portable,
        "flink": _portable,
        "spark": _portable,
        "dataflow": _dataflow,
    }
    if name not in builders:
        raise ValueError(
            f"unknown Beam backend {backend!r}; use one of "
            f"{[b for b in BACKENDS if b != 'dask']}"
        )
    values = builders[name](name, settings)
    values.update(settings.extra)
    logger.debug("Beam backend %s: %s", name, values)
    # Explicit empty flags: Beam would otherwise parse this process's argv.
    return PipelineOptions(flags=[], **values)


def _direct(name: str, settings: BeamSettings) -> dict[str, Any]:
    # Not "DirectRunner": in Beam 2.77 it first tries Prism, a separate Go
    # program it downloads from GitHub at run time, and falls back to this.
    values: dict[str, Any] = {"runner": "FnApiRunner"}
    if settings.parallelism and settings.parallelism > 1:
        values["direct_num_workers"] = settings.parallelism
        values["direct_running_mode"] = "multi_processing"
    else:
        values["direct_running_mode"] = "in_memory"
    return values


def _portable(name: str, settings: BeamSettings) -> dict[str, Any]:
    if settings.job_endpoint is None:
        servers = {
            "portable": "a Beam job service (`python -m "
            "apache_beam.runners.portability.local_job_service_main --port 8099`)",
            "flink": "your Flink cluster's Beam job server",
            "spark": "your Spark cluster's Beam job server",
        }
        raise ValueError(
            f"backend {name!r} needs job_endpoint: set it to the HOST:PORT of "
            f"{servers[name]}"
        )
    values: dict[str, Any] = {
        "runner": "PortableRunner",
        "job_endpoint": settings.job_endpoint,
    }

    environment = settings.environment or (
        "external" if settings.worker_pool else "docker"
    )
    if environment == "external":
        if settings.worker_pool is None:
            raise ValueError(
                "an external environment needs worker_pool: set it to the "
                "HOST:PORT of `python -m apache_beam.runners.worker."
                "worker_pool_main --service_port PORT`, or choose "
                "environment='docker'"
            )
        values["environment_type"] = "EXTERNAL"
        values["environment_config"] = settings.worker_pool
    elif environment == "docker":
        values["environment_type"] = "DOCKER"
        values["environment_config"] = settings.worker_image or _zenml_image(
            "base", settings.image_registry
        )
    else:
        if name != "portable":
            raise ValueError(
                f"a loopback environment runs workers in this process, which a "
                f"{name} cluster cannot reach; use environment='external' or "
                "'docker'"
            )
        values["environment_type"] = "LOOPBACK"
    if settings.parallelism:
        values["sdk_worker_parallelism"] = settings.parallelism
    return values


def _dataflow(name: str, settings: BeamSettings) -> dict[str, Any]:
    missing = [
        label
        for label, value in (
            ("project (the Google Cloud project id)", settings.project),
            ("region (e.g. europe-west1)", settings.region),
            ("temp_location (gs://BUCKET/tmp)", settings.temp_location),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"backend 'dataflow' needs {', '.join(missing)}; set them")
    temp = _gcs_location("temp_location", settings.temp_location or "")
    staging = _gcs_location(
        "staging_location", settings.staging_location or join_gcs(temp, "staging")
    )
    image = settings.sdk_container_image
    if image is None:
        if settings.image_registry is None:
            raise ValueError(
                "backend 'dataflow' pulls its workers' image from a registry: "
                "set image_registry to where zenml's images were pushed "
                "(e.g. europe-docker.pkg.dev/PROJECT/REPO), or sdk_container_image"
            )
        image = _zenml_image("gcp-dataflow", settings.image_registry)
    if settings.job_name is not None and not _JOB_NAME.match(settings.job_name):
        raise ValueError(
            f"job_name {settings.job_name!r} is not a Dataflow job name; use "
            "lowercase letters, digits and '-', starting with a letter"
        )

    values: dict[str, Any] = {
        "runner": "DataflowRunner",
        "project": settings.project,
        "region": settings.region,
        "temp_location": temp,
        "staging_location": staging,
        "sdk_container_image": image,
        # The image holds Beam already; staging another copy would only differ.
        "sdk_location": "container",
    }
    if settings.service_account:
        values["service_account_email"] = settings.service_account
    if settings.experiments:
        values["experiments"] = list(settings.experiments)
    if settings.job_name:
        values["job_name"] = settings.job_name
    if settings.parallelism:
        values["sdk_worker_parallelism"] = settings.parallelism
    return values


def _gcs_location(name: str, uri: str) -> str:
    try:
        split_gcs_uri(uri)
    except ValueError as exc:
        raise ValueError(
            f"{name}: {exc}; Dataflow reads it from Cloud Storage"
        ) from exc
    return uri.rstrip("/")


def _zenml_image(integration: str, registry: str | None) -> str:
    local = f"{REPOSITORY_PREFIX}/{integration}:{zenml.__version__}"
    return registry_image(local, registry) if registry else local
