from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from zenml.exceptions import StoreError
from zenml.metadata import (
    CACHED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    SKIPPED,
    MetadataStore,
)


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    return MetadataStore(tmp_path / "meta" / "metadata.db")


def create(
    store: MetadataStore,
    run_id: str,
    steps: tuple[str, ...] = ("a", "b"),
    pipeline: str = "p",
) -> None:
    store.create_run(
        run_id,
        pipeline,
        "local",
        "{}",
        [{"name": s, "integration": "base", "parameters": {"k": 1}} for s in steps],
        launcher_pid=123,
        launcher_host="host",
    )


def artifact(name: str, uri: str = "/store/x") -> dict:
    return {"name": name, "uri": uri, "materializer": "json", "size": 2}


def test_a_new_run_is_running_with_pending_steps(store: MetadataStore) -> None:
    create(store, "run-1")

    run = store.run("run-1")

    assert run["status"] == RUNNING
    assert run["pipeline"] == "p"
    assert run["launcher_pid"] == 123
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("a", PENDING),
        ("b", PENDING),
    ]
    assert run["steps"][0]["parameters"] == '{"k": 1}'


def test_finish_step_records_status_fields_and_artifacts(store: MetadataStore) -> None:
    create(store, "run-1")
    store.update_step("run-1", "a", status=RUNNING, started=time.time(), image="img")

    store.finish_step(
        "run-1",
        "a",
        COMPLETED,
        [artifact("x", "/store/x"), artifact("y", "/store/y")],
        exit_code=0,
    )
    step = store.run("run-1")["steps"][0]

    assert step["name"] == "a"
    assert step["status"] == COMPLETED
    assert step["image"] == "img"
    assert step["exit_code"] == 0
    assert step["ended"] >= step["started"]
    assert sorted((a["name"], a["uri"]) for a in step["artifacts"]) == [
        ("x", "/store/x"),
        ("y", "/store/y"),
    ]
    assert store.run("run-1")["steps"][1]["artifacts"] == []


def test_finish_step_records_nothing_when_an_artifact_clashes(
    store: MetadataStore,
) -> None:
    create(store, "run-1")
    store.finish_step("run-1", "a", COMPLETED, [artifact("x")])

    with pytest.raises(sqlite3.IntegrityError):
        store.finish_step("run-1", "a", FAILED, [artifact("x")], exit_code=9)
    step = store.run("run-1")["steps"][0]

    assert step["status"] == COMPLETED
    assert step["exit_code"] is None


def test_a_failed_run_marks_leftover_steps_skipped(store: MetadataStore) -> None:
    create(store, "run-1", steps=("a", "b", "c"))
    store.finish_step("run-1", "a", COMPLETED, [])
    store.update_step("run-1", "b", status=RUNNING)

    store.finish_run("run-1", FAILED, "step 'a' failed")
    run = store.run("run-1")

    assert run["status"] == FAILED
    assert run["error"] == "step 'a' failed"
    assert run["ended"] is not None
    assert {s["name"]: s["status"] for s in run["steps"]} == {
        "a": COMPLETED,
        "b": SKIPPED,
        "c": SKIPPED,
    }
    assert all(s["ended"] is not None for s in run["steps"])


def test_an_interrupted_run_marks_leftover_steps_interrupted(
    store: MetadataStore,
) -> None:
    create(store, "run-1")
    store.finish_step("run-1", "a", COMPLETED, [])

    store.finish_run("run-1", INTERRUPTED)

    assert {s["name"]: s["status"] for s in store.run("run-1")["steps"]} == {
        "a": COMPLETED,
        "b": INTERRUPTED,
    }


def test_runs_newest_first_with_limit_and_status(store: MetadataStore) -> None:
    for run_id in ("run-1", "run-2", "run-3"):
        create(store, run_id)
    store.finish_run("run-2", COMPLETED)

    assert [r["id"] for r in store.runs()] == ["run-3", "run-2", "run-1"]
    assert [r["id"] for r in store.runs(limit=1)] == ["run-3"]
    assert [r["id"] for r in store.runs(status=COMPLETED)] == ["run-2"]


