from __future__ import annotations

from pathlib import Path

import pytest

from zenml.artifacts import ArtifactStore
from zenml.entrypoint import Task, import_step_function, main, run_task
from zenml.exceptions import PipelineDefinitionError

STEPS = """
    import sys

    from zenml import step


    @step
    def scale(values: list, factor: int = 1) -> list:
        print("scaling", file=sys.stderr)
        return [v * factor for v in values]


    @step(outputs=("low", "high"))
    def cut(values: list, at: int) -> tuple[list, list]:
        return values[:at], values[at:]


    @step(outputs=("low", "high"))
    def cut_badly(values: list) -> list:
        return values


    @step
    def leave(code: int) -> None:
        sys.exit(code)


    @step
    def crash() -> None:
        raise KeyError("missing column")


    def plain(x: int) -> int:
        return x + 1
"""


@pytest.fixture
def steps_file(write_file) -> Path:
    return write_file("steps.py", STEPS)


@pytest.fixture
def values(tmp_path: Path) -> str:
    """An input artifact holding [1, 2, 3]."""
    uri = tmp_path / "store" / "values"
    ArtifactStore(tmp_path).write([1, 2, 3], uri)
    return str(uri)


def task(steps_file: Path, name: str, **fields) -> Task:
    return Task(
        step=name,
        source=f"{steps_file}:{name}",
        code_root=str(steps_file.parent),
        **fields,
    )


def test_task_file_round_trip(tmp_path: Path) -> None:
    written = Task(
        step="s",
        source="m:s",
        code_root="/code",
        parameters={"k": [1]},
        inputs={"x": "/a"},
        outputs={"output": "/b"},
    )

    written.write(tmp_path / "run" / "task.json")

    assert Task.read(tmp_path / "run" / "task.json") == written


def test_import_step_function_returns_the_plain_function(steps_file: Path) -> None:
    func = import_step_function(f"{steps_file}:scale", str(steps_file.parent))

    assert func([2], factor=3) == [6]
    assert import_step_function(f"{steps_file}:plain", str(steps_file.parent))(1) == 2


def test_import_step_function_from_a_module() -> None:
    assert import_step_function("os.path:join", "/")("a", "b") == "a/b"


def test_import_a_step_the_file_no_longer_has(steps_file: Path) -> None:
    with pytest.raises(PipelineDefinitionError, match="no step 'gone'"):
        import_step_function(f"{steps_file}:gone", str(steps_file.parent))


def test_run_task_reads_inputs_and_writes_the_output(
    steps_file: Path, values: str, tmp_path: Path
) -> None:
    out = tmp_path / "store" / "scaled"

    run_task(
        task(
            steps_file,
            "scale",
            parameters={"factor": 10},
            inputs={"values": values},
            outputs={"output": str(out)},
        )
    )

    assert ArtifactStore.read(out) == [10, 20, 30]


def test_run_task_writes_each_of_several_outputs(
    steps_file: Path, values: str, tmp_path: Path
) -> None:
    low, high = tmp_path / "store" / "low", tmp_path / "store" / "high"

    run_task(
        task(
            steps_file,
            "cut",
            parameters={"at": 1},
            inputs={"values": values},
            outputs={"low": str(low), "high": str(high)},
        )
    )

    assert ArtifactStore.read(low) == [1]
    assert ArtifactStore.read(high) == [2, 3]


def test_main_exits_0_after_a_step_that_succeeded(
    steps_file: Path, values: str, tmp_path: Path
) -> None:
    out = tmp_path / "store" / "scaled"
    task(
        steps_file, "scale", inputs={"values": values}, outputs={"output": str(out)}
    ).write(tmp_path / "task.json")

    assert main([str(tmp_path / "task.json")]) == 0
    assert ArtifactStore.read(out) == [1, 2, 3]


def test_main_exits_1_when_a_step_returns_too_few_outputs(
    steps_file: Path, values: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    low, high = tmp_path / "store" / "low", tmp_path / "store" / "high"
    task(
        steps_file,
        "cut_badly",
        inputs={"values": values},
        outputs={"low": str(low), "high": str(high)},
    ).write(tmp_path / "task.json")

    code = main([str(tmp_path / "task.json")])

    assert code == 1
    assert (
        "declares outputs ['low', 'high'] but returned list" in capsys.readouterr().err
    )
    assert not low.exists()
    assert not high.exists()


def test_a_step_exit_code_propagates(steps_file: Path, tmp_path: Path) -> None:
    task(
        steps_file,
        "leave",
        parameters={"code": 3},
        outputs={"output": str(tmp_path / "out")},
    ).write(tmp_path / "task.json")

    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path / "task.json")])

    assert exited.value.code == 3
    assert not (tmp_path / "out").exists()


def test_a_step_exception_propagates(steps_file: Path, tmp_path: Path) -> None:
    task(steps_file, "crash", outputs={"output": str(tmp_path / "out")}).write(
        tmp_path / "task.json"
    )

    with pytest.raises(KeyError, match="missing column"):
        main([str(tmp_path / "task.json")])


def test_main_exits_1_when_the_step_cannot_be_found(
    steps_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task(steps_file, "gone").write(tmp_path / "task.json")

    assert main([str(tmp_path / "task.json")]) == 1
    assert "was the file changed" in capsys.readouterr().err


def test_main_exits_1_when_an_input_is_missing(
    steps_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task(
        steps_file,
        "scale",
        inputs={"values": str(tmp_path / "never")},
        outputs={"output": str(tmp_path / "out")},
    ).write(tmp_path / "task.json")

    assert main([str(tmp_path / "task.json")]) == 1
    assert "no finished artifact" in capsys.readouterr().err


def test_main_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, "{not json", '{"step": "s"}'])
def test_main_exits_2_for_a_bad_task_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "task.json"
    if content is not None:
        path.write_text(content)

    assert main([str(path)]) == 2
    assert "cannot read task file" in capsys.readouterr().err
