"""Pipelines: functions that wire steps into a DAG by calling them."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import importlib.util
import inspect
import json
import sys
import traceback
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from zenml.exceptions import (
    PipelineDefinitionError,
    PipelineNotFoundError,
    ZenMLError,
)
from zenml.spec import InputRef, PipelineSpec, StepSpec
from zenml.steps import LOADED_FILES, Step, StepOutput

if TYPE_CHECKING:
    from zenml.runs import RunResult

_COMPILATION: contextvars.ContextVar[_Compilation | None] = contextvars.ContextVar(
    "zenml_compilation", default=None
)


def current_compilation() -> _Compilation | None:
    return _COMPILATION.get()


class _Compilation:
    """Collects the steps a pipeline function calls."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.steps: list[StepSpec] = []

    def add_step(
        self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        name = self._unique_name(str(kwargs.pop("step_name", step.name)))
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"step {step.name!r} called with arguments that do not fit "
                f"{step.name}{step.signature}: {exc}"
            ) from exc
        inputs: dict[str, InputRef] = {}
        parameters: dict[str, Any] = {}
        for arg, value in bound.arguments.items():
            if isinstance(value, StepOutput):
                inputs[arg] = InputRef(step=value.step, output=value.output)
            elif (
                isinstance(value, tuple) and value and isinstance(value[0], StepOutput)
            ):
                raise PipelineDefinitionError(
                    f"argument {arg!r} of step {name!r} got all outputs of step "
                    f"{value[0].step!r}; unpack them and pass one"
                )
            else:
                parameters[arg] = _checked_parameter(name, arg, value)
        self.steps.append(
            StepSpec(
                name=name,
                source=step.source,
                integration=step.integration,
                image=step.image,
                backend=step.backend,
                parameters=parameters,
                inputs=inputs,
                outputs=step.outputs,
                environment=step.environment,
                secrets=step.secrets,
                resources=step.resources,
                timeout=step.timeout,
                cache=step.cache,
            )
        )
        placeholders = tuple(StepOutput(name, output) for output in step.outputs)
        return placeholders[0] if len(placeholders) == 1 else placeholders

    def _unique_name(self, name: str) -> str:
        taken = {s.name for s in self.steps}
        if name not in taken:
            return name
        n = 2
        while f"{name}_{n}" in taken:
            n += 1
        return f"{name}_{n}"


