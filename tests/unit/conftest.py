"""Fixtures shared by the unit tests: an isolated folder and small pipeline files.

Steps must live at the top level of an importable .py file, so every pipeline a
test runs is written into that test's own temporary folder.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

# Each step appends its name to calls.txt beside the file, so a test can tell a
# step that ran from one that was reused or skipped.
NUMBERS_PIPELINE = """
from pathlib import Path

from zenml import pipeline, step

CALLS = Path(__file__).with_name("calls.txt")


def _called(name: str) -> None:
    with CALLS.open("a") as handle:
        handle.write(name + "\\n")


@step
def load(n: int = 3) -> list:
    _called("load")
    print(f"loading {n} numbers")
    return list(range(n))


@step(outputs=("total", "count"))
def summarise(numbers: list) -> tuple[int, int]:
    _called("summarise")
    return sum(numbers), len(numbers)


@step
def report(total: int, count: int) -> str:
    _called("report")
    return f"{total}/{count}"


@pipeline
def numbers(n: int = 3):
    data = load(n=n)
    total, count = summarise(data)
    report(total, count)
"""

FAILING_PIPELINE = """
from pathlib import Path

from zenml import pipeline, step

CALLS = Path(__file__).with_name("calls.txt")


def _called(name: str) -> None:
    with CALLS.open("a") as handle:
        handle.write(name + "\\n")


@step
def start() -> int:
    _called("start")
    return 1


@step
def boom(value: int) -> int:
    _called("boom")
    raise ValueError("the data is bad")


@step
def after(value: int) -> int:
    _called("after")
    return value


@pipeline
def failing():
    after(boom(start()))
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test works in its own folder, with no repository chosen for it."""
    monkeypatch.delenv("ZENML_REPOSITORY", raising=False)
    monkeypatch.chdir(tmp_path)
    # Loading a step puts its folder on sys.path; keep that to the one test.
    monkeypatch.setattr(sys, "path", [*sys.path])


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write dedented text to a file in the test's folder."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture
def numbers_file(write_file: Callable[[str, str], Path]) -> Path:
    return write_file("numbers.py", NUMBERS_PIPELINE)


@pytest.fixture
def failing_file(write_file: Callable[[str, str], Path]) -> Path:
    return write_file("failing.py", FAILING_PIPELINE)


@pytest.fixture
def ran(tmp_path: Path) -> Callable[[], list[str]]:
    """The steps of the test pipelines that really ran, in order."""

    def read() -> list[str]:
        path = tmp_path / "calls.txt"
        return path.read_text().split() if path.exists() else []

    return read
