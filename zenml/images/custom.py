"""Images of your own, FROM one of zenml's, built with every check zenml's get.

A custom image is a Dockerfile whose parent is a zenml image and, beside it,
an optional `requirements.txt`. Before anything is built, the requirements are
resolved on the host together with everything the parent holds, so a clash is
reported at once, naming both requirement lines. The build installs from the
host's wheelhouse, and the image must pass the self-test and a smoke pipeline
before it keeps its tag.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

import zenml
from zenml.exceptions import ImageBuildError
from zenml.images import wheelhouse
from zenml.images.builder import ImageBuilder
from zenml.images.catalogue import LOCK_LABEL
from zenml.images.spec import ImageSpec

logger = logging.getLogger(__name__)

REQUIREMENTS = "requirements.txt"
_FROM_ZENML = re.compile(r"zenml/([a-z0-9_-]+)")
_USER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_ARG = re.compile(r"^\s*ARG\s+(\w+)", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class CustomImage:
    """A user's Dockerfile, the zenml image it builds FROM, and its tag."""

    dockerfile: Path
    tag: str
    parent: str
    user: str | None = None

    @property
    def context(self) -> Path:
        return self.dockerfile.parent

    @property
    def requirements(self) -> Path | None:
        path = self.context / REQUIREMENTS
        return path if path.is_file() else None

    @classmethod
    def from_dockerfile(
        cls,
        dockerfile: Path,
        tag: str,
        parent: str | None = None,
        user: str | None = None,
    ) -> CustomImage:
        """Read which zenml image the Dockerfile builds FROM, unless given."""
        if not dockerfile.is_file():
            raise ImageBuildError(f"Dockerfile {dockerfile} does not exist", image=tag)
        if parent is None:
            text = dockerfile.read_text(encoding="utf-8")
            found = _FROM_ZENML.search(text)
            if found is None:
                raise ImageBuildError(
                    f"{dockerfile} does not build FROM a zenml image; start it "
                    "with `ARG BASE=zenml/base:VERSION` and `FROM ${BASE}`, or "
                    "name the parent with --from",
                    image=tag,
                )
            parent = found.group(1)
        return cls(dockerfile.resolve(), tag, parent, user)


def build_custom(builder: ImageBuilder, image: CustomImage) -> str:
    """Check, build, self-test and smoke-test `image`; returns its image id."""
    client = builder.client
    parent_spec = builder.specs.get(image.parent)
    if parent_spec is None:
        raise ImageBuildError(
            f"{image.dockerfile} builds FROM zenml/{image.parent}, which zenml "
            f"does not build; use one of {sorted(builder.specs)}",
            image=image.tag,
        )
    parent = builder.find(image.parent)
    if parent is None:
        raise ImageBuildError(
            f"the parent image zenml/{image.parent} is not built for this zenml; "
            f"build it first with `zenml image build {image.parent}`",
            image=image.tag,
        )
    if image.user is not None and not _USER.match(image.user):
        raise ImageBuildError(
            f"user name {image.user!r} is not valid; use lower-case letters, "
            "digits, _ and -, starting with a letter",
            image=image.tag,
        )

    lock = _resolve(builder, image, parent_spec, parent.tag)
    builder.printer(f"Building {image.tag} FROM {parent.tag}")
    wheels = builder.wheelhouse_dir or wheelhouse.default_wheelhouse()
    wheelhouse.fill(wheels, [lock])
    spec = ImageSpec(
        name=image.tag, context=image.context, dockerfile=image.dockerfile.name
    )
    # Only the arguments the Dockerfile declares, so Docker has none to warn of.
    declared = set(_ARG.findall(image.dockerfile.read_text(encoding="utf-8")))
    with wheelhouse.serve(client, wheels, parent.tag) as served:
        offered = {
            "BASE": parent.tag,
            "ZENML_VERSION": zenml.__version__,
            "WHEELS": served.url,
        }
        builder.stream_build(
            spec,
            image.tag,
            {key: value for key, value in offered.items() if key in declared},
            labels={
                "org.zenml.integration": f"custom:{image.parent}",
                "org.opencontainers.image.version": zenml.__version__,
                LOCK_LABEL: hashlib.sha256(lock.read_bytes()).hexdigest(),
            },
            network_mode=served.network_mode,
        )
    try:
        if image.user is not None:
            _run_as(builder, image)
        builder.self_test(image.tag, image.tag, custom=True)
        builder.smoke_test(image.tag, image.tag)
    except ImageBuildError:
        client.images.remove(image.tag, force=True)
        raise
    built = client.images.get(image.tag)
    builder.printer(f"Built {image.tag}: {built.attrs.get('Size', 0) / 1e6:.0f} MB")
    builder.printer(f"  largest packages: {builder.largest_packages(image.tag)}")
    return str(built.id)


