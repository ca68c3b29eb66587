from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from zenml.exceptions import PipelineDefinitionError, PipelineNotFoundError
from zenml.pipelines import load_pipeline
from zenml.spec import PipelineSpec, StepSpec


def spec_of(*steps: dict, name: str = "p") -> PipelineSpec:
    return PipelineSpec(
        name=name,
        code_root="/code",
        steps=tuple(StepSpec(source=f"m:{s['name']}", **s) for s in steps),
    )


def test_execution_order_puts_every_step_after_its_inputs() -> None:
    spec = spec_of(
        {"name": "c", "inputs": {"x": {"step": "b"}, "y": {"step": "a"}}},
        {"name": "b", "inputs": {"x": {"step": "a"}}},
        {"name": "a"},
    )

    assert spec.execution_order() == ["a", "b", "c"]


def test_a_cycle_is_rejected() -> None:
    with pytest.raises(
        PipelineDefinitionError, match="cycle: (a -> b -> a|b -> a -> b)"
    ):
        spec_of(
            {"name": "a", "inputs": {"x": {"step": "b"}}},
            {"name": "b", "inputs": {"x": {"step": "a"}}},
        )


def test_a_step_reading_its_own_output_is_a_cycle() -> None:
    with pytest.raises(PipelineDefinitionError, match="cycle"):
        spec_of({"name": "a", "inputs": {"x": {"step": "a"}}})


def test_an_input_from_an_unknown_step_is_rejected() -> None:
    with pytest.raises(PipelineDefinitionError, match="'ghost', which is not in"):
        spec_of({"name": "a", "inputs": {"x": {"step": "ghost"}}})


def test_an_input_from_an_unknown_output_is_rejected() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"has only \['output'\]"):
        spec_of(
            {"name": "a"}, {"name": "b", "inputs": {"x": {"step": "a", "output": "y"}}}
        )


def test_duplicate_step_names_are_rejected() -> None:
    with pytest.raises(PipelineDefinitionError, match="several steps named"):
        spec_of({"name": "a"}, {"name": "a"})


def test_a_step_name_with_a_slash_is_rejected() -> None:
    with pytest.raises(ValueError, match="may hold only"):
        StepSpec(name="a/b", source="m:f")


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValueError, match="imgae"):
        StepSpec(name="a", source="m:f", imgae="x")


def test_digest_is_stable_and_changes_with_a_parameter() -> None:
    one = spec_of({"name": "a", "parameters": {"k": 1, "j": 2}})
    same = spec_of({"name": "a", "parameters": {"j": 2, "k": 1}})
    other = spec_of({"name": "a", "parameters": {"k": 2, "j": 2}})

    assert one.digest() == same.digest()
    assert one.digest() != other.digest()


def test_yaml_round_trip(numbers_file: Path, tmp_path: Path) -> None:
    spec = load_pipeline(numbers_file).compile(n=5)
    path = tmp_path / "numbers.yaml"

    spec.to_yaml(path)

    assert PipelineSpec.from_yaml(path) == spec


def test_yaml_holds_paths_relative_to_itself(
    numbers_file: Path, tmp_path: Path
) -> None:
    spec = load_pipeline(numbers_file).compile()
    path = tmp_path / "numbers.yaml"

    spec.to_yaml(path)
    data = yaml.safe_load(path.read_text())

    assert data["code_root"] == "."
    assert [s["source"] for s in data["steps"]] == [
        "numbers.py:load",
        "numbers.py:summarise",
        "numbers.py:report",
    ]
    # Defaults are left out to keep the file readable.
    assert "resources" not in data["steps"][0]


def test_yaml_read_from_another_folder(
    numbers_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_pipeline(numbers_file).compile()
    spec.to_yaml(tmp_path / "numbers.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    loaded = PipelineSpec.from_yaml(Path("../numbers.yaml"))

    assert loaded.code_root == str(tmp_path.resolve())
    assert loaded.step("load").source == f"{numbers_file.resolve()}:load"


def test_yaml_moved_with_its_code_points_at_the_moved_code(
    numbers_file: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(numbers_file, project / "numbers.py")
    load_pipeline(project / "numbers.py").compile().to_yaml(project / "numbers.yaml")

    moved = shutil.move(project, tmp_path / "moved")
    loaded = PipelineSpec.from_yaml(Path(moved) / "numbers.yaml")

    assert loaded.code_root == str(Path(moved).resolve())
    assert loaded.step("load").source == f"{Path(moved).resolve()}/numbers.py:load"


def test_module_sources_are_written_unchanged(tmp_path: Path) -> None:
    spec = spec_of({"name": "a"})
    spec.to_yaml(tmp_path / "p.yaml")

    assert PipelineSpec.from_yaml(tmp_path / "p.yaml").step("a").source == "m:a"


def test_missing_yaml(tmp_path: Path) -> None:
    with pytest.raises(PipelineNotFoundError, match="zenml pipeline compile"):
        PipelineSpec.from_yaml(tmp_path / "missing.yaml")


def test_yaml_that_does_not_parse(write_file) -> None:
    path = write_file("bad.yaml", "name: [unclosed\n")

    with pytest.raises(PipelineNotFoundError, match="not valid YAML"):
        PipelineSpec.from_yaml(path)


@pytest.mark.parametrize("text", ["just text\n", "- a\n- b\n", "name: p\n"])
def test_yaml_that_is_not_a_pipeline(write_file, text: str) -> None:
    path = write_file("other.yaml", text)

    with pytest.raises(PipelineNotFoundError, match="needs `name`, `code_root`"):
        PipelineSpec.from_yaml(path)


def test_yaml_with_an_invalid_step(write_file) -> None:
    path = write_file(
        "invalid.yaml",
        """
        name: p
        code_root: .
        steps:
          - name: a
            source: m:a
            timeout: soon
    """,
    )

    with pytest.raises(PipelineDefinitionError, match="invalid.yaml is not a valid"):
        PipelineSpec.from_yaml(path)


def test_yaml_with_a_cycle(write_file) -> None:
    path = write_file(
        "cycle.yaml",
        """
        name: p
        code_root: .
        steps:
          - {name: a, source: "m:a", inputs: {x: {step: b}}}
          - {name: b, source: "m:b", inputs: {x: {step: a}}}
    """,
    )

    with pytest.raises(PipelineDefinitionError, match="cycle"):
        PipelineSpec.from_yaml(path)
