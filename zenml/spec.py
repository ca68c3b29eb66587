"""The resolved description of a pipeline: what runs, where, and with which inputs.

A `PipelineSpec` is what `@pipeline` compiles to, what is written to YAML, and
what every orchestrator executes. It holds no Python objects, only references
to the code, so it can be stored with a run and run again from a file.
"""

from __future__ import annotations

import graphlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zenml.exceptions import PipelineDefinitionError, PipelineNotFoundError

SPEC_VERSION = 1
DEFAULT_INTEGRATION = "base"
_NAME = re.compile(r"^[A-Za-z0-9_.\- ()]+$")


class InputRef(BaseModel):
    """One input of a step: an output of an upstream step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str
    output: str = "output"


class Resources(BaseModel):
    """What a step asks of the machine; locally these become container limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: float | None = None
    memory: str | None = None
    shm_size: str | None = None
    gpus: int = 0


class StepSpec(BaseModel):
    """One node of the DAG."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source: str = Field(description="FILE.py:attribute or module:attribute")
    integration: str = DEFAULT_INTEGRATION
    image: str | None = None
    backend: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, InputRef] = Field(default_factory=dict)
    outputs: tuple[str, ...] = ("output",)
    environment: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    resources: Resources = Field(default_factory=Resources)
    timeout: float | None = None
    cache: bool = True

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"step name {value!r} may hold only letters, digits, spaces and "
                "the characters _ . - ( )"
            )
        return value

    @property
    def upstream(self) -> set[str]:
        return {ref.step for ref in self.inputs.values()}


class PipelineSpec(BaseModel):
    """A whole pipeline, resolved: every step with its parameters and wiring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = SPEC_VERSION
    name: str
    code_root: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    steps: tuple[StepSpec, ...]

    def model_post_init(self, __context: Any) -> None:
        self.execution_order()

    def step(self, name: str) -> StepSpec:
        for spec in self.steps:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def execution_order(self) -> list[str]:
        """Step names in an order that respects every input; rejects cycles."""
        names = [s.name for s in self.steps]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} has several steps named "
                f"{sorted(duplicates)}; give each invocation its own name"
            )
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for spec in self.steps:
            for arg, ref in spec.inputs.items():
                if ref.step not in names:
                    raise PipelineDefinitionError(
                        f"input {arg!r} of step {spec.name!r} names step "
                        f"{ref.step!r}, which is not in pipeline {self.name!r}"
                    )
                if ref.output not in self.step(ref.step).outputs:
                    raise PipelineDefinitionError(
                        f"input {arg!r} of step {spec.name!r} names output "
                        f"{ref.output!r} of step {ref.step!r}, which has only "
                        f"{list(self.step(ref.step).outputs)}"
                    )
            sorter.add(spec.name, *spec.upstream)
        try:
            return list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} has a cycle: {cycle}; a step cannot "
                "depend, directly or not, on its own output"
            ) from exc

    def digest(self) -> str:
        """A stable JSON form, for hashing and storing with a run."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def to_yaml(self, path: Path) -> None:
        """Write the spec with paths relative to the file, so it can move."""
        data = self.model_dump(mode="json")
        base = path.resolve().parent
        data["code_root"] = _relative(Path(self.code_root), base)
        for step in data["steps"]:
            step["source"] = _relative_source(step["source"], base)
        data["steps"] = [_compact(step) for step in data["steps"]]
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    @classmethod
    def from_yaml(cls, path: Path) -> PipelineSpec:
        if not path.is_file():
            raise PipelineNotFoundError(
                f"pipeline configuration {path} does not exist; write one with "
                "`zenml pipeline compile PIPELINE.py -o FILE.yaml`"
            )
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise PipelineNotFoundError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or "steps" not in data:
            raise PipelineNotFoundError(
                f"{path} does not describe a pipeline: it needs `name`, "
                "`code_root` and `steps`"
            )
        base = path.resolve().parent
        root = Path(str(data.get("code_root", ".")))
        if not root.is_absolute():
            data["code_root"] = str((base / root).resolve())
        for step in data["steps"] if isinstance(data["steps"], list) else []:
            if isinstance(step, dict) and isinstance(step.get("source"), str):
                step["source"] = _absolute_source(step["source"], base)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PipelineDefinitionError(
                f"{path} is not a valid pipeline configuration:\n{exc}"
            ) from exc


def _relative(target: Path, base: Path) -> str:
    try:
        return str(target.resolve().relative_to(base))
    except ValueError:
        return str(target.resolve())


def _relative_source(source: str, base: Path) -> str:
    location, _, attribute = source.rpartition(":")
    if not location.endswith(".py"):
        return source
    return f"{_relative(Path(location), base)}:{attribute}"


def _absolute_source(source: str, base: Path) -> str:
    location, _, attribute = source.rpartition(":")
    if not location.endswith(".py") or Path(location).is_absolute():
        return source
    return f"{(base / location).resolve()}:{attribute}"


def _compact(step: dict[str, Any]) -> dict[str, Any]:
    """Drop defaults from a step's YAML form, to keep the file readable."""
    defaults = StepSpec(name="x", source="x:x").model_dump(mode="json")
    return {
        key: value
        for key, value in step.items()
        if key in ("name", "source") or value != defaults.get(key)
    }
