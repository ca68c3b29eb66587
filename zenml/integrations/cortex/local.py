"""Serve a model bundle on localhost for a moment and ask it one question.

This is what a deploy step does on the local stack: the same server the
serving image runs for Cortex, bound to loopback inside the step's container,
probed the way Cortex probes it, then sent one request.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn

from zenml.integrations.cortex.server import create_app

READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def post_json(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.load(response)
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.load(exc)


def serve_and_predict(bundle: Path, instance: Any, port: int | None = None) -> Any:
    """Start the server, wait for /readyz, POST `instance` to /predict, stop."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(bundle), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while _get(f"{base}/readyz") != 200:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the model server on {base} never became ready")
            time.sleep(0.1)
        print(f"model server ready on {base} (healthz {_get(f'{base}/healthz')})")
        status, answer = post_json(f"{base}/predict", instance)
        if status != 200:
            raise RuntimeError(f"the model server answered {status}: {answer}")
        return answer
    finally:
        server.should_exit = True
        thread.join(timeout=10)
