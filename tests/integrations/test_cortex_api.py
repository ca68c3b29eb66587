"""Deploying a Cortex API spec: the CLI when it is there, how to get it when not.

The Cortex CLI cannot be installed here (its package downloads the binary),
so a stand-in script on the PATH records how it was called.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from zenml.exceptions import ZenMLError
from zenml.integrations.cortex.api import deploy, write_cortex_api_spec

STAND_IN = """#!/bin/sh
printf '%s\\n' "$@" > "{calls}"
[ -n "$CORTEX_FAIL" ] && {{ echo "error: $CORTEX_FAIL" >&2; exit 1; }}
echo "creating penguins (RealtimeAPI)"
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return write_cortex_api_spec(
        tmp_path / "cortex.yaml", "penguins", "zenml/cortex:1", "/mnt/model"
    )


@pytest.fixture
def cortex_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `cortex` on the PATH; returns the file its arguments go to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    script = bin_dir / "cortex"
    script.write_text(STAND_IN.format(calls=calls))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    return calls


def test_without_the_cli_the_error_says_how_to_install_and_deploy(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    with pytest.raises(ZenMLError) as failure:
        deploy(spec, env="prod")

    message = str(failure.value)
    assert "not on the PATH" in message and "pip install cortex==" in message
    assert f"cortex deploy {spec} --env prod" in message


def test_the_cli_deploys_the_written_spec_to_the_named_environment(
    spec: Path, cortex_cli: Path
) -> None:
    done = deploy(spec, env="prod")

    assert cortex_cli.read_text().split() == [
        "deploy",
        str(spec),
        "--yes",
        "--env",
        "prod",
    ]
    assert "creating penguins" in done.stdout


def test_a_failing_deploy_shows_what_the_cli_said(
    spec: Path, cortex_cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORTEX_FAIL", "no cluster in environment prod")

    with pytest.raises(ZenMLError, match="no cluster in environment prod"):
        deploy(spec, env="prod")


def test_a_missing_spec_is_named(tmp_path: Path) -> None:
    with pytest.raises(ZenMLError, match="no Cortex API spec"):
        deploy(tmp_path / "nowhere.yaml")


def test_the_spec_module_needs_no_serving_libraries() -> None:
    code = (
        "import sys, zenml.integrations.cortex.api; "
        "print(json.dumps(sorted(m for m in ('onnxruntime', 'fastapi') "
        "if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json; " + code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout) == []