def test_run_by_unique_prefix(store: MetadataStore) -> None:
    create(store, "20240101-aaaa")
    create(store, "20240101-bbbb")

    assert store.run("20240101-b")["id"] == "20240101-bbbb"


def test_run_by_ambiguous_prefix(store: MetadataStore) -> None:
    create(store, "20240101-aaaa")
    create(store, "20240101-bbbb")

    with pytest.raises(StoreError, match="ambiguous"):
        store.run("20240101")


def test_missing_run(store: MetadataStore) -> None:
    create(store, "run-1")

    with pytest.raises(StoreError, match="zenml runs list"):
        store.run("nope")
    for pattern in ("", "%", "run_1", "_"):
        with pytest.raises(StoreError, match="no run"):
            store.run(pattern)


def test_cached_step_is_the_newest_completed_one(store: MetadataStore) -> None:
    create(store, "run-1")
    store.update_step("run-1", "a", cache_key="key")
    store.finish_step("run-1", "a", COMPLETED, [artifact("output", "/old")])
    create(store, "run-2")
    store.update_step("run-2", "a", cache_key="key")
    store.finish_step("run-2", "a", COMPLETED, [artifact("output", "/new")])
    create(store, "run-3")
    store.update_step("run-3", "a", cache_key="key")
    store.finish_step("run-3", "a", FAILED, [])

    hit = store.cached_step("key")

    assert hit is not None
    assert hit["run_id"] == "run-2"
    assert [a["uri"] for a in hit["artifacts"]] == ["/new"]


def test_cached_step_ignores_reused_steps_and_other_keys(store: MetadataStore) -> None:
    create(store, "run-1")
    store.update_step("run-1", "a", cache_key="key")
    store.finish_step("run-1", "a", CACHED, [artifact("output")])

    assert store.cached_step("key") is None
    assert store.cached_step("other") is None


def test_reopening_keeps_the_runs(store: MetadataStore) -> None:
    create(store, "run-1")

    assert MetadataStore(store.path).run("run-1")["id"] == "run-1"


def test_a_store_of_another_schema_is_refused(store: MetadataStore) -> None:
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")

    with pytest.raises(StoreError, match="schema 99"):
        MetadataStore(store.path)


# The first schema, with one finished run, as an earlier zenml wrote it.
SCHEMA_1_STORE = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE pipelines (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE runs (
    id TEXT PRIMARY KEY, pipeline TEXT NOT NULL REFERENCES pipelines(name),
    status TEXT NOT NULL, orchestrator TEXT NOT NULL, spec TEXT NOT NULL,
    started REAL NOT NULL, ended REAL, launcher_pid INTEGER, launcher_host TEXT,
    error TEXT
);
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs(id), name TEXT NOT NULL,
    status TEXT NOT NULL, integration TEXT, image TEXT, image_id TEXT,
    container TEXT, parameters TEXT, cache_key TEXT, started REAL, ended REAL,
    exit_code INTEGER, reason TEXT, PRIMARY KEY (run_id, name)
);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO pipelines VALUES ('p', 1.0);
INSERT INTO runs VALUES ('run-1', 'p', 'completed', 'docker', '{}', 1, 2, 1, 'h', NULL);
INSERT INTO steps (run_id, name, status, image_id)
    VALUES ('run-1', 'a', 'completed', 'sha256:abc');
"""


def test_a_store_of_the_first_schema_is_migrated_keeping_its_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "metadata.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1_STORE)

    store = MetadataStore(path)
    store.update_step("run-1", "a", image_lock="f00d")

    [step] = store.run("run-1")["steps"]
    assert (step["image_id"], step["image_lock"]) == ("sha256:abc", "f00d")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta").fetchone() == ("2",)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    path.write_text("not sqlite " * 100)

    with pytest.raises(StoreError, match="cannot use metadata store"):
        MetadataStore(path)
