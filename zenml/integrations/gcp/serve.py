"""The serving container's command on Vertex AI: fetch the model, then serve it.

Vertex AI copies a Model's artifacts to its own bucket and names that copy in
`AIP_STORAGE_URI`; it sends requests to the port in `AIP_HTTP_PORT`. The model
server reads local folders only, so the bundle is copied in first.

    python -m zenml.integrations.gcp.serve
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zenml.integrations.gcp.storage import download_folder

logger = logging.getLogger(__name__)

STORAGE_ENV = "AIP_STORAGE_URI"
PORT_ENV = "AIP_HTTP_PORT"
DEFAULT_PORT = 8080

Server = Callable[[Path, str, int], None]


def fetch_and_serve(
    environ: dict[str, str] | None = None,
    *,
    storage_client: Any | None = None,
    server: Server | None = None,
) -> None:
    """Copy the bundle Vertex AI names into a local folder and serve it."""
    env = dict(os.environ if environ is None else environ)
    uri = env.get(STORAGE_ENV)
    if not uri:
        raise ValueError(
            f"{STORAGE_ENV} is not set; Vertex AI sets it from the Model's "
            "artifact_uri, so upload the model with one (the bundle's gs:// folder)"
        )
    port = int(env.get(PORT_ENV, DEFAULT_PORT))
    bundle = Path(tempfile.mkdtemp(prefix="zenml-model-"))
    download_folder(uri, bundle, client=storage_client)
    if server is None:
        from zenml.integrations.cortex.server import run

        server = run
    logger.info("Serving %s on port %d", uri, port)
    server(bundle, "0.0.0.0", port)


def main() -> int:
    logging.basicConfig(level=logging.INFO)
    try:
        fetch_and_serve()
    except (ValueError, FileNotFoundError) as exc:
        print(f"zenml: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
