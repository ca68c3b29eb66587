"""A zenml repository: the `.zenml/` folder that holds a project's stores.

`zenml init` creates it in the current folder; every other command looks for
it in the current folder and its parents, as git does for `.git/`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zenml.artifacts import ArtifactStore
from zenml.exceptions import StoreError
from zenml.metadata import MetadataStore

logger = logging.getLogger(__name__)

REPOSITORY_DIR = ".zenml"
CONFIG_FILE = "config.yaml"


class Settings(BaseModel):
    """What `.zenml/config.yaml` may set; every field has an embedded default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    artifact_store: str = "artifacts"
    metadata_store: str = "metadata.db"
    orchestrator: str | None = None
    max_parallel_steps: int = Field(default=2, ge=1)
    stop_grace_period: float = Field(default=10.0, ge=0)
    beam_workers: int = Field(default=2, ge=1)


class Repository:
    """The stores of one project."""

    def __init__(self, root: Path, settings: Settings | None = None) -> None:
        self.root = root.resolve()
        self.settings = settings or Settings()

    @property
    def config_dir(self) -> Path:
        return self.root / REPOSITORY_DIR

    @property
    def artifact_root(self) -> Path:
        return (self.config_dir / self.settings.artifact_store).resolve()

    @property
    def metadata_path(self) -> Path:
        return (self.config_dir / self.settings.metadata_store).resolve()

    @property
    def artifact_store(self) -> ArtifactStore:
        return ArtifactStore(self.artifact_root)

    @property
    def metadata(self) -> MetadataStore:
        return MetadataStore(self.metadata_path)

    @classmethod
    def init(cls, folder: Path) -> Repository:
        """Create (or reuse) the stores under `folder/.zenml`."""
        config_dir = folder.resolve() / REPOSITORY_DIR
        config_file = config_dir / CONFIG_FILE
        config_dir.mkdir(parents=True, exist_ok=True)
        if not config_file.exists():
            config_file.write_text(
                "# zenml settings; every key is optional.\n"
                + yaml.safe_dump(Settings().model_dump(exclude_none=True)),
                encoding="utf-8",
            )
        repo = cls.load(folder.resolve())
        repo.artifact_root.mkdir(parents=True, exist_ok=True)
        MetadataStore(repo.metadata_path)  # creates the database and its schema
        return repo

    @classmethod
    def load(cls, root: Path) -> Repository:
        config_file = root / REPOSITORY_DIR / CONFIG_FILE
        data: dict[str, object] = {}
        if config_file.exists():
            try:
                data = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
                settings = Settings.model_validate(data)
            except (yaml.YAMLError, ValidationError) as exc:
                raise StoreError(
                    f"{config_file} is not valid: {exc}\nFix or delete the file; "
                    "deleting it restores the defaults and keeps all stored runs"
                ) from exc
        else:
            settings = Settings()
        return cls(root, settings)

    @classmethod
    def find(cls, start: Path | None = None) -> Repository | None:
        env = os.environ.get("ZENML_REPOSITORY")
        if env:
            return cls.load(Path(env).resolve())
        folder = (start or Path.cwd()).resolve()
        for candidate in (folder, *folder.parents):
            if (candidate / REPOSITORY_DIR).is_dir():
                return cls.load(candidate)
        return None

    @classmethod
    def find_or_init(cls, start: Path | None = None) -> Repository:
        found = cls.find(start)
        if found is not None:
            return found
        folder = (start or Path.cwd()).resolve()
        logger.info("No zenml repository found; creating one in %s", folder)
        return cls.init(folder)
