"""Which image a step runs in, and whether that image is current."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import docker
import docker.errors

import zenml
from zenml.exceptions import ImageNotFoundError
from zenml.images.spec import (
    REPOSITORY_PREFIX,
    builtin_images,
    source_hash,
    source_root,
)
from zenml.spec import StepSpec

SOURCE_LABEL = "org.zenml.source-sha256"
LOCK_LABEL = "org.zenml.lock-sha256"


@dataclass(frozen=True)
class ResolvedImage:
    """An image on the daemon, by the name it was asked for and its id."""

    reference: str
    image_id: str
    lock_sha256: str | None = None
    """The hash of the lock the image was built from, as its label records."""


def image_reference(step: StepSpec) -> str:
    if step.image:
        return step.image
    return f"{REPOSITORY_PREFIX}/{step.integration}:{zenml.__version__}"


def resolve(client: docker.DockerClient, step: StepSpec) -> ResolvedImage:
    """The image `step` runs in; raises with the command that builds it."""
    reference = image_reference(step)
    try:
        image = client.images.get(reference)
    except docker.errors.ImageNotFound as exc:
        if step.image:
            raise ImageNotFoundError(
                f"step {step.name!r} names image {reference!r}, which is not on "
                "this machine; build it (`zenml image build --dockerfile PATH "
                f"--tag {reference}`) or pull it",
                image=reference,
            ) from exc
        raise ImageNotFoundError(
            f"step {step.name!r} needs image {reference}, which has not been "
            f"built; build it with `zenml image build {step.integration}`",
            image=reference,
        ) from exc
    if not step.image:
        _check_current(step, reference, image.labels or {})
    return ResolvedImage(
        reference=reference,
        image_id=str(image.id),
        lock_sha256=(image.labels or {}).get(LOCK_LABEL),
    )


def _check_current(step: StepSpec, reference: str, labels: dict[str, str]) -> None:
    """Refuse an image built from other zenml sources or another lock."""
    specs = builtin_images() if source_root() is not None else {}
    spec = specs.get(step.integration)
    stale = labels.get(SOURCE_LABEL) != source_hash()
    if spec is not None and spec.lock_path.is_file():
        lock_hash = hashlib.sha256(spec.lock_path.read_bytes()).hexdigest()
        stale = stale or labels.get(LOCK_LABEL) != lock_hash
    if stale:
        raise ImageNotFoundError(
            f"image {reference} (for step {step.name!r}) was built from other "
            "zenml sources or another lock than this zenml's; rebuild it with "
            f"`zenml image build {step.integration}`",
            image=reference,
        )
