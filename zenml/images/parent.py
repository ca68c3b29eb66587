"""A Python 3.11 parent image made from Debian's archive, without any registry.

Where `python:3.11-slim` cannot be pulled, debootstrap installs a minimal
Debian with Python 3.11 into a folder, which is imported as an image. It needs
root and the `debootstrap` package on the host.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker

from zenml.exceptions import ZenMLError

PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# Left out of the image: they only cost space.
_PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
)


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
