"""Names and labels Google Cloud accepts, derived from pipeline, run and step names.

Labels allow lowercase letters, digits, `_` and `-`, at most 63 characters;
resource names (VMs) follow RFC 1035: a lowercase letter first, then letters,
digits and `-`, at most 63. A name that had to change carries a short hash of
the original, so distinct pipeline, run or step names stay distinct.
"""

from __future__ import annotations

import hashlib
import re

_LABEL = re.compile(r"^[a-z0-9_-]{0,63}$")


def gcp_label(text: str) -> str:
    """`text` as a label value."""
    if _LABEL.match(text):
        return text
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return f"{cleaned[:56]}-{_digest(text)}".lstrip("-")


def resource_name(*parts: str, prefix: str = "zenml", max_length: int = 63) -> str:
    """An RFC 1035 name from `prefix` and `parts`, unique per combination."""
    digest = _digest("\0".join(parts))
    cleaned = [re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts]
    body = "-".join(p for p in cleaned if p)
    room = max_length - len(prefix) - len(digest) - 2
    trimmed = body[:room].strip("-")
    return "-".join(p for p in (prefix, trimmed, digest) if p)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]