def _resolve(
    builder: ImageBuilder, image: CustomImage, parent: ImageSpec, parent_tag: str
) -> Path:
    """The image's full lock: the parent's pins and the requirements, resolved."""
    lock = Path(tempfile.mkdtemp(prefix="zenml-custom-")) / "requirements.lock"
    if image.requirements is None:
        lock.write_text(parent.lock_path.read_text(encoding="utf-8"))
        return lock
    done = wheelhouse.dry_run(
        ["-r", str(parent.lock_path), "-r", str(image.requirements)], report=True
    )
    if done.returncode != 0:
        why = _explain(builder, parent_tag, image.requirements)
        raise ImageBuildError(
            f"{image.requirements} cannot be installed in zenml/{parent.name}: "
            "its requirements clash with what the parent holds. pip says:\n"
            f"{done.stderr.strip()}\n{why}\nNothing was built. Drop or relax one "
            "of the clashing requirements, or put the steps that need them in "
            "separate images (one image per integration).",
            image=image.tag,
            build_log=done.stderr,
        )
    lock.write_text(wheelhouse.lock_text(done.stdout), encoding="utf-8")
    return lock


def _explain(builder: ImageBuilder, parent_tag: str, requirements: Path) -> str:
    """Who asks for what: both ranges of each clash, and the versions found.

    Against the parent's exact pins pip can only say that versions differ. So
    the requirements are resolved on their own, and the parent image compares
    that resolution with what it holds, reading the ranges its dists declare.
    """
    alone = wheelhouse.dry_run(["-r", str(requirements)], report=True)
    if alone.returncode != 0:
        return ""
    with tempfile.TemporaryDirectory(prefix="zenml-clash-") as folder:
        report = Path(folder) / "report.json"
        report.write_text(alone.stdout, encoding="utf-8")
        # Readable by the image's own user.
        Path(folder).chmod(0o755)
        report.chmod(0o644)
        try:
            output = builder.client.containers.run(
                parent_tag,
                entrypoint=["python", "-m", "zenml.images.selftest"],
                command=["--clashes", "/clash/report.json"],
                volumes={folder: {"bind": "/clash", "mode": "ro"}},
                network_mode="none",
                remove=True,
            )
        except docker.errors.DockerException as exc:
            # pip's own message still stands; only the details are missing.
            logger.debug("comparing the requirements in %s failed: %s", parent_tag, exc)
            return ""
    lines = bytes(output).decode(errors="replace").split("\n")
    found = [line.strip() for line in lines if line.strip()]
    if not found:
        return ""
    return "Who asks for what:\n" + "\n".join(f"  {line}" for line in found) + "\n"


def _run_as(builder: ImageBuilder, image: CustomImage) -> None:
    """Make `image.user` the image's user, creating it when the image lacks it."""
    user = image.user
    assert user is not None
    dockerfile = "\n".join(
        [
            f"FROM {image.tag}",
            "USER root",
            f"RUN id -u {user} >/dev/null 2>&1"
            f" || useradd --create-home --gid zenml {user}",
            f"USER {user}",
            "",
        ]
    )
    builder.printer(f"  setting the image's user to {user}")
    try:
        builder.client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()),
            tag=image.tag,
            rm=True,
            network_mode="none",
        )
    except docker.errors.BuildError as exc:
        raise ImageBuildError(
            f"could not make {user!r} the user of {image.tag}: {exc}",
            image=image.tag,
        ) from exc
