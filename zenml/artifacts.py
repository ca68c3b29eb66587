"""The artifact store: every output of every step of every run, on a file system.

Each output gets its own folder, `<root>/<pipeline>/<run>/<step>/<output>/`,
holding the data and a `meta.json` that names how it was written. An output is
written into a hidden sibling folder and renamed into place when complete, so a
reader never sees half an artifact.

Materializers import their libraries (pandas, numpy) only when used, because
the launching process loads artifacts written by steps it never imports.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zenml.exceptions import StoreError

META_FILE = "meta.json"
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class ArtifactInfo:
    """What the store knows of a written artifact."""

    uri: str
    materializer: str
    size: int


def slug(name: str) -> str:
    """A file-system-safe form of a name; distinct names stay distinct."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "x"
    if cleaned == name:
        return name
    return f"{cleaned}-{uuid.uuid5(uuid.NAMESPACE_OID, name).hex[:6]}"


class ArtifactStore:
    """Artifacts on a local (or mounted) file system."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def run_dir(self, pipeline: str, run_id: str) -> Path:
        return self.root / slug(pipeline) / run_id

    def step_dir(self, pipeline: str, run_id: str, step: str) -> Path:
        return self.run_dir(pipeline, run_id) / slug(step)

    def output_uri(self, pipeline: str, run_id: str, step: str, output: str) -> Path:
        return self.step_dir(pipeline, run_id, step) / slug(output)

    def write(self, value: Any, uri: Path) -> ArtifactInfo:
        """Write `value` at `uri`, all or nothing."""
        if uri.exists():
            raise StoreError(
                f"artifact {uri} exists already; artifacts are never overwritten"
            )
        uri.parent.mkdir(parents=True, exist_ok=True)
        partial = uri.parent / f"{PARTIAL_PREFIX}{uri.name}-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
        try:
            materializer = save_value(value, partial)
            size = sum(f.stat().st_size for f in partial.rglob("*") if f.is_file())
            meta = {"materializer": materializer, "size": size}
            (partial / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
            os.rename(partial, uri)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return ArtifactInfo(uri=str(uri), materializer=materializer, size=size)

    @staticmethod
    def read(uri: Path | str) -> Any:
        """Load the artifact stored at `uri`."""
        path = Path(uri)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise StoreError(
                f"no finished artifact at {path}; it was never written, or its "
                "step did not complete"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return load_value(meta["materializer"], path)

    def remove_partials(self, run_dir: Path) -> int:
        """Delete half-written outputs left by a step that was killed."""
        removed = 0
        if not run_dir.is_dir():
            return 0
        for partial in run_dir.rglob(f"{PARTIAL_PREFIX}*"):
            shutil.rmtree(partial, ignore_errors=True)
            removed += 1
        return removed


def save_value(value: Any, folder: Path) -> str:
    """Write `value` into `folder`; returns the materializer's name."""
    kind = type(value).__module__.split(".")[0], type(value).__name__
    if kind == ("pandas", "DataFrame"):
        value.to_parquet(folder / "data.parquet")
        return "pandas.parquet"
    if kind == ("numpy", "ndarray"):
        import numpy

        numpy.save(folder / "data.npy", value, allow_pickle=False)
        return "numpy"
    if isinstance(value, Path):
        if not value.exists():
            raise StoreError(f"step returned path {value}, which does not exist")
        if value.is_dir():
            shutil.copytree(value, folder / "data")
            return "path.dir"
        (folder / "data").mkdir()
        shutil.copy2(value, folder / "data" / value.name)
        return "path.file"
    if isinstance(value, bytes):
        (folder / "data.bin").write_bytes(value)
        return "bytes"
    if _is_plain(value):
        (folder / "data.json").write_text(json.dumps(value, indent=1), encoding="utf-8")
        return "json"
    with open(folder / "data.pkl", "wb") as handle:
        pickle.dump(value, handle)
    return "pickle"


def load_value(materializer: str, folder: Path) -> Any:
    if materializer == "json":
        return json.loads((folder / "data.json").read_text(encoding="utf-8"))
    if materializer == "pandas.parquet":
        import pandas

        return pandas.read_parquet(folder / "data.parquet")
    if materializer == "numpy":
        import numpy

        return numpy.load(folder / "data.npy", allow_pickle=False)
    if materializer == "path.dir":
        return folder / "data"
    if materializer == "path.file":
        return next((folder / "data").iterdir())
    if materializer == "bytes":
        return (folder / "data.bin").read_bytes()
    if materializer == "pickle":
        with open(folder / "data.pkl", "rb") as handle:
            return pickle.load(handle)
    raise StoreError(
        f"artifact at {folder} was written by materializer {materializer!r}, "
        "which this zenml does not know; read it with the zenml that wrote it"
    )


def _is_plain(value: Any) -> bool:
    """True for values that survive a JSON round trip unchanged."""
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False
