"""Shared fixtures: a fresh zenml repository per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from zenml.repository import Repository


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    """Stores in a temporary folder, which is also the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZENML_REPOSITORY", raising=False)
    return Repository.init(tmp_path)
