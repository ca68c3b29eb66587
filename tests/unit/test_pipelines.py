from __future__ import annotations

from pathlib import Path

import pytest

from zenml import pipeline, step
from zenml.exceptions import PipelineDefinitionError, PipelineNotFoundError
from zenml.pipelines import load_pipeline
from zenml.spec import InputRef

CALLED: list[str] = []


@step
def source(n: int = 2) -> list:
    CALLED.append("source")
    return list(range(n))


@step(outputs=("left", "right"))
def split(items: list, at: int = 1) -> tuple[list, list]:
    return items[:at], items[at:]


@step
def join(left: list, right: list) -> list:
    return left + right


@pipeline
def wired(n: int = 4, at: int = 2):
    left, right = split(source(n=n), at=at)
    join(left, right)


def test_compile_records_steps_wiring_and_parameters() -> None:
    spec = wired.compile(n=5)

    assert [s.name for s in spec.steps] == ["source", "split", "join"]
    assert spec.step("source").parameters == {"n": 5}
    assert spec.step("split").parameters == {"at": 2}
    assert spec.step("split").inputs == {"items": InputRef(step="source")}
    assert spec.step("split").outputs == ("left", "right")
    assert spec.step("join").inputs == {
        "left": InputRef(step="split", output="left"),
        "right": InputRef(step="split", output="right"),
    }
    assert spec.parameters == {"n": 5, "at": 2}
    assert spec.execution_order() == ["source", "split", "join"]


def test_compile_runs_no_step() -> None:
    CALLED.clear()

    wired.compile()

    assert CALLED == []


def test_compile_with_an_unknown_parameter_fails() -> None:
    with pytest.raises(PipelineDefinitionError, match="wired"):
        wired.compile(epochs=3)


def test_a_step_called_twice_gets_a_second_name() -> None:
    @pipeline
    def twice():
        source(n=1)
        source(n=2)
        source(n=3, step_name="third")

    spec = twice.compile()

    assert [s.name for s in spec.steps] == ["source", "source_2", "third"]
    assert spec.step("source_2").parameters == {"n": 2}


def test_step_called_with_wrong_arguments() -> None:
    @pipeline
    def wrong():
        join(source())

    with pytest.raises(PipelineDefinitionError, match="join"):
        wrong.compile()


def test_passing_all_outputs_of_a_step_as_one_input_fails() -> None:
    @pipeline
    def unpacked_not():
        join(split(source()), [])

    with pytest.raises(PipelineDefinitionError, match="unpack"):
        unpacked_not.compile()


def test_a_parameter_that_is_not_json_fails() -> None:
    @pipeline
    def with_object():
        source(n=object())

    with pytest.raises(PipelineDefinitionError, match="JSON"):
        with_object.compile()


def test_a_pipeline_without_steps_fails() -> None:
    @pipeline
    def empty():
        pass

    with pytest.raises(PipelineDefinitionError, match="calls no step"):
        empty.compile()


def test_pipeline_options() -> None:
    @pipeline(name="renamed", environment={"FOO": "bar"})
    def configured():
        source()

    spec = configured.compile()

    assert spec.name == "renamed"
    assert spec.environment == {"FOO": "bar"}


def test_load_pipeline_from_a_file(numbers_file: Path) -> None:
    found = load_pipeline(numbers_file)
    spec = found.compile(n=7)

    assert found.name == "numbers"
    assert spec.code_root == str(numbers_file.parent.resolve())
    assert spec.step("load").source == f"{numbers_file.resolve()}:load"
    assert spec.step("load").parameters == {"n": 7}
    assert spec.step("summarise").outputs == ("total", "count")


def test_load_pipeline_from_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineNotFoundError, match="does not exist"):
        load_pipeline(tmp_path / "nowhere.py")


def test_load_pipeline_from_a_file_that_is_not_python(write_file) -> None:
    path = write_file("pipeline.txt", "nothing")

    with pytest.raises(PipelineNotFoundError, match="not a Python file"):
        load_pipeline(path)


def test_load_pipeline_from_a_file_without_pipeline(write_file) -> None:
    path = write_file("plain.py", "X = 1\n")

    with pytest.raises(PipelineNotFoundError, match="defines no pipeline"):
        load_pipeline(path)


SEVERAL = """
    from zenml import pipeline, step


    @step
    def one() -> int:
        return 1


    @pipeline
    def first():
        one()


    @pipeline(name="second")
    def other():
        one()
"""


def test_load_pipeline_from_a_file_with_several_needs_a_name(write_file) -> None:
    path = write_file("several.py", SEVERAL)

    with pytest.raises(PipelineNotFoundError, match="--name"):
        load_pipeline(path)
    assert load_pipeline(path, "second").name == "second"
    with pytest.raises(PipelineNotFoundError, match="third"):
        load_pipeline(path, "third")


def test_a_file_that_fails_to_import_can_be_loaded_once_fixed(write_file) -> None:
    path = write_file("broken.py", "raise RuntimeError('not yet')\n")
    with pytest.raises(PipelineDefinitionError, match="raised RuntimeError: not yet"):
        load_pipeline(path)

    write_file("broken.py", SEVERAL)

    assert load_pipeline(path, "first").name == "first"


def test_pipeline_run_calls_on_success(numbers_file: Path, tmp_path: Path) -> None:
    seen = []
    found = load_pipeline(numbers_file)
    found.on_success = seen.append

    result = found.run(orchestrator="local", n=2)

    assert [r.run_id for r in seen] == [result.run_id]
    assert result.artifact("report") == "1/2"
    assert (tmp_path / ".zenml").is_dir()
