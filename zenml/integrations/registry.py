"""zenml's integrations: their extras, their images, and whether each is here."""

from __future__ import annotations

import importlib.util
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from zenml.exceptions import ZenMLError


@dataclass(frozen=True)
class Integration:
    """One integration: the extra that installs it and the image it runs in."""

    name: str
    extra: str
    modules: tuple[str, ...]
    image: str | None
    backends: str

    @property
    def pip_command(self) -> str:
        return f"pip install 'zenml[{self.extra}]'"

    def installed(self) -> bool:
        """Whether this Python can import every module the integration needs."""
        try:
            return all(importlib.util.find_spec(m) is not None for m in self.modules)
        except (ImportError, ValueError):
            return False


INTEGRATIONS: dict[str, Integration] = {
    i.name: i
    for i in (
        Integration(
            "beam",
            "beam",
            ("apache_beam", "pandas"),
            "base",
            "processing: direct, portable, Flink, Spark",
        ),
        Integration(
            "gcp",
            "gcp",
            ("google.cloud.aiplatform", "google.cloud.compute_v1"),
            "gcp",
            "processing: Dataflow; training, serving: Vertex AI; "
            "orchestration: Google Cloud VM",
        ),
        Integration(
            "pytorch", "pytorch", ("torch", "onnx"), "pytorch", "training: PyTorch"
        ),
        Integration(
            "cortex",
            "cortex",
            ("onnxruntime", "fastapi", "uvicorn"),
            "cortex",
            "serving: Cortex, local HTTP",
        ),
        Integration(
            "tensorflow",
            "tensorflow",
            ("tensorflow",),
            "tensorflow",
            "training: TensorFlow",
        ),
        Integration(
            "kubernetes",
            "kubernetes",
            ("kubernetes",),
            None,
            "orchestration: Kubernetes Jobs",
        ),
    )
}


def require(name: str, what: str) -> None:
    """Fail at once, with the install command, when an integration is missing."""
    integration = INTEGRATIONS[name]
    if not integration.installed():
        raise ZenMLError(
            f"{what} needs the {name} integration, which is not installed here; "
            f"install it with `{integration.pip_command}`"
        )


@dataclass(frozen=True)
class Compatibility:
    """Whether two requirement sets install together, and pip's reason if not."""

    left: str
    right: str
    ok: bool
    reason: str = ""


def resolves(requirements: list[str]) -> tuple[bool, str]:
    """Ask pip, without installing or building anything, if these fit together."""
    from zenml.images.wheelhouse import conflict_causes, dry_run

    done = dry_run(requirements)
    if done.returncode == 0:
        return True, ""
    causes = conflict_causes(done.stdout)
    return False, "; ".join(causes) or done.stderr.strip().splitlines()[-1]


def matrix(
    root: Path, extras: list[str], user_requirements: Path | None = None
) -> list[Compatibility]:
    """Every pair of extras (and each extra with a user's requirements file)."""

    def requirement(extras: str) -> str:
        return f"zenml[{extras}] @ {root.as_uri()}"

    jobs: list[tuple[str, str, list[str]]] = [
        (a, b, [requirement(f"{a},{b}")]) for a, b in itertools.combinations(extras, 2)
    ]
    if user_requirements is not None:
        jobs += [
            (a, user_requirements.name, [requirement(a), "-r", str(user_requirements)])
            for a in extras
        ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda job: resolves(job[2]), jobs))
    return [
        Compatibility(a, b, ok, reason)
        for (a, b, _), (ok, reason) in zip(jobs, answers, strict=True)
    ]
