"""Steps: Python functions that zenml runs, each in the image of its integration."""

from __future__ import annotations

import ast
import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

from zenml.exceptions import PipelineDefinitionError
from zenml.spec import DEFAULT_INTEGRATION, Resources

# Files loaded by zenml under a synthetic module name, mapped back to their path,
# so that a step defined there can be found again inside its container.
LOADED_FILES: dict[str, str] = {}


@dataclass(frozen=True)
class StepOutput:
    """A placeholder for an artifact a step will produce, used while wiring."""

    step: str
    output: str


class Step:
    """A function marked with `@step`.

    Called inside a `@pipeline` function it adds a node to the pipeline and
    returns placeholders for its outputs; called anywhere else it is the plain
    function.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        integration: str = DEFAULT_INTEGRATION,
        image: str | None = None,
        backend: str | None = None,
        outputs: tuple[str, ...] | None = None,
        environment: dict[str, str] | None = None,
        secrets: tuple[str, ...] | list[str] = (),
        resources: Resources | dict[str, Any] | None = None,
        timeout: float | None = None,
        cache: bool = True,
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        self.integration = integration
        self.image = image
        self.backend = backend
        self.outputs = tuple(outputs) if outputs else _outputs_from_annotation(func)
        self.environment = dict(environment or {})
        self.secrets = tuple(secrets)
        self.resources = Resources.model_validate(resources or {})
        self.timeout = timeout
        self.cache = cache
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<Step {self.name} integration={self.integration}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from zenml.pipelines import current_compilation

        compilation = current_compilation()
        if compilation is None:
            return self.func(*args, **kwargs)
        return compilation.add_step(self, args, kwargs)

    @property
    def source(self) -> str:
        """Where the step's function can be imported from inside a container."""
        module = self.func.__module__
        qualname = self.func.__qualname__
        if "<locals>" in qualname:
            raise PipelineDefinitionError(
                f"step {self.name!r} is defined inside a function; define steps "
                "at the top level of a module so their container can import them"
            )
        if module in LOADED_FILES:
            return f"{LOADED_FILES[module]}:{qualname}"
        if module == "__main__":
            main_file = getattr(sys.modules["__main__"], "__file__", None)
            if main_file is None:
                raise PipelineDefinitionError(
                    f"step {self.name!r} is defined in an interactive session; "
                    "put it in a .py file so its container can import it"
                )
            return f"{main_file}:{qualname}"
        return f"{module}:{qualname}"


@overload
def step(func: Callable[..., Any], /) -> Step: ...


@overload
def step(
    *,
    name: str | None = None,
    integration: str = DEFAULT_INTEGRATION,
    image: str | None = None,
    backend: str | None = None,
    outputs: tuple[str, ...] | None = None,
    environment: dict[str, str] | None = None,
    secrets: tuple[str, ...] | list[str] = (),
    resources: Resources | dict[str, Any] | None = None,
    timeout: float | None = None,
    cache: bool = True,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Mark a function as a pipeline step.

    `integration` names the image the step runs in (`base`, `pytorch`, `gcp`,
    `cortex`, ...); `image` names any other image instead. `outputs` names the
    artifacts of a step that returns a tuple. `secrets` names values read from
    the host at run time (an environment variable of that name, or the file
    `.zenml/secrets/NAME`) and handed to the step as environment variables;
    they are never stored, logged or printed.
    """
    if func is not None:
        return Step(func)
    return lambda f: Step(f, **options)


def _outputs_from_annotation(func: Callable[..., Any]) -> tuple[str, ...]:
    """Output names from a `tuple[...]` return annotation, without importing it.

    Annotations are read as text so that a step typed with torch or pandas
    classes can be wired on a machine that has neither installed.
    """
    annotation = inspect.signature(func, eval_str=False).return_annotation
    if annotation is inspect.Signature.empty or annotation is None:
        return ("output",)
    text = annotation if isinstance(annotation, str) else repr(annotation)
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return ("output",)
    if isinstance(node, ast.Subscript) and _name_of(node.value) in ("tuple", "Tuple"):
        elements = (
            node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        )
        if any(isinstance(e, ast.Constant) and e.value is Ellipsis for e in elements):
            return ("output",)
        return tuple(f"output_{i}" for i in range(len(elements)))
    return ("output",)


def _name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""
