from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zenml.exceptions import StoreError
from zenml.repository import CONFIG_FILE, REPOSITORY_DIR, Repository, Settings


def test_init_creates_config_and_stores(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path)

    assert repo.root == tmp_path.resolve()
    assert (tmp_path / REPOSITORY_DIR / CONFIG_FILE).is_file()
    assert repo.artifact_root == (tmp_path / ".zenml" / "artifacts").resolve()
    assert repo.artifact_root.is_dir()
    assert repo.metadata_path.is_file()
    assert repo.settings == Settings()


def test_the_written_config_loads_as_the_defaults(tmp_path: Path) -> None:
    Repository.init(tmp_path)

    data = yaml.safe_load((tmp_path / ".zenml" / CONFIG_FILE).read_text())

    assert Settings.model_validate(data) == Settings()


def test_init_again_keeps_the_config_and_the_runs(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path)
    repo.metadata.create_run("run-1", "p", "local", "{}", [], 1, "host")
    (tmp_path / ".zenml" / CONFIG_FILE).write_text("max_parallel_steps: 5\n")

    again = Repository.init(tmp_path)

    assert again.settings.max_parallel_steps == 5
    assert again.metadata.run("run-1")["id"] == "run-1"


def test_settings_move_the_stores(tmp_path: Path) -> None:
    (tmp_path / ".zenml").mkdir()
    (tmp_path / ".zenml" / CONFIG_FILE).write_text(
        "artifact_store: ../data\nmetadata_store: db/meta.sqlite\norchestrator: local\n"
    )

    repo = Repository.init(tmp_path)

    assert repo.artifact_root == (tmp_path / "data").resolve()
    assert repo.metadata_path == (tmp_path / ".zenml" / "db" / "meta.sqlite").resolve()
    assert repo.metadata_path.is_file()
    assert repo.settings.orchestrator == "local"


def test_find_in_a_parent_folder(tmp_path: Path) -> None:
    Repository.init(tmp_path)
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)

    found = Repository.find(inner)

    assert found is not None
    assert found.root == tmp_path.resolve()


def test_find_starts_in_the_current_folder(tmp_path: Path) -> None:
    Repository.init(tmp_path)

    found = Repository.find()

    assert found is not None
    assert found.root == tmp_path.resolve()


def test_find_without_repository(tmp_path: Path) -> None:
    assert Repository.find(tmp_path) is None


def test_find_honours_zenml_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Repository.init(tmp_path / "chosen")
    Repository.init(tmp_path / "here")
    monkeypatch.setenv("ZENML_REPOSITORY", str(tmp_path / "chosen"))

    found = Repository.find(tmp_path / "here")

    assert found is not None
    assert found.root == (tmp_path / "chosen").resolve()


def test_find_or_init_creates_where_there_is_none(tmp_path: Path) -> None:
    repo = Repository.find_or_init()

    assert repo.root == tmp_path.resolve()
    assert repo.metadata_path.is_file()


def test_find_or_init_reuses_a_parent(tmp_path: Path) -> None:
    Repository.init(tmp_path)
    inner = tmp_path / "inner"
    inner.mkdir()

    repo = Repository.find_or_init(inner)

    assert repo.root == tmp_path.resolve()
    assert not (inner / ".zenml").exists()


@pytest.mark.parametrize(
    "text, named",
    [
        ("max_parallel_step: 3\n", "max_parallel_step"),
        ("max_parallel_steps: many\n", "max_parallel_steps"),
        ("max_parallel_steps: 0\n", "greater than or equal to 1"),
        ("stop_grace_period: -5\n", "stop_grace_period"),
        ("beam_workers: 0\n", "beam_workers"),
        ("orchestrator: [a\n", "config.yaml"),
        ("- a list\n", "config.yaml"),
    ],
)
def test_an_invalid_config_says_how_to_fix_it(
    tmp_path: Path, text: str, named: str
) -> None:
    (tmp_path / ".zenml").mkdir()
    (tmp_path / ".zenml" / CONFIG_FILE).write_text(text)

    with pytest.raises(StoreError, match="Fix or delete the file") as error:
        Repository.find(tmp_path)
    assert named in str(error.value)


def test_an_empty_config_is_the_defaults(tmp_path: Path) -> None:
    (tmp_path / ".zenml").mkdir()
    (tmp_path / ".zenml" / CONFIG_FILE).write_text("# nothing set\n")

    found = Repository.find(tmp_path)

    assert found is not None
    assert found.settings == Settings()
