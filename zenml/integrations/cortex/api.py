"""The Cortex RealtimeAPI that deploys zenml's serving image, and its deployment.

`cortex_api_spec` describes an API whose one container runs the cortex image's
model server with the model's location, compute requests and probes;
`deploy` hands a written spec to the Cortex CLI. The CLI is no dependency of
zenml's: the `cortex` package on PyPI downloads its binary while installing,
and Cortex Labs no longer maintains the project. Nothing here needs the
serving libraries, so a launching machine with zenml's core can write and
deploy a spec.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from zenml.exceptions import ZenMLError

MODEL_URI_ENV = "ZENML_MODEL_URI"
DEFAULT_PORT = 8080
CLI = "cortex"

_API_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def cortex_api_spec(
    name: str,
    image: str,
    model_uri: str,
    *,
    cpu: str = "1",
    mem: str = "1Gi",
    gpu: int = 0,
    port: int = DEFAULT_PORT,
) -> list[dict[str, Any]]:
    """Return the Cortex RealtimeAPI spec that runs zenml's model server in ``image``.

    ``model_uri`` is the bundle's path inside the container, for example a mounted
    volume; it reaches the server as ``ZENML_MODEL_URI``.
    """
    if not _API_NAME.match(name):
        raise ValueError(
            f"Cortex API name {name!r} must be lowercase letters, digits and '-', "
            "start with a letter and be at most 63 characters."
        )
    compute: dict[str, Any] = {"cpu": cpu, "mem": mem}
    if gpu:
        compute["gpu"] = gpu
    container = {
        "name": "api",
        "image": image,
        "command": [
            "python",
            "-m",
            "zenml.integrations.cortex.server",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ],
        "env": {MODEL_URI_ENV: model_uri},
        "compute": compute,
        "readiness_probe": {"http_get": {"path": "/readyz", "port": port}},
        "liveness_probe": {"http_get": {"path": "/healthz", "port": port}},
    }
    return [
        {
            "name": name,
            "kind": "RealtimeAPI",
            "pod": {"containers": [container], "port": port},
        }
    ]


def write_cortex_api_spec(
    path: str | os.PathLike[str],
    name: str,
    image: str,
    model_uri: str,
    **compute: Any,
) -> Path:
    """Write :func:`cortex_api_spec` as YAML to ``path``, for ``cortex deploy``."""
    import yaml

    spec = cortex_api_spec(name, image, model_uri, **compute)
    target = Path(path)
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def deploy(
    spec_path: str | os.PathLike[str], *, env: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Deploy a written spec with the Cortex CLI (`cortex deploy SPEC --yes`).

    `env` names the Cortex environment (the cluster) to deploy to; without it,
    the CLI's default environment.
    """
    spec = Path(spec_path)
    if not spec.is_file():
        raise ZenMLError(
            f"no Cortex API spec at {spec}; write one with write_cortex_api_spec"
        )
    cli = shutil.which(CLI)
    if cli is None:
        raise ZenMLError(
            f"the Cortex CLI (`{CLI}`) is not on the PATH, so {spec} was written "
            "but not deployed. Install the CLI of your Cortex cluster's version "
            "(`pip install cortex==VERSION` downloads it while installing, which "
            "needs the internet) and run "
            f"`cortex deploy {spec}{f' --env {env}' if env else ''}`, or apply "
            "the spec with your cluster's own tooling"
        )
    command = [cli, "deploy", str(spec), "--yes"]
    if env is not None:
        command += ["--env", env]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ZenMLError(
            f"`{' '.join(command)}` failed with exit code {done.returncode}:\n"
            f"{(done.stderr or done.stdout).strip()}"
        )
    return done