def _checked_parameter(step: str, arg: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise PipelineDefinitionError(
            f"parameter {arg!r} of step {step!r} is a {type(value).__name__}, "
            "which cannot be stored as JSON; pass data between steps as the "
            "output of another step, and plain values as parameters"
        ) from exc


class Pipeline:
    """A function marked with `@pipeline`."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        environment: dict[str, str] | None = None,
        secrets: tuple[str, ...] | list[str] = (),
        on_success: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        self.environment = dict(environment or {})
        self.secrets = tuple(secrets)
        self.on_success = on_success
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<Pipeline {self.name}>"

    def compile(self, **parameters: Any) -> PipelineSpec:
        """Call the pipeline function to record its steps, without running any."""
        signature = inspect.signature(self.func)
        try:
            bound = signature.bind(**parameters)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} takes {signature}; {exc}"
            ) from exc
        bound.apply_defaults()
        self._check_types(bound.arguments)

        compilation = _Compilation(self)
        token = _COMPILATION.set(compilation)
        try:
            self.func(*bound.args, **bound.kwargs)
        finally:
            _COMPILATION.reset(token)
        if not compilation.steps:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} calls no step; call functions marked "
                "@step inside it"
            )
        return PipelineSpec(
            name=self.name,
            code_root=str(_code_root(self.func)),
            parameters=json.loads(json.dumps(dict(bound.arguments), default=str)),
            environment=self.environment,
            secrets=self.secrets,
            steps=tuple(compilation.steps),
        )

    def _check_types(self, arguments: dict[str, Any]) -> None:
        """Refuse a parameter its annotation rules out, before any step runs."""
        from pydantic import TypeAdapter, ValidationError

        try:
            hints = typing.get_type_hints(self.func)
        except Exception:  # names the annotations use that cannot be resolved
            return
        for name, value in arguments.items():
            if name not in hints:
                continue
            try:
                TypeAdapter(hints[name]).validate_python(value)
            except ValidationError as exc:
                wanted = getattr(hints[name], "__name__", str(hints[name]))
                reason = exc.errors()[0]["msg"]
                raise PipelineDefinitionError(
                    f"parameter {name!r} of pipeline {self.name!r} is {wanted}, "
                    f"not {value!r} ({reason})"
                ) from exc

    def run(
        self,
        *,
        orchestrator: str | None = None,
        enable_cache: bool = True,
        **parameters: Any,
    ) -> RunResult:
        """Compile and run the pipeline; raises `RunFailedError` if it fails."""
        from zenml.runs import run_pipeline

        spec = self.compile(**parameters)
        result = run_pipeline(
            spec, orchestrator=orchestrator, enable_cache=enable_cache
        )
        if self.on_success is not None:
            self.on_success(result)
        return result


@overload
def pipeline(func: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(
    *,
    name: str | None = None,
    environment: dict[str, str] | None = None,
    secrets: tuple[str, ...] | list[str] = (),
    on_success: Callable[[RunResult], None] | None = None,
) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Mark a function as a pipeline: the steps it calls become its DAG."""
    if func is not None:
        return Pipeline(func)
    return lambda f: Pipeline(f, **options)


def _code_root(func: Callable[..., Any]) -> Path:
    """The folder whose code a step's container needs: the pipeline's own."""
    module = sys.modules.get(func.__module__)
    file = LOADED_FILES.get(func.__module__) or getattr(module, "__file__", None)
    if file is None:
        return Path.cwd()
    path = Path(file).resolve().parent
    package = module.__package__ if module is not None else None
    for _ in (package or "").split(".") if package else []:
        path = path.parent
    return path


def load_module(path: Path) -> Any:
    """Import a Python file under a name of its own, recording where it lives."""
    path = path.resolve()
    if not path.is_file():
        raise PipelineNotFoundError(
            f"pipeline file {path} does not exist; check the path, or run "
            "`zenml pipeline run` from the folder that holds it"
        )
    if path.suffix != ".py":
        raise PipelineNotFoundError(
            f"{path} is not a Python file; give a .py file that defines a "
            "@pipeline, or a .yaml file written by `zenml pipeline compile`"
        )
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"zenml_user_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PipelineNotFoundError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    LOADED_FILES[module_name] = str(path)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]
        del LOADED_FILES[module_name]
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def load_pipeline(path: Path, name: str | None = None) -> Pipeline:
    """The pipeline a file defines; `name` picks one where there are several.

    A file that fails to import is reported with its own lines of the
    traceback, and a missing module with where to import or install it.
    """
    try:
        module = load_module(path)
    except ZenMLError:
        raise
    except Exception as exc:
        raise PipelineDefinitionError(import_failure(path, exc)) from exc
    found = {
        value.name: value
        for value in vars(module).values()
        if isinstance(value, Pipeline)
    }
    if not found:
        raise PipelineNotFoundError(
            f"{path} defines no pipeline; mark a function with @pipeline "
            "(from zenml import pipeline)"
        )
    if name is not None:
        if name not in found:
            raise PipelineNotFoundError(
                f"{path} defines no pipeline named {name!r}; it has {sorted(found)}"
            )
        return found[name]
    if len(found) > 1:
        raise PipelineNotFoundError(
            f"{path} defines several pipelines {sorted(found)}; pick one with --name"
        )
    return next(iter(found.values()))


def import_failure(path: Path, exc: BaseException) -> str:
    """What went wrong importing the pipeline file `path`, in the user's terms."""
    project = path.resolve().parent
    lines = [
        f"  {frame.filename}, line {frame.lineno}: {frame.line}"
        for frame in traceback.extract_tb(exc.__traceback__)
        if Path(frame.filename).is_relative_to(project)
    ]
    if isinstance(exc, SyntaxError):
        lines.append(f"  {exc.filename}, line {exc.lineno}: {(exc.text or '').strip()}")
        what = f"{path} is not valid Python: {exc.msg}"
    else:
        what = f"importing {path} raised {type(exc).__name__}: {exc}"
    message = "\n".join([what, *lines])
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        message += "\n" + _missing_module_hint(exc.name)
    return message


def _missing_module_hint(module: str) -> str:
    from zenml.integrations.registry import INTEGRATIONS

    top = module.partition(".")[0]
    hint = (
        "A pipeline file is imported where you launch it. Import "
        f"{top} inside the step that needs it (the step runs in its "
        "integration's image, which has it)"
    )
    for integration in INTEGRATIONS.values():
        if any(m.partition(".")[0] == top for m in integration.modules):
            return f"{hint}, or install it here: {integration.pip_command}"
    return hint + ", or install the package that provides it here"
