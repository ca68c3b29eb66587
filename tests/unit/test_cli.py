from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from zenml.cli import main


@pytest.fixture
def zenml() -> Callable[..., Result]:
    """Run the `zenml` command in the test's folder."""

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, [str(a) for a in args])

    return invoke


def text(result: Result) -> str:
    """The command's output with line breaks and indents as single spaces."""
    return " ".join(result.output.split())


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def refused(result: Result, *phrases: str) -> None:
    """The command failed with a message, not a traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in text(result)


def runs(zenml: Callable[..., Result]) -> list[dict]:
    return json.loads(ok(zenml("runs", "list", "--json")).stdout)


def show(zenml: Callable[..., Result], run_id: str) -> dict:
    return json.loads(ok(zenml("runs", "show", run_id, "--json")).stdout)


def test_version(zenml) -> None:
    assert "0.1.0" in ok(zenml("--version")).output


def test_init_creates_the_repository_here(zenml, tmp_path: Path) -> None:
    result = ok(zenml("init"))

    assert "zenml repository in" in text(result)
    assert (tmp_path / ".zenml" / "config.yaml").is_file()
    assert (tmp_path / ".zenml" / "metadata.db").is_file()
    assert (tmp_path / ".zenml" / "artifacts").is_dir()


def test_init_in_a_folder(zenml, tmp_path: Path) -> None:
    ok(zenml("init", "project"))

    assert (tmp_path / "project" / ".zenml" / "config.yaml").is_file()


def test_init_with_an_invalid_config(zenml, tmp_path: Path) -> None:
    (tmp_path / ".zenml").mkdir()
    (tmp_path / ".zenml" / "config.yaml").write_text("parallel: 3\n")

    refused(zenml("init"), "Fix or delete the file")


def test_run_a_pipeline_file_and_inspect_the_run(
    zenml, numbers_file: Path, tmp_path: Path
) -> None:
    result = ok(zenml("pipeline", "run", numbers_file.name, "-o", "local", "-p", "n=4"))

    [run] = runs(zenml)
    assert f"Run {run['id']} completed" in text(result)
    assert f"zenml runs show {run['id']}" in text(result)
    assert run["pipeline"] == "numbers"
    assert run["status"] == "completed"
    assert run["orchestrator"] == "local"
    assert "spec" not in run

    shown = show(zenml, run["id"])
    steps = {s["name"]: s for s in shown["steps"]}
    assert shown["status"] == "completed"
    assert [s["status"] for s in shown["steps"]] == ["completed"] * 3
    assert [s["exit_code"] for s in shown["steps"]] == [0] * 3
    assert sorted(a["name"] for a in steps["summarise"]["artifacts"]) == [
        "count",
        "total",
    ]
    report = steps["report"]["artifacts"][0]
    assert json.loads((Path(report["uri"]) / "data.json").read_text()) == "6/4"
    assert Path(report["uri"]).is_relative_to(tmp_path / ".zenml" / "artifacts")


def test_runs_show_as_a_table(zenml, numbers_file: Path) -> None:
    ok(zenml("pipeline", "run", numbers_file, "-o", "local"))
    [run] = runs(zenml)

    printed = ok(zenml("runs", "show", run["id"][:18])).output
    shown = " ".join(printed.split())

    assert f"Run {run['id']} of pipeline numbers: completed (local" in shown
    for name in ("load", "summarise", "report"):
        assert name in shown
    [report] = [
        step for step in show(zenml, run["id"])["steps"] if step["name"] == "report"
    ]
    artifact = report["artifacts"][0]
    # A path is printed whole on one line, however narrow the terminal.
    assert any(
        f"report.{artifact['name']}" in line and artifact["uri"] in line
        for line in printed.splitlines()
    )


def test_runs_list_as_a_table(zenml, numbers_file: Path) -> None:
    ok(zenml("pipeline", "run", numbers_file, "-o", "local"))
    [run] = runs(zenml)

    listed = text(ok(zenml("runs", "list")))

    assert run["id"] in listed
    assert "numbers" in listed
    assert "completed" in listed


def test_compile_then_run_the_yaml(
    zenml, numbers_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(zenml("pipeline", "run", numbers_file, "-o", "local"))

    compiled = ok(zenml("pipeline", "compile", numbers_file, "-o", "numbers.yaml"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the repository is found in the parent folder
    ok(zenml("pipeline", "run", "../numbers.yaml", "-o", "local"))

    assert "wrote numbers.yaml: 3 steps" in text(compiled)
    first, second = reversed(runs(zenml))
    shown = show(zenml, second["id"])
    # The same steps and parameters as the run from the .py file: all reused.
    assert [s["status"] for s in shown["steps"]] == ["cached"] * 3
    assert all(s["reason"] == f"reused run {first['id']}" for s in shown["steps"])


def test_run_with_a_parameter_and_without_cache(zenml, numbers_file: Path) -> None:
    ok(zenml("pipeline", "run", numbers_file, "-o", "local"))

    ok(zenml("pipeline", "run", numbers_file, "-o", "local", "--no-cache"))
    ok(zenml("pipeline", "run", numbers_file, "-o", "local", "--param", "n=5"))

    newest, no_cache, _ = runs(zenml)
    assert [s["status"] for s in show(zenml, no_cache["id"])["steps"]] == [
        "completed"
    ] * 3
    newest_steps = show(zenml, newest["id"])["steps"]
    assert json.loads(newest_steps[0]["parameters"]) == {"n": 5}
    assert [s["status"] for s in newest_steps] == ["completed"] * 3


def test_runs_logs(zenml, numbers_file: Path) -> None:
    ok(zenml("pipeline", "run", numbers_file, "-o", "local", "-p", "n=2"))
    [run] = runs(zenml)

    every_step = ok(zenml("runs", "logs", run["id"])).stdout.splitlines()
    one_step = ok(zenml("runs", "logs", run["id"], "load")).stdout.splitlines()

    assert "[load] loading 2 numbers" in every_step
    assert one_step == ["[load] loading 2 numbers"]


def test_runs_logs_of_an_unknown_step(zenml, numbers_file: Path) -> None:
    ok(zenml("pipeline", "run", numbers_file, "-o", "local"))
    [run] = runs(zenml)

    refused(zenml("runs", "logs", run["id"], "train"), "has no step 'train'")


def test_a_failed_run(zenml, failing_file: Path) -> None:
    result = zenml("pipeline", "run", failing_file, "-o", "local")

    [run] = runs(zenml)
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Run failed:" in text(result)
    assert "the data is bad" in text(result)
    assert f"zenml runs show {run['id']}" in text(result)
    shown = show(zenml, run["id"])
    assert shown["status"] == "failed"
    assert [(s["name"], s["status"], s["exit_code"]) for s in shown["steps"]] == [
        ("start", "completed", 0),
        ("boom", "failed", 1),
        ("after", "skipped", None),
    ]
    logs = ok(zenml("runs", "logs", run["id"], "boom")).stdout
    assert "[boom] ValueError: the data is bad" in logs


def test_run_a_missing_pipeline_file(zenml) -> None:
    refused(
        zenml("pipeline", "run", "nowhere.py", "-o", "local"),
        "does not exist; check the path",
    )


def test_run_a_file_without_pipeline(zenml, write_file) -> None:
    write_file("plain.py", "X = 1\n")

    refused(
        zenml("pipeline", "run", "plain.py", "-o", "local"),
        "defines no pipeline; mark a function with @pipeline",
    )


def test_a_file_that_fails_to_import_is_shown_at_its_own_line(
    zenml, write_file
) -> None:
    write_file("broken.py", "from zenml import pipeline\nX = 1 / 0\n")

    result = zenml("pipeline", "run", "broken.py", "-o", "local")

    refused(result, "importing broken.py raised ZeroDivisionError: division by zero")
    assert "broken.py, line 2: X = 1 / 0" in text(result)


def test_a_missing_module_at_the_top_of_a_file_says_where_to_import_it(
    zenml, write_file
) -> None:
    # As a top-level `import tensorflow` fails where TensorFlow is not installed.
    write_file(
        "toplevel.py",
        "raise ModuleNotFoundError(\"No module named 'tensorflow'\", "
        "name='tensorflow')\n",
    )

    result = zenml("pipeline", "run", "toplevel.py", "-o", "local")

    refused(result, "Import tensorflow inside the step that needs it")
    assert "pip install 'zenml[tensorflow]'" in text(result)


def test_a_syntax_error_names_the_line(zenml, write_file) -> None:
    write_file("typo.py", "def f(:\n    pass\n")

    refused(zenml("pipeline", "run", "typo.py", "-o", "local"), "is not valid Python")


def test_run_a_missing_yaml(zenml) -> None:
    refused(
        zenml("pipeline", "run", "nowhere.yaml", "-o", "local"),
        "zenml pipeline compile",
    )


def test_run_a_yaml_with_a_cycle(zenml, write_file) -> None:
    write_file(
        "cycle.yaml",
        """
        name: p
        code_root: .
        steps:
          - {name: a, source: "m.py:a", inputs: {x: {step: b}}}
          - {name: b, source: "m.py:b", inputs: {x: {step: a}}}
    """,
    )

    refused(
        zenml("pipeline", "run", "cycle.yaml", "-o", "local"),
        "has a cycle",
        "cannot depend",
    )


def test_compile_a_file_without_pipeline(zenml, write_file, tmp_path: Path) -> None:
    write_file("plain.py", "X = 1\n")

    refused(
        zenml("pipeline", "compile", "plain.py", "-o", "plain.yaml"),
        "defines no pipeline",
    )
    assert not (tmp_path / "plain.yaml").exists()


def test_a_parameter_without_value(zenml, numbers_file: Path) -> None:
    refused(
        zenml("pipeline", "run", numbers_file, "-o", "local", "-p", "n"), "NAME=VALUE"
    )


def test_an_unknown_pipeline_parameter(zenml, numbers_file: Path) -> None:
    refused(
        zenml("pipeline", "run", numbers_file, "-o", "local", "-p", "epochs=3"),
        "pipeline 'numbers' takes",
    )


def test_a_parameter_its_annotation_rules_out_is_refused_before_the_run(
    zenml, numbers_file: Path
) -> None:
    refused(
        zenml("pipeline", "run", numbers_file, "-o", "local", "-p", "n=abc"),
        "parameter 'n' of pipeline 'numbers' is int, not 'abc'",
    )
    assert runs(zenml) == []


def test_a_parameter_for_a_yaml(zenml, numbers_file: Path) -> None:
    ok(zenml("pipeline", "compile", numbers_file, "-o", "numbers.yaml"))

    refused(
        zenml("pipeline", "run", "numbers.yaml", "-o", "local", "-p", "n=2"),
        "edit the YAML instead",
    )


def test_runs_without_repository(zenml) -> None:
    refused(zenml("runs", "list"), "run `zenml init` first")


def test_show_an_unknown_run(zenml) -> None:
    ok(zenml("init"))

    refused(zenml("runs", "show", "20990101"), "zenml runs list")


def test_the_build_display_counts_dockerfile_steps_per_image() -> None:
    from zenml.cli import _BuildProgress

    display = _BuildProgress()
    for line in (
        "  base | Step 1/4 : FROM zenml/python:3.11-bookworm",
        "  base | Step 3/4 : RUN pip install zenml",
        "  gcp | Step 2/6 : COPY requirements.lock /opt/zenml/locks/gcp.lock",
        "  base | Successfully tagged zenml/base:0.1.0-abc",
        "an unrelated line | Step x",
    ):
        display(line)

    tasks = {task.description.split(":")[0]: task for task in display.progress.tasks}
    assert (tasks["base"].completed, tasks["base"].total) == (4, 4)
    assert (tasks["gcp"].completed, tasks["gcp"].total) == (1, 6)
