"""The check every zenml image passes before it is tagged.

Run inside the image: `python -m zenml.images.selftest`. It fails (exit 1) and
says what clashed when:
- `pip check` reports a broken requirement;
- an installed version differs from the image's lock (a later layer upgraded
  or downgraded something a lower layer installed);
- a requirement that only an extra declares is not met (`pip check` ignores
  extras, so a cap such as apache-beam[gcp]'s on google-cloud-aiplatform
  would otherwise go unnoticed);
- one of the integration's key modules does not import (a missing shared
  library shows up here).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

LOCK_DIR = Path("/opt/zenml/locks")
IMAGE_ENV = "ZENML_IMAGE"

# What each integration image must be able to import.
KEY_MODULES: dict[str, tuple[str, ...]] = {
    "base": ("zenml", "apache_beam", "pandas", "pyarrow", "palmerpenguins"),
    "gcp": ("google.cloud.aiplatform", "apache_beam.io.gcp.gcsio"),
    "pytorch": ("torch",),
    "cortex": ("onnxruntime", "fastapi", "uvicorn"),
    "tensorflow": ("tensorflow",),
}
# Integration -> the zenml extra whose requirements (with their own extras) must hold.
EXTRAS: dict[str, str] = {
    "base": "beam",
    "gcp": "gcp",
    "pytorch": "pytorch",
    "cortex": "cortex",
    "tensorflow": "tensorflow",
}
_ALWAYS_ALLOWED = {"pip", "setuptools", "wheel", "zenml"}


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed() -> dict[str, str]:
    return {
        _canonical(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
    }


def lock_problems(lock: Path, found: dict[str, str], strict: bool) -> list[str]:
    """Differences between what the lock pins and what is installed.

    `strict` also flags packages the lock does not know, for zenml's own
    images; an image built FROM one may add packages but change none.
    """
    problems = []
    pinned = _pins(lock)
    for name, version in sorted(pinned.items()):
        if name not in found:
            problems.append(f"{name}=={version} is in the lock but not installed")
        elif found[name] != version:
            problems.append(
                f"{name} is {found[name]}, but the lock pins {version}: a later "
                "install changed a package a lower layer installed"
            )
    if strict:
        for name in sorted(set(found) - set(pinned) - _ALWAYS_ALLOWED):
            problems.append(f"{name}=={found[name]} is installed but not in the lock")
    return problems


def extra_problems(root: str, extras: set[str]) -> list[str]:
    """Unmet requirements of `root[extras]`, following extras all the way down."""
    from packaging.requirements import Requirement

    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()

    def visit(name: str, wanted: set[str], asked_by: str) -> None:
        key = (_canonical(name), frozenset(wanted))
        if key in seen:
            return
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is required by {asked_by} but not installed")
            return
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            applies = marker is None or any(
                marker.evaluate({"extra": extra}) for extra in (wanted or {""})
            )
            if not applies:
                continue
            owner = f"{dist.metadata['Name']}{_extras_text(wanted)}"
            try:
                version = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                problems.append(
                    f"{requirement} (asked for by {owner}) is not installed"
                )
                continue
            if not requirement.specifier.contains(version, prereleases=True):
                problems.append(
                    f"{requirement.name} {version} is installed, but {owner} "
                    f"requires {requirement}"
                )
            visit(requirement.name, set(requirement.extras), owner)

    visit(root, extras, "the image")
    return problems


def _extras_text(extras: set[str]) -> str:
    return f"[{','.join(sorted(extras))}]" if extras else ""


def added_modules(lock: Path) -> tuple[str, ...]:
    """Top-level modules of distributions installed on top of `lock`'s pins."""
    pinned = set(_pins(lock))
    modules: list[str] = []
    for dist in metadata.distributions():
        if _canonical(dist.metadata["Name"]) in pinned | _ALWAYS_ALLOWED:
            continue
        top_level = dist.read_text("top_level.txt")
        if top_level:
            names = top_level.split()
        else:
            names = sorted(
                {
                    str(f).split("/")[0].removesuffix(".py")
                    for f in dist.files or []
                    if "/" in str(f)
                    and str(f).endswith("__init__.py")
                    and ".dist-info" not in str(f)
                }
            )
        modules += [n for n in names if n.isidentifier() and not n.startswith("_")]
    return tuple(dict.fromkeys(modules))


def _pins(lock: Path) -> dict[str, str]:
    pinned: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "--")):
            name, _, version = line.split()[0].partition("==")
            pinned[_canonical(name)] = version
    return pinned


def import_problems(modules: tuple[str, ...]) -> list[str]:
    problems = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any import failure is a finding, not a crash
            hint = ""
            if "cannot open shared object file" in str(exc):
                hint = (
                    " (a system library is missing: install it in the image "
                    "with apt-get, or use the package's headless variant)"
                )
            elif _PROTOBUF_MISMATCH.search(str(exc)):
                hint = " (" + protobuf_hint(str(exc)) + ")"
            problems.append(f"import {module} failed: {exc}{hint}")
    return problems


