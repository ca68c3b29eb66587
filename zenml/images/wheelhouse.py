"""Locks and wheelhouses: what an image installs, fixed on the host.

The host resolves each image's requirements once, together with everything
its parent already holds, and writes the result as a lock. The host's pip
(with its own index, proxy and CA settings) then fills a wheelhouse with
exactly those versions. A build installs from it over the loopback interface
of a server container that has no other network, so the build runs with the
network cut off and no credentials end up in any layer.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.models.containers import Container

from zenml.exceptions import ImageBuildError
from zenml.images.spec import ImageSpec, source_root

logger = logging.getLogger(__name__)

SERVER_PORT = 8000

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

    With `report`, pip is quiet and its JSON installation report is the
    standard output. Without, its output keeps the reasons of a failed
    resolution, which `conflict_causes` picks out. pip's notices about index
    folders of the host's configuration that do not exist are left out.
    """
    command = [*pip_command(), "install", "--dry-run", "--ignore-installed"]
    if report:
        command += ["--quiet", "--report", "-"]
    constraints = cpu_constraints()
    if constraints is not None:
        command += ["-c", str(constraints)]
    done = subprocess.run([*command, *arguments], capture_output=True, text=True)
    done.stdout, done.stderr = (
        _without_notices(done.stdout),
        _without_notices(done.stderr),
    )
    return done


def _without_notices(text: str) -> str:
    return "".join(
        line
        for line in text.splitlines(keepends=True)
        if not line.startswith("WARNING: Location ")
    )


def conflict_causes(output: str) -> list[str]:
    """The lines of pip's 'The conflict is caused by:' block, stripped."""
    lines = output.splitlines()
    start = next(
        (n for n, line in enumerate(lines) if "conflict is caused by" in line), None
    )
    if start is None:
        return []
    causes = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.lstrip().startswith(("To fix", "Additionally")):
            break
        causes.append(line.strip())
    return causes


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


@dataclass(frozen=True)
class Served:
    """Where a build finds the wheelhouse, and the network its steps get."""

    url: str
    network_mode: str


@contextmanager
def serve(
    client: docker.DockerClient, wheelhouse: Path, image: str
) -> Iterator[Served]:
    """Serve `wheelhouse` to a build that has no network at all.

    A container of `image` (any image with `python3`) serves the folder on its
    loopback interface and has no other network. The build's steps join that
    container's network namespace, so they reach the wheels at 127.0.0.1 and
    nothing else: a build that tries the internet fails instead of quietly
    using it.
    """
    server = client.containers.run(
        image,
        [
            "python3",
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            "/wheelhouse",
            str(SERVER_PORT),
        ],
        detach=True,
        network_mode="none",
        volumes={str(wheelhouse.resolve()): {"bind": "/wheelhouse", "mode": "ro"}},
        labels={"org.zenml.role": "wheelhouse"},
        user=f"{os.getuid()}:{os.getgid()}",
        init=True,
    )
    try:
        _wait_until_serving(server)
        yield Served(
            url=f"http://127.0.0.1:{SERVER_PORT}/",
            network_mode=f"container:{server.id}",
        )
    finally:
        server.remove(force=True)


def _wait_until_serving(server: Container, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.reload()
        if server.status == "exited":
            break
        if b"Serving HTTP" in server.logs():
            return
        time.sleep(0.1)
    raise ImageBuildError(
        f"the wheelhouse server in {server.image.tags or server.image.id} did not "
        f"start:\n{server.logs().decode(errors='replace').strip()}\nThe image that "
        "serves the wheelhouse needs `python3` on its PATH.",
        image="",
    )
