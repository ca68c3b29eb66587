"""Locks and wheelhouses: what an image installs, fixed on the host.

The host resolves each image's requirements once, together with everything
its parent already holds, and writes the result as a lock. The host's pip
(with its own index, proxy and CA settings) then fills a wheelhouse with
exactly those versions, and the build installs from it over loopback, so the
build itself needs no network and no credentials end up in any layer.
"""

from __future__ import annotations

import functools
import http.server
import json
import logging
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from zenml.exceptions import ImageBuildError
from zenml.images.spec import ImageSpec, source_root

logger = logging.getLogger(__name__)

LOCK_HEADER = (
    "# Resolved by `zenml image lock` for Python {python}; do not edit by hand.\n"
    "# Every version the image holds, its parent's included.\n"
)


def pip_command() -> list[str]:
    return [sys.executable, "-m", "pip"]


def resolve(spec: ImageSpec, parent_lock: Path | None) -> str:
    """Resolve the image's requirements on the host; returns the lock's text."""
    root = source_root()
    assert root is not None
    requirement = f"zenml[{spec.extra}] @ {root.as_uri()}" if spec.extra else str(root)
    arguments = [requirement]
    if spec.requirements_path.is_file():
        arguments += ["-r", str(spec.requirements_path)]
    if parent_lock is not None:
        # The parent's exact pins are requirements of the child too: what a
        # lower layer installed is part of the image and may not move.
        arguments += ["-r", str(parent_lock)]
    logger.debug("resolving %s: %s", spec.name, arguments)
    done = dry_run(arguments, report=True)
    if done.returncode != 0:
        raise ImageBuildError(
            f"the requirements of image {spec.name!r} do not resolve together "
            f"with what its parent holds:\n{done.stderr.strip()}",
            image=spec.name,
            build_log=done.stderr,
        )
    return lock_text(done.stdout)


def dry_run(
    arguments: list[str], *, report: bool = False
) -> subprocess.CompletedProcess[str]:
    """Ask the host's pip to resolve `arguments`, installing nothing.

    With `report`, pip's JSON installation report is the standard output.
    """
    command = [*pip_command(), "install", "--dry-run", "--ignore-installed", "--quiet"]
    if report:
        command += ["--report", "-"]
    constraints = cpu_constraints()
    if constraints is not None:
        command += ["-c", str(constraints)]
    return subprocess.run([*command, *arguments], capture_output=True, text=True)


def cpu_constraints() -> Path | None:
    """`images/constraints.txt`: what every CPU image takes when pulled in."""
    root = source_root()
    path = root / "images" / "constraints.txt" if root is not None else None
    return path if path is not None and path.is_file() else None


def lock_text(report: str) -> str:
    """A lock from pip's JSON installation report: exact pins, sha256 noted."""
    lines = []
    items = json.loads(report)["install"]
    for item in sorted(items, key=lambda i: i["metadata"]["name"].lower()):
        name = item["metadata"]["name"]
        if name.lower() == "zenml":
            continue
        hashes = item["download_info"].get("archive_info", {}).get("hashes", {})
        line = f"{name}=={item['metadata']['version']}"
        if "sha256" in hashes:
            line += f"  # sha256:{hashes['sha256']}"
        lines.append(line)
    python = ".".join(map(str, sys.version_info[:2]))
    return LOCK_HEADER.format(python=python) + "\n".join(lines) + "\n"


def default_wheelhouse() -> Path:
    """`.zenml/wheelhouse` of the checkout (or of the current folder)."""
    root = source_root()
    return (root if root is not None else Path.cwd()) / ".zenml" / "wheelhouse"


def pins(lock: Path) -> list[str]:
    """The `name==version` lines of a lock, without hashes or comments."""
    found = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "--")):
            found.append(line.split()[0])
    return found


def fill(wheelhouse: Path, locks: list[Path]) -> None:
    """Put a wheel for every pin of `locks`, and one of zenml, in `wheelhouse`."""
    root = source_root()
    assert root is not None
    wheelhouse.mkdir(parents=True, exist_ok=True)
    wanted = sorted({pin for lock in locks for pin in pins(lock)})
    pip_wheel = [
        *pip_command(),
        "wheel",
        "--no-deps",
        "--quiet",
        "--wheel-dir",
        str(wheelhouse),
    ]
    with tempfile.TemporaryDirectory(prefix="zenml-pins-") as folder:
        requirements = Path(folder) / "requirements.txt"
        requirements.write_text("\n".join(wanted) + "\n", encoding="utf-8")
        _run(
            [*pip_wheel, "--find-links", str(wheelhouse), "-r", str(requirements)],
            "fill the wheelhouse",
        )
    for old in wheelhouse.glob("zenml-*.whl"):
        old.unlink()
    _run([*pip_wheel, str(root)], "build zenml's wheel")


def _run(command: list[str], what: str) -> None:
    logger.debug("running %s", command)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageBuildError(
            f"pip could not {what}:\n{done.stderr.strip()}\nCheck the host's "
            "pip configuration (index, proxy, CA bundle): the host's pip fetches "
            "every package the images install",
            image="",
            build_log=done.stderr,
        )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        logger.debug("wheelhouse: " + format, *args)


@contextmanager
def serve(wheelhouse: Path) -> Iterator[str]:
    """Serve `wheelhouse` on loopback for the duration; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(wheelhouse))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
