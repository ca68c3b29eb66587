"""The metadata store: pipelines, runs, steps and artifacts, in SQLite.

Only the launching process writes here; steps in containers never touch the
database. Every write is one short transaction, so a launcher killed at any
point leaves the store consistent, and several launchers can share it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zenml.exceptions import StoreError

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL REFERENCES pipelines(name),
    status TEXT NOT NULL,
    orchestrator TEXT NOT NULL,
    spec TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    launcher_pid INTEGER,
    launcher_host TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    integration TEXT,
    image TEXT,
    image_id TEXT,
    image_lock TEXT,
    container TEXT,
    parameters TEXT,
    cache_key TEXT,
    started REAL,
    ended REAL,
    exit_code INTEGER,
    reason TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step TEXT NOT NULL,
    name TEXT NOT NULL,
    uri TEXT NOT NULL,
    materializer TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, step, name)
);
CREATE INDEX IF NOT EXISTS steps_cache ON steps(cache_key, status);
"""

# Run and step states. A run is `running` until its launcher records an end;
# one whose launcher vanished is marked `interrupted` by the next command.
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"
PENDING = "pending"
SKIPPED = "skipped"
CACHED = "cached"

# Each step from one schema to the next; a store is migrated in one transaction,
# adding what the new schema records and keeping everything it holds.
_MIGRATIONS: dict[int, str] = {
    1: "ALTER TABLE steps ADD COLUMN image_lock TEXT",
}


def _migrate(db: sqlite3.Connection, version: int) -> None:
    for step in range(version, SCHEMA_VERSION):
        db.execute(_MIGRATIONS[step])
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))


class MetadataStore:
    """A SQLite database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = sqlite3.connect(path, timeout=60)
        try:
            schema.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use metadata store {path}: {exc}") from exc
        finally:
            schema.close()
        with self._connect() as db:
            found = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if found is None:
                db.execute(
                    "INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(found[0]) < SCHEMA_VERSION:
                _migrate(db, int(found[0]))
            elif int(found[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"metadata store {path} has schema {found[0]}, this zenml "
                    f"reads schema {SCHEMA_VERSION}; use the zenml that wrote it"
                )

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open metadata store {self.path}: {exc}") from exc
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # Writes -------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        pipeline: str,
        orchestrator: str,
        spec: str,
        steps: list[dict[str, Any]],
        launcher_pid: int,
        launcher_host: str,
    ) -> None:
        """Record a new run and all its steps as pending, in one transaction."""
        now = time.time()
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO pipelines VALUES (?, ?)", (pipeline, now))
            db.execute(
                "INSERT INTO runs (id, pipeline, status, orchestrator, spec, started,"
                " launcher_pid, launcher_host) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    pipeline,
                    RUNNING,
                    orchestrator,
                    spec,
                    now,
                    launcher_pid,
                    launcher_host,
                ),
            )
            db.executemany(
                "INSERT INTO steps (run_id, name, status, integration, parameters)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        s["name"],
                        PENDING,
                        s["integration"],
                        json.dumps(s["parameters"], sort_keys=True),
                    )
                    for s in steps
                ],
            )

    def update_step(self, run_id: str, name: str, **fields: Any) -> None:
        columns = ", ".join(f"{key} = ?" for key in fields)
        with self._connect() as db:
            db.execute(
                f"UPDATE steps SET {columns} WHERE run_id = ? AND name = ?",
                (*fields.values(), run_id, name),
            )

    def finish_step(
        self,
        run_id: str,
        name: str,
        status: str,
        artifacts: list[dict[str, Any]],
        **fields: Any,
    ) -> None:
        """Record a step's end and its artifacts together, or neither."""
        now = time.time()
        fields = {"status": status, "ended": now, **fields}
        columns = ", ".join(f"{key} = ?" for key in fields)
        with self._connect() as db:
            db.executemany(
                "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        name,
                        a["name"],
                        a["uri"],
                        a["materializer"],
                        a["size"],
                        now,
                    )
                    for a in artifacts
                ],
            )
            db.execute(
                f"UPDATE steps SET {columns} WHERE run_id = ? AND name = ?",
                (*fields.values(), run_id, name),
            )

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        """Record a run's end; steps that never ended take the run's fate."""
        now = time.time()
        leftover = SKIPPED if status == FAILED else status
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = ?, ended = ?, error = ? WHERE id = ?",
                (status, now, error, run_id),
            )
            db.execute(
                "UPDATE steps SET status = ?, ended = COALESCE(ended, ?) "
                "WHERE run_id = ? AND status IN (?, ?)",
                (leftover, now, run_id, PENDING, RUNNING),
            )

    # Reads --------------------------------------------------------------

    def runs(self, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM runs"
        args: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            args = (status,)
        query += " ORDER BY started DESC LIMIT ?"
        with self._connect() as db:
            return [dict(r) for r in db.execute(query, (*args, limit))]

    def run(self, run_id: str) -> dict[str, Any]:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                row = self._by_prefix(db, run_id)
            run = dict(row)
            run["steps"] = [
                dict(s)
                for s in db.execute(
                    "SELECT * FROM steps WHERE run_id = ? ORDER BY "
                    "COALESCE(started, 1e18), rowid",
                    (run["id"],),
                )
            ]
            artifacts = [
                dict(a)
                for a in db.execute(
                    "SELECT * FROM artifacts WHERE run_id = ?", (run["id"],)
                )
            ]
        for step in run["steps"]:
            step["artifacts"] = [a for a in artifacts if a["step"] == step["name"]]
        return run

    @staticmethod
    def _by_prefix(db: sqlite3.Connection, prefix: str) -> sqlite3.Row:
        # Compared as text, not with LIKE, whose `_` and `%` match any character.
        rows = db.execute(
            "SELECT * FROM runs WHERE substr(id, 1, ?) = ? AND ? != '' "
            "ORDER BY started DESC LIMIT 2",
            (len(prefix), prefix, prefix),
        ).fetchall()
        if len(rows) == 1:
            return rows[0]
        if not rows:
            raise StoreError(
                f"no run {prefix!r} in this store; `zenml runs list` shows the runs"
            )
        raise StoreError(f"run id {prefix!r} is ambiguous; give more of it")

    def cached_step(self, cache_key: str) -> dict[str, Any] | None:
        """The newest finished step with this cache key, with its artifacts."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM steps WHERE cache_key = ? AND status = ? "
                "ORDER BY ended DESC LIMIT 1",
                (cache_key, COMPLETED),
            ).fetchone()
            if row is None:
                return None
            step = dict(row)
            step["artifacts"] = [
                dict(a)
                for a in db.execute(
                    "SELECT * FROM artifacts WHERE run_id = ? AND step = ?",
                    (step["run_id"], step["name"]),
                )
            ]
        return step