_PROTOBUF_MISMATCH = re.compile(
    r"Protobuf Gencode/Runtime|cannot import name 'runtime_version' from "
    r"'google\.protobuf'"
)
_GENCODE = re.compile(r"gencode (\S+) runtime (\S+)")


def protobuf_hint(message: str) -> str:
    """Why a module's generated protobuf code refuses the installed runtime."""
    try:
        runtime = metadata.version("protobuf")
    except metadata.PackageNotFoundError:
        runtime = "none"
    found = _GENCODE.search(message)
    needed = (
        f"its generated code was made by protobuf {found.group(1)} and needs a "
        "runtime at least as new"
        if found
        else "its generated code needs a newer protobuf runtime"
    )
    asked = "; ".join(requirers("protobuf")) or "nothing declares protobuf"
    return (
        f"protobuf {runtime} is installed, but {needed}. The protobuf "
        f"requirements in the image: {asked}. Pick versions whose ranges meet "
        "above that runtime, or keep these packages in separate images"
    )


def requirers(name: str) -> list[str]:
    """`DIST VERSION requires REQUIREMENT` for each installed dist needing `name`."""
    from packaging.requirements import Requirement

    wanted = _canonical(name)
    found = []
    for dist in metadata.distributions():
        for text in dist.requires or []:
            requirement = Requirement(text)
            if _canonical(requirement.name) != wanted:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate(
                {"extra": ""}
            ):
                continue
            found.append(
                f"{dist.metadata['Name']} {dist.version} requires {requirement}"
            )
    return sorted(set(found))


def clashes(report: dict[str, Any]) -> list[str]:
    """Where a resolution made without this environment meets what it holds.

    `report` is pip's installation report for a user's requirements resolved on
    their own. A line names a requirement on one side that excludes the version
    the other side has: an installed dist's range against the version the
    requirements need, or a needed dist's range against the installed version.
    """
    from packaging.requirements import Requirement

    held = {
        _canonical(dist.metadata["Name"]): (dist.metadata["Name"], dist.version)
        for dist in metadata.distributions()
    }
    needed = {
        _canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in report.get("install", [])
    }
    found = []
    for item in report.get("install", []):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        for text in item["metadata"].get("requires_dist") or []:
            requirement = _applicable(Requirement(text))
            if requirement is None or _canonical(requirement.name) not in held:
                continue
            holder, have = held[_canonical(requirement.name)]
            if not requirement.specifier.contains(have, prereleases=True):
                found.append(
                    f"{name} {version} requires {requirement}, but the image "
                    f"holds {holder} {have}"
                )
    for dist in metadata.distributions():
        for text in dist.requires or []:
            requirement = _applicable(Requirement(text))
            if requirement is None:
                continue
            want = needed.get(_canonical(requirement.name))
            if want is not None and not requirement.specifier.contains(
                want, prereleases=True
            ):
                found.append(
                    f"{dist.metadata['Name']} {dist.version} in the image requires "
                    f"{requirement}, but the requirements need "
                    f"{requirement.name} {want}"
                )
    return sorted(set(found))


def _applicable(requirement: Any) -> Any:
    """`requirement`, or None when its marker rules it out here (extras aside)."""
    if requirement.marker is not None and not requirement.marker.evaluate(
        {"extra": ""}
    ):
        return None
    return requirement


def main(argv: list[str] | None = None) -> int:
    """Exit 1 naming every problem.

    `--custom` for an image FROM a zenml image; `--source HASH` checks that the
    installed zenml is the code the image was built from.
    """
    args = sys.argv[1:] if argv is None else argv
    if "--clashes" in args:
        # A file with pip's report of requirements resolved elsewhere.
        report = Path(args[args.index("--clashes") + 1]).read_text(encoding="utf-8")
        for line in clashes(json.loads(report)):
            print(line)
        return 0
    custom = "--custom" in args
    image = os.environ.get(IMAGE_ENV, "base")
    problems: list[str] = []

    if "--source" in args:
        from zenml.images.spec import source_hash

        expected = args[args.index("--source") + 1]
        found = source_hash()
        if found != expected:
            problems.append(
                f"zenml's code in the image (source {found[:12]}) is not the "
                f"code it was built from ({expected[:12]}); rebuild with --force"
            )

    check = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True
    )
    if check.returncode != 0:
        problems += [f"pip check: {line}" for line in check.stdout.splitlines()]

    lock = LOCK_DIR / f"{image}.lock"
    if lock.is_file():
        problems += lock_problems(lock, installed(), strict=not custom)

    extra = EXTRAS.get(image)
    problems += extra_problems("zenml", {extra} if extra else set())

    modules = KEY_MODULES["base"] + KEY_MODULES.get(image, ())
    if custom and lock.is_file():
        modules += added_modules(lock)
    modules = tuple(dict.fromkeys(modules))
    problems += import_problems(modules)

    if problems:
        what = f"an image FROM zenml/{image}" if custom else f"image {image!r}"
        print(f"{what} failed its self-test:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(
        f"self-test passed: {len(installed())} packages match the lock, "
        f"imports ok ({', '.join(modules)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
