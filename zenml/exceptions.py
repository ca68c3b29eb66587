"""The exceptions zenml raises: one root, subclasses that carry what a user needs."""

from __future__ import annotations


class ZenMLError(Exception):
    """Root of every error zenml raises on purpose."""


class PipelineDefinitionError(ZenMLError):
    """A pipeline or step is defined or wired in a way zenml cannot run."""


class PipelineNotFoundError(ZenMLError):
    """A pipeline file or configuration does not exist or defines no pipeline."""


class StoreError(ZenMLError):
    """The artifact or metadata store cannot be used as asked."""


class DockerUnavailableError(ZenMLError):
    """No Docker daemon answers."""


class ImageNotFoundError(ZenMLError):
    """A step's image has not been built on this machine."""

    def __init__(self, message: str, *, image: str) -> None:
        super().__init__(message)
        self.image = image


class ImageBuildError(ZenMLError):
    """Building an image failed; carries the end of the build log."""

    def __init__(self, message: str, *, image: str, build_log: str = "") -> None:
        super().__init__(message)
        self.image = image
        self.build_log = build_log


class StepFailedError(ZenMLError):
    """A step ended without success."""

    def __init__(
        self,
        message: str,
        *,
        step: str,
        exit_code: int | None = None,
        reason: str = "",
        last_lines: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.step = step
        self.exit_code = exit_code
        self.reason = reason
        self.last_lines = last_lines


class RunFailedError(ZenMLError):
    """A pipeline run ended without success."""

    def __init__(self, message: str, *, run_id: str, status: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status
