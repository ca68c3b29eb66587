"""What an image is: a build context, a parent, and the zenml extra it installs.

An image's tag is a hash of everything that goes into it (its build context
with the lock, its parent's identity, zenml's own source and the build
arguments), so an unchanged image is never rebuilt and a changed one always is.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import zenml
from zenml.exceptions import ZenMLError

REPOSITORY_PREFIX = "zenml"
LOCK_FILE = "requirements.lock"
REQUIREMENTS_FILE = "requirements.in"
DEFAULT_PARENT = "python:3.11-slim"
PARENT_ENV = "ZENML_PARENT_IMAGE"


@dataclass(frozen=True)
class ImageSpec:
    """An immutable description of one image."""

    name: str
    context: Path
    parent: str | None = None
    """Another spec's name; None for the base, whose parent is a build argument."""
    extra: str | None = None
    """The zenml extra the image installs, so pip and image installs agree."""
    build_args: dict[str, str] = field(default_factory=dict)
    dockerfile: str = "Dockerfile"
    on_request: bool = False
    """Built only when named: its build needs something a plain build lacks."""

    @property
    def repository(self) -> str:
        return f"{REPOSITORY_PREFIX}/{self.name}"

    @property
    def friendly_tags(self) -> tuple[str, str]:
        return f"{self.repository}:{zenml.__version__}", f"{self.repository}:latest"

    @property
    def lock_path(self) -> Path:
        return self.context / LOCK_FILE

    @property
    def requirements_path(self) -> Path:
        return self.context / REQUIREMENTS_FILE

    def with_build_args(self, **args: str) -> ImageSpec:
        return replace(self, build_args={**self.build_args, **args})

    def content_hash(self, parent_identity: str) -> str:
        """Hash of the context, the parent, zenml's source and the build args."""
        digest = hashlib.sha256()
        digest.update(f"parent={parent_identity}\n".encode())
        digest.update(f"zenml={source_hash()}\n".encode())
        for key in sorted(self.build_args):
            digest.update(f"arg {key}={self.build_args[key]}\n".encode())
        for path in _files(self.context):
            digest.update(f"file {path.relative_to(self.context)}\n".encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def content_tag(self, parent_identity: str) -> str:
        digest = self.content_hash(parent_identity)[:12]
        return f"{self.repository}:{zenml.__version__}-{digest}"


def _files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    )


@cache
def source_hash() -> str:
    """Hash of the zenml package the images install (this one)."""
    package = Path(zenml.__file__).parent
    digest = hashlib.sha256()
    for path in _files(package):
        if path.suffix in (".py", ".typed", ".json", ".yaml", ".txt"):
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def source_root() -> Path | None:
    """The checkout zenml runs from, when it is one (it holds `images/`)."""
    root = Path(zenml.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "images").is_dir():
        return root
    return None


def images_dir() -> Path:
    root = source_root()
    if root is None:
        raise ZenMLError(
            "building zenml's images needs its source checkout (with images/ "
            "and pyproject.toml); clone the repository and `pip install -e .`"
        )
    return root / "images"


def default_parent() -> str | None:
    """The parent named by the environment, if any."""
    return os.environ.get(PARENT_ENV) or None


# The built-in images, parents first. Each integration image is built FROM the
# base image of the same zenml version and installs zenml with its own extra.
_BUILTIN: tuple[tuple[str, str | None, str | None], ...] = (
    ("base", None, "beam"),
    ("gcp", "base", "gcp"),
    ("pytorch", "base", "pytorch"),
    ("cortex", "base", "cortex"),
    ("tensorflow", "base", "tensorflow"),
)


def builtin_images() -> dict[str, ImageSpec]:
    folder = images_dir()
    specs = {
        name: ImageSpec(name=name, context=folder / name, parent=parent, extra=extra)
        for name, parent, extra in _BUILTIN
    }
    # Dataflow's worker image: the gcp image with Beam's boot entrypoint, from
    # Beam's SDK image, which a machine without a registry has to load first.
    dataflow = folder / "gcp-dataflow"
    specs["gcp-dataflow"] = ImageSpec(
        name="gcp-dataflow",
        context=dataflow,
        parent="gcp",
        extra="gcp",
        build_args={"BEAM_SDK_IMAGE": beam_sdk_image(dataflow / LOCK_FILE)},
        on_request=True,
    )
    return specs


def beam_sdk_image(lock: Path) -> str:
    """Beam's SDK image for the Beam version `lock` pins and Python 3.11."""
    version = "latest"
    if lock.is_file():
        for line in lock.read_text(encoding="utf-8").splitlines():
            if line.startswith("apache-beam=="):
                version = line.split()[0].partition("==")[2]
    return f"apache/beam_python3.11_sdk:{version}"


def with_ancestors(names: list[str], specs: dict[str, ImageSpec]) -> list[ImageSpec]:
    """The named images and all their parents, parents first."""
    ordered: list[ImageSpec] = []

    def visit(name: str) -> None:
        if name not in specs:
            raise ZenMLError(f"no image named {name!r}; zenml builds {sorted(specs)}")
        spec = specs[name]
        if spec.parent is not None:
            visit(spec.parent)
        if spec not in ordered:
            ordered.append(spec)

    for name in names:
        visit(name)
    return ordered
