"""Where zenml's images live once pushed: one rule from local tag to registry name.

Images are built on a laptop as `zenml/<integration>:<version>`; a cloud
service pulls them from a registry. The rule is: the repository's slashes
become dashes under the registry prefix, the tag stays, so
`zenml/pytorch:0.1.0` is pushed as `<registry>/zenml-pytorch:0.1.0`.
"""

from __future__ import annotations

import re

_HOST = re.compile(r"^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+)(:\d+)?$")
_PATH_PART = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")


def check_registry(registry: str) -> str:
    """The registry prefix without a trailing slash, or a ValueError saying why."""
    cleaned = registry.strip().rstrip("/")
    example = "europe-docker.pkg.dev/PROJECT/REPOSITORY"
    if "://" in cleaned:
        raise ValueError(
            f"image registry {registry!r} has a scheme; drop it and give the "
            f"host and path, e.g. {example}"
        )
    host, _, path = cleaned.partition("/")
    if not _HOST.match(host) or not path:
        raise ValueError(
            f"image registry {registry!r} is not a registry host and path; give "
            f"one like {example} or gcr.io/PROJECT"
        )
    bad = [part for part in path.split("/") if not _PATH_PART.match(part)]
    if bad:
        raise ValueError(
            f"image registry {registry!r} has invalid path parts {bad}; use "
            "lowercase letters, digits and . _ - only"
        )
    return cleaned


def in_registry(reference: str) -> bool:
    """True when `reference` names its registry host, as `gcr.io/p/img:1` does."""
    first, sep, _ = reference.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def registry_image(reference: str, registry: str) -> str:
    """The name `reference` has once pushed to `registry`.

    A reference that already names a registry is returned unchanged: it is
    pulled from where it is.
    """
    if in_registry(reference):
        return reference
    prefix = check_registry(registry)
    name, at, digest = reference.partition("@")
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        repository, tag = name, "latest"
    flat = repository.replace("/", "-")
    pinned = f"@{digest}" if at else ""
    return f"{prefix}/{flat}:{tag}{pinned}"
