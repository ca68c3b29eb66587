"""The base image's parent: checked before a build, or made without a registry.

The parent must be a glibc-based image with Python 3.11 and its venv module,
since the host fills the wheelhouse with manylinux wheels for Python 3.11.
Where `python:3.11-slim` cannot be pulled, debootstrap installs a minimal
Debian with Python 3.11 into a folder, which is imported as an image. It needs
root and the `debootstrap` package on the host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from zenml.exceptions import ImageBuildError, ZenMLError

PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# Left out of the image: they only cost space.
_PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
)


# What the parent is asked: its Python, its venv module and its C library.
_PROBE = (
    "import json, platform, sys, importlib.util as u; "
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], "
    "'venv': bool(u.find_spec('venv') and u.find_spec('ensurepip')), "
    "'libc': platform.libc_ver()[0]}))"
)
_REMEDY = (
    "Name a Debian-like parent with Python {python} and its venv module "
    "(--parent or ZENML_PARENT_IMAGE), or make one without any registry with "
    "`zenml image parent`."
)


def check_parent(client: docker.DockerClient, image: str) -> None:
    """Refuse a parent the base image cannot be built on, saying why."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    remedy = _REMEDY.format(python=python)
    # Created and started apart, so that a parent whose python3 cannot even
    # start leaves no container behind.
    try:
        probe = client.containers.create(
            image, entrypoint=["python3", "-c", _PROBE], network_disabled=True
        )
    except docker.errors.APIError as exc:
        raise ImageBuildError(
            f"the parent {image} cannot be used: {exc.explanation or exc}\n{remedy}",
            image=image,
        ) from exc
    try:
        probe.start()
        status = probe.wait()["StatusCode"]
        output = probe.logs(stdout=True, stderr=False)
        errors = probe.logs(stdout=False, stderr=True)
    except docker.errors.APIError as exc:
        raise ImageBuildError(
            f"the parent {image} has no working python3: "
            f"{exc.explanation or exc}\n{remedy}",
            image=image,
        ) from exc
    finally:
        probe.remove(force=True)
    if status != 0:
        raise ImageBuildError(
            f"the parent {image} has no working python3 (exit code {status}): "
            f"{errors.decode(errors='replace').strip()}\n{remedy}",
            image=image,
        )
    found = json.loads(bytes(output).decode().strip().splitlines()[-1])
    problems = parent_problems(found, python)
    if problems:
        raise ImageBuildError(
            f"the parent {image} cannot hold zenml's base image: "
            + "; ".join(problems)
            + ".\n"
            + remedy,
            image=image,
        )


def parent_problems(found: dict[str, object], python: str) -> list[str]:
    """What a parent's probe answer lacks; empty when it will do."""
    problems = []
    if found.get("python") != python:
        problems.append(
            f"it has Python {found.get('python')}, and the locks and the "
            f"wheelhouse are for Python {python}"
        )
    if not found.get("venv"):
        problems.append(
            "its Python has no venv module with ensurepip (on Debian: "
            f"apt-get install python{python}-venv)"
        )
    if found.get("libc") != "glibc":
        problems.append(
            f"its C library is {found.get('libc') or 'not glibc'} (musl, as on "
            "Alpine, say), and the host fills the wheelhouse with manylinux "
            "wheels, which need glibc"
        )
    return problems


def make_parent(
    client: docker.DockerClient,
    *,
    tag: str = "zenml/python:3.11-bookworm",
    suite: str = "bookworm",
    printer: Callable[[str], None] = print,
) -> str:
    """Debootstrap `suite` with Python and import it as `tag`; returns its id."""
    if shutil.which("debootstrap") is None:
        raise ZenMLError(
            "debootstrap is not installed; install it (`apt-get install -y "
            "debootstrap`) and run this as root"
        )
    with tempfile.TemporaryDirectory(prefix="zenml-parent-") as work:
        root = Path(work) / "root"
        printer(f"debootstrap {suite} with {PACKAGES} (about a minute)")
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={PACKAGES}",
                suite,
                str(root),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise ZenMLError(f"debootstrap failed (are you root?):\n{tail}")
        for relative in _PRUNE:
            target = root / relative
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir(parents=True)
        archive = Path(work) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        repository, _, label = tag.rpartition(":")
        client.api.import_image(
            src=str(archive),
            repository=repository,
            tag=label,
            changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'],
        )
    image = client.images.get(tag)
    printer(f"imported {tag} ({image.attrs.get('Size', 0) / 1e6:.0f} MB)")
    return str(image.id)
