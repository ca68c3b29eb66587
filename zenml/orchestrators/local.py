"""The in-process orchestrator: every step runs in this Python process.

Meant for debugging (a breakpoint in a step stops here), it needs every
integration's libraries installed locally and gives no isolation.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import traceback
from collections import deque

from zenml.entrypoint import Task, run_task
from zenml.metadata import COMPLETED, FAILED
from zenml.orchestrators.base import Orchestrator, RunContext, StepLaunch, StepOutcome

LAST_LINES = 20
# Steps change os.environ, sys.stdout and sys.stderr, which the whole process
# shares, so only one step runs at a time even when the scheduler starts several.
_ONE_STEP_AT_A_TIME = threading.Lock()


class LocalOrchestrator(Orchestrator):
    """Runs steps one after another in this process."""

    name = "local"

    def run_step(self, context: RunContext, launch: StepLaunch) -> StepOutcome:
        with _ONE_STEP_AT_A_TIME:
            return self._run_step(launch)

    def _run_step(self, launch: StepLaunch) -> StepOutcome:
        previous = dict(os.environ)
        os.environ.update({**launch.environment, **launch.secrets})
        captured = io.StringIO()
        try:
            with (
                contextlib.redirect_stdout(_Tee(captured, "stdout")),
                contextlib.redirect_stderr(_Tee(captured, "stderr")),
            ):
                run_task(Task.read(launch.task_file))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if code == 0:
                return StepOutcome(status=COMPLETED, exit_code=0)
            return self._failed(captured, code, f"exited with code {code}")
        except Exception as exc:
            traceback.print_exc(file=_Tee(captured, "stderr"))
            return self._failed(captured, 1, f"raised {type(exc).__name__}: {exc}")
        finally:
            os.environ.clear()
            os.environ.update(previous)
            launch.log_file.parent.mkdir(parents=True, exist_ok=True)
            launch.log_file.write_text(captured.getvalue(), encoding="utf-8")
        return StepOutcome(status=COMPLETED, exit_code=0)

    @staticmethod
    def _failed(captured: io.StringIO, code: int, reason: str) -> StepOutcome:
        lines = deque(captured.getvalue().splitlines(), maxlen=LAST_LINES)
        return StepOutcome(
            status=FAILED, exit_code=code, reason=reason, last_lines=tuple(lines)
        )


class _Tee(io.TextIOBase):
    """Writes to the real stream and keeps a copy."""

    def __init__(self, copy: io.StringIO, name: str) -> None:
        import sys

        self.copy = copy
        self.stream = getattr(sys, f"__{name}__")

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)
