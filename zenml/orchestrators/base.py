"""What every orchestrator does: run one step and say truly how it ended."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

from zenml.spec import PipelineSpec, StepSpec


@dataclass(frozen=True)
class RunContext:
    """What an orchestrator knows of the run a step belongs to."""

    run_id: str
    spec: PipelineSpec
    artifact_root: Path
    run_dir: Path


@dataclass(frozen=True)
class StepLaunch:
    """One attempt at one step."""

    step: StepSpec
    task_file: Path
    log_file: Path
    environment: dict[str, str]
    attempt: int = 1
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def mask(self, line: str) -> str:
        """`line` with every secret value replaced, for anything shown or kept."""
        for value in self.secrets.values():
            if value:
                line = line.replace(value, "****")
        return line


@dataclass(frozen=True)
class StepOutcome:
    """How a step ended, as read from where it ran."""

    status: str
    exit_code: int | None = None
    reason: str = ""
    image: str | None = None
    image_id: str | None = None
    image_lock: str | None = None
    container: str | None = None
    last_lines: tuple[str, ...] = field(default_factory=tuple)
    started_at: float | None = None
    """When the step's process started and ended, as its runtime reports it."""
    finished_at: float | None = None


class Orchestrator(abc.ABC):
    """Runs steps somewhere; the run's scheduling and records are not its job."""

    name: str = "orchestrator"

    def prepare(self, context: RunContext) -> None:  # noqa: B027 - optional hook
        """Check, before any step starts, that every step can run here."""

    @abc.abstractmethod
    def run_step(self, context: RunContext, launch: StepLaunch) -> StepOutcome:
        """Run one step to its end and report the outcome; never raise for a
        failure of the step itself."""

    def cancel(self, context: RunContext) -> None:  # noqa: B027 - optional hook
        """Stop whatever the run still has running; called from another thread."""

    def image_for(self, step: StepSpec) -> str | None:
        """The image a step would run in, for records; None if not an image."""
        return None
