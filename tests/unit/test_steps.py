from __future__ import annotations

import typing
from pathlib import Path

import pytest

from zenml import Step, step
from zenml.exceptions import PipelineDefinitionError
from zenml.pipelines import load_module


@step
def double(x: int) -> int:
    return 2 * x


def test_a_step_called_outside_a_pipeline_is_the_plain_function() -> None:
    assert isinstance(double, Step)
    assert double(4) == 8
    assert double.name == "double"


def test_step_options_are_kept() -> None:
    @step(
        name="trainer",
        integration="pytorch",
        environment={"SEED": "1"},
        resources={"gpus": 1, "memory": "2g"},
        timeout=30,
        cache=False,
    )
    def train() -> None: ...

    assert train.name == "trainer"
    assert train.integration == "pytorch"
    assert train.environment == {"SEED": "1"}
    assert train.resources.gpus == 1
    assert train.resources.memory == "2g"
    assert train.timeout == 30
    assert train.cache is False


def test_unknown_resource_is_rejected() -> None:
    with pytest.raises(ValueError, match="gpu"):
        step(resources={"gpu": 1})(lambda: None)


def test_one_output_without_annotation() -> None:
    assert step(lambda: 1).outputs == ("output",)


def test_outputs_named_explicitly() -> None:
    @step(outputs=("train", "test"))
    def split() -> tuple[list, list]: ...

    assert split.outputs == ("train", "test")


def test_outputs_counted_from_a_tuple_annotation() -> None:
    def three() -> tuple[int, str, float]: ...

    def old_style() -> typing.Tuple[int, int]: ...  # noqa: UP006

    assert step(three).outputs == ("output_0", "output_1", "output_2")
    assert step(old_style).outputs == ("output_0", "output_1")


def test_a_variable_length_or_non_tuple_annotation_is_one_output() -> None:
    def many() -> tuple[int, ...]: ...

    def one() -> list[int]: ...

    assert step(many).outputs == ("output",)
    assert step(one).outputs == ("output",)


def test_annotations_are_read_without_importing_their_libraries(
    write_file,
) -> None:
    path = write_file(
        "typed.py",
        """
        from __future__ import annotations

        from zenml import step


        @step
        def split(data: absent.Frame) -> tuple[absent.Frame, absent.Frame]:
            return data, data
    """,
    )

    module = load_module(path)

    assert module.split.outputs == ("output_0", "output_1")


def test_source_of_a_step_in_a_loaded_file_names_the_file(write_file) -> None:
    path = write_file(
        "steps_here.py",
        """
        from zenml import step


        @step
        def make() -> int:
            return 1
    """,
    )

    module = load_module(path)

    assert module.make.source == f"{path.resolve()}:make"


def test_source_of_a_step_in_an_importable_module_names_the_module() -> None:
    assert double.source == f"{double.func.__module__}:double"


def test_a_step_defined_inside_a_function_cannot_be_imported() -> None:
    @step
    def inner() -> None: ...

    with pytest.raises(PipelineDefinitionError, match="top level"):
        _ = inner.source


def test_a_loaded_file_is_imported_once(write_file) -> None:
    path: Path = write_file(
        "counted.py",
        """
        from zenml import step

        IMPORTS = []
        IMPORTS.append(1)
    """,
    )

    first = load_module(path)
    second = load_module(path)

    assert first is second
    assert first.IMPORTS == [1]
