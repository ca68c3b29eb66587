"""Building zenml's images with the Docker daemon, parents first.

An image is built only when no image carries its content tag yet. A build
installs from a wheelhouse filled on the host and has no network besides the
wheelhouse server. The image's self-test and smoke pipeline run before the
friendly tags move to it; a build that fails, or whose checks fail, leaves no
tag behind.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import docker
import docker.errors

import zenml
from zenml.exceptions import ImageBuildError, ImageNotFoundError, ZenMLError
from zenml.images import wheelhouse
from zenml.images.parent import check_parent
from zenml.images.spec import (
    DEFAULT_PARENT,
    ImageSpec,
    builtin_images,
    default_parent,
    source_hash,
    source_root,
    with_ancestors,
)

logger = logging.getLogger(__name__)

LABEL_PREFIX = "org.zenml"
Printer = Callable[[str], None]


@dataclass(frozen=True)
class BuiltImage:
    """An image on the daemon, and whether this call built it."""

    name: str
    tag: str
    image_id: str
    built: bool
    seconds: float = 0.0
    size: int = 0


class ImageBuilder:
    """Builds the built-in images (and images FROM them) on one daemon."""

    def __init__(
        self,
        client: docker.DockerClient,
        *,
        parent: str | None = None,
        wheelhouse_dir: Path | None = None,
        printer: Printer = print,
    ) -> None:
        self.client = client
        self.parent = parent or default_parent() or _recorded_parent(client)
        self.wheelhouse_dir = wheelhouse_dir
        self.printer = printer
        self.specs = builtin_images()

    # Names and tags -----------------------------------------------------

    def parent_identity(self, spec: ImageSpec) -> str:
        """What the image is built FROM: an image id for the base, a tag otherwise."""
        if spec.parent is not None:
            return self.content_tag(self.specs[spec.parent])
        try:
            return str(self.client.images.get(self.parent).id)
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFoundError(
                f"the base image's parent {self.parent!r} is not on this machine. "
                f"Pull it (`docker pull {self.parent}`), or make a Python 3.11 "
                "parent without any registry with `zenml image parent` and pass "
                "its name with --parent (or ZENML_PARENT_IMAGE)",
                image=self.parent,
            ) from exc

    def content_tag(self, spec: ImageSpec) -> str:
        return spec.content_tag(self.parent_identity(spec))

    def find(self, name: str) -> BuiltImage | None:
        """The current image for `name`, if it has been built."""
        spec = self.specs[name]
        tag = self.content_tag(spec)
        try:
            image = self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return None
        return BuiltImage(name=name, tag=tag, image_id=str(image.id), built=False)

    # Building -----------------------------------------------------------

    def build(
        self,
        names: list[str],
        *,
        force: bool = False,
        build_args: dict[str, str] | None = None,
    ) -> list[BuiltImage]:
        """Build `names` and their parents where anything changed.

        `build_args` go to the named images only (they change their tags).
        """
        if build_args:
            if not names:
                raise ZenMLError("build arguments need the images they are for named")
            for name in names:
                if name in self.specs:
                    self.specs[name] = self.specs[name].with_build_args(**build_args)
        results: list[BuiltImage] = []
        wanted = names or [s.name for s in self.specs.values() if not s.on_request]
        for spec in with_ancestors(wanted, self.specs):
            tag = self.content_tag(spec)
            if not force:
                existing = self._existing(tag)
                if existing is not None:
                    self._tag_friendly(spec, tag)
                    logger.info("image %s is up to date (%s)", spec.name, tag)
                    results.append(BuiltImage(spec.name, tag, existing, built=False))
                    continue
            results.append(self._build_one(spec, tag))
        return results

    def _existing(self, tag: str) -> str | None:
        try:
            return str(self.client.images.get(tag).id)
        except docker.errors.ImageNotFound:
            return None

    def _build_one(self, spec: ImageSpec, tag: str) -> BuiltImage:
        if not spec.lock_path.is_file():
            raise ImageBuildError(
                f"image {spec.name!r} has no lock at {spec.lock_path}; write it "
                f"with `zenml image lock {spec.name}`",
                image=spec.name,
            )
        self.printer(f"Building {spec.repository} ({tag})")
        started = time.monotonic()
        if spec.parent is None:
            check_parent(self.client, self.parent)
        wheels = self.wheelhouse_dir or wheelhouse.default_wheelhouse()
        locks = [spec.lock_path]
        self.printer(f"  filling the wheelhouse {wheels} on the host")
        wheelhouse.fill(wheels, locks)

        build_args = {"ZENML_VERSION": zenml.__version__, **spec.build_args}
        if spec.parent is None:
            build_args["PARENT"] = self.parent
            # zenml is installed in the base only; its children inherit it.
            build_args["ZENML_SOURCE"] = source_hash()[:16]
        else:
            build_args["BASE"] = self.content_tag(self.specs[spec.parent])
        for key, reference in build_args.items():
            if key.endswith("_IMAGE"):
                self._ensure_stage_image(spec, key, reference)

        server_image = build_args.get("BASE") or self.parent
        with wheelhouse.serve(self.client, wheels, server_image) as served:
            build_args["WHEELS"] = served.url
            log = self.stream_build(
                spec, tag, build_args, self._labels(spec), served.network_mode
            )

        image = self.client.images.get(tag)
        try:
            self.self_test(spec.name, tag)
            self.smoke_test(spec.name, tag)
        except ImageBuildError:
            self.client.images.remove(tag, force=True)
            raise
        self._tag_friendly(spec, tag)
        seconds = time.monotonic() - started
        size = int(image.attrs.get("Size", 0))
        self.printer(
            f"Built {spec.repository} in {seconds:.0f}s: {tag}, {size / 1e6:.0f} MB"
        )
        self.printer(f"  largest packages: {self.largest_packages(tag)}")
        logger.debug("build log of %s: %d lines", spec.name, len(log))
        return BuiltImage(spec.name, tag, str(image.id), True, seconds, size)

    def _ensure_stage_image(self, spec: ImageSpec, key: str, reference: str) -> None:
        """A Dockerfile stage's image must be here, since no build may pull."""
        try:
            self.client.images.get(reference)
            return
        except docker.errors.ImageNotFound:
            pass
        self.printer(f"  pulling {reference} ({key})")
        try:
            self.client.images.pull(reference)
        except docker.errors.APIError as exc:
            raise ImageBuildError(
                f"image {spec.name!r} copies from {reference} ({key}), which is "
                f"not on this machine and cannot be pulled: {exc.explanation or exc}"
                f"\nLoad it from a mirror (`docker load -i FILE`), or name a copy "
                f"that is here with `--build-arg {key}=NAME`.",
                image=spec.name,
            ) from exc

    def stream_build(
        self,
        spec: ImageSpec,
        tag: str,
        build_args: dict[str, str],
        labels: dict[str, str],
        network_mode: str = "none",
    ) -> list[str]:
        """Run the docker build, streaming its output; raise with its end."""
        log: list[str] = []
        stream = self.client.api.build(
            path=str(spec.context),
            dockerfile=spec.dockerfile,
            tag=tag,
            buildargs=build_args,
            labels=labels,
            network_mode=network_mode,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for chunk in stream:
            text = chunk.get("stream") or chunk.get("status") or ""
            for line in text.splitlines():
                if line.strip():
                    log.append(line)
                    self.printer(f"  {spec.name} | {line}")
            if "error" in chunk:
                log.append(chunk["error"])
                tail = "\n".join(log[-30:])
                raise ImageBuildError(
                    f"building image {spec.name!r} failed: "
                    f"{chunk['error'].strip()}\n--- last lines of the build ---\n"
                    f"{tail}",
                    image=spec.name,
                    build_log="\n".join(log),
                )
        return log

    def self_test(self, name: str, tag: str, *, custom: bool = False) -> None:
        """Run the image's own check; it fails the build when anything clashes."""
        self.printer(f"  checking {name}: pip check, lock, extras, imports")
        command = ["python", "-m", "zenml.images.selftest"]
        if custom:
            command.append("--custom")
        else:
            command += ["--source", source_hash()]
        try:
            # Given as the entrypoint, so an image's own (Beam's boot, say)
            # does not swallow the command.
            output = self.client.containers.run(
                tag, entrypoint=command, remove=True, network_mode="none", stderr=True
            )
        except docker.errors.ContainerError as exc:
            stderr = exc.stderr.decode(errors="replace") if exc.stderr else ""
            raise ImageBuildError(
                f"image {name!r} built but failed its self-test, so it keeps "
                f"no tag:\n{stderr.strip()}",
                image=name,
                build_log=stderr,
            ) from exc
        for line in output.decode(errors="replace").splitlines():
            self.printer(f"  {name} | {line}")

    def largest_packages(self, tag: str) -> str:
        """The image's biggest distributions, as one line for the build's end."""
        output = self.client.containers.run(
            tag,
            entrypoint=["python", "-m", "zenml.images.about", "--largest"],
            remove=True,
            network_mode="none",
        )
        return bytes(output).decode(errors="replace").strip()

    def smoke_test(self, name: str, tag: str) -> None:
        """Run a one-step pipeline in the new image through the launcher."""
        from zenml.images.smoke import run_smoke_pipeline

        self.printer(f"  smoke pipeline in {tag}")
        try:
            answer = run_smoke_pipeline(self.client, tag)
        except ZenMLError as exc:
            raise ImageBuildError(
                f"image {name!r} built but its smoke pipeline failed, so it "
                f"keeps no tag: {exc}",
                image=name,
            ) from exc
        self.printer(f"  {name} | smoke pipeline ran: {answer}")

    def _labels(self, spec: ImageSpec) -> dict[str, str]:
        lock = spec.lock_path.read_bytes() if spec.lock_path.is_file() else b""
        return {
            "org.opencontainers.image.title": spec.repository,
            "org.opencontainers.image.version": zenml.__version__,
            "org.opencontainers.image.revision": _git_revision(),
            "org.opencontainers.image.created": datetime.now(UTC).isoformat(),
            "org.opencontainers.image.source": "https://github.com/zenml-io/zenml",
            f"{LABEL_PREFIX}.integration": spec.name,
            f"{LABEL_PREFIX}.lock-sha256": hashlib.sha256(lock).hexdigest(),
            f"{LABEL_PREFIX}.source-sha256": source_hash(),
            f"{LABEL_PREFIX}.parent": self.parent if spec.parent is None else "",
        }

    def _tag_friendly(self, spec: ImageSpec, tag: str) -> None:
        image = self.client.images.get(tag)
        for friendly in spec.friendly_tags:
            repository, _, label = friendly.rpartition(":")
            image.tag(repository, label)

    # Locks --------------------------------------------------------------

    def lock(self, names: list[str]) -> list[Path]:
        """Resolve and write the locks of `names` and their parents."""
        written = []
        for spec in with_ancestors(names or list(self.specs), self.specs):
            parent_lock = (
                self.specs[spec.parent].lock_path if spec.parent is not None else None
            )
            text = wheelhouse.resolve(spec, parent_lock)
            spec.lock_path.write_text(text, encoding="utf-8")
            self.printer(
                f"Locked {spec.name}: {len(wheelhouse.pins(spec.lock_path))} "
                f"packages in {spec.lock_path}"
            )
            written.append(spec.lock_path)
        return written


def _recorded_parent(client: docker.DockerClient) -> str:
    """The parent the current base image was built from, else the default."""
    try:
        labels = client.images.get(f"zenml/base:{zenml.__version__}").labels or {}
    except docker.errors.ImageNotFound:
        labels = {}
    return labels.get(f"{LABEL_PREFIX}.parent") or DEFAULT_PARENT


def _git_revision() -> str:
    root = source_root()
    if root is None:
        return "unknown"
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"
