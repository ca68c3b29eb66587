"""Run one step from its task file: `python -m zenml.entrypoint TASK.json`.

This is the command every step container runs. It imports the user's code,
loads the step's inputs from the artifact store, calls the step, and writes
its outputs back. It never touches the metadata store: the launcher records
what happened from the container's exit and the artifacts it finds.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zenml.artifacts import ArtifactStore
from zenml.exceptions import PipelineDefinitionError, StoreError

TASK_FILE = "task.json"
STEP_DIR_ENV = "ZENML_STEP_DIR"


@dataclass(frozen=True)
class Task:
    """Everything a step needs to run, as the launcher hands it over."""

    step: str
    source: str
    code_root: str
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=1), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Task:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def import_step_function(source: str, code_root: str) -> Any:
    """The function behind `FILE.py:name` or `module:name`."""
    from zenml.pipelines import load_module
    from zenml.steps import Step

    location, _, qualname = source.rpartition(":")
    if code_root not in sys.path:
        sys.path.insert(0, code_root)
    if location.endswith(".py"):
        module = load_module(Path(location))
    else:
        module = importlib.import_module(location)
    target: Any = module
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise PipelineDefinitionError(
                f"{location} has no step {qualname!r}; was the file changed "
                "after the pipeline was compiled?"
            ) from exc
    return target.func if isinstance(target, Step) else target


def run_task(task: Task) -> None:
    """Load inputs, call the step, write its outputs."""
    if task.outputs:
        # Scratch space every process of the step can reach, Beam workers in
        # other containers included: the step's own folder in the store.
        os.environ[STEP_DIR_ENV] = str(Path(next(iter(task.outputs.values()))).parent)
    func = import_step_function(task.source, task.code_root)
    arguments = dict(task.parameters)
    for name, uri in task.inputs.items():
        arguments[name] = ArtifactStore.read(uri)

    result = func(**arguments)

    names = list(task.outputs)
    if len(names) == 1:
        values = [result]
    elif not isinstance(result, tuple) or len(result) != len(names):
        raise PipelineDefinitionError(
            f"step {task.step!r} declares outputs {names} but returned "
            f"{type(result).__name__}; return a tuple of {len(names)} values"
        )
    else:
        values = list(result)
    store = ArtifactStore(Path("/"))
    for name, value in zip(names, values, strict=True):
        store.write(value, Path(task.outputs[name]))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m zenml.entrypoint TASK.json", file=sys.stderr)
        return 2
    try:
        task = Task.read(Path(args[0]))
    except (OSError, ValueError, TypeError) as exc:
        print(f"zenml: cannot read task file {args[0]}: {exc}", file=sys.stderr)
        return 2
    try:
        run_task(task)
    except (PipelineDefinitionError, StoreError) as exc:
        print(f"zenml: {exc}", file=sys.stderr)
        return 1
    return 0


def merge_stderr_into_stdout() -> None:
    """Send stderr down stdout's pipe, so a step's lines keep their order.

    Docker reads stdout and stderr through separate pipes and may interleave
    them; a step's log is one stream in the order the step wrote it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(sys.stdout.fileno(), sys.stderr.fileno())


if __name__ == "__main__":
    merge_stderr_into_stdout()
    sys.exit(main())
