"""Engine settings: PostgreSQL pool size from settings, SQLite's background WAL checkpoint."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from checkoutlab.config import Settings
from checkoutlab.db import BACKGROUND_AUTOCHECKPOINT_PAGES, Database, make_engine

PG_URL = os.environ.get("CHECKOUTLAB_TEST_DATABASE_URL")


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _write(database: Database, rows: int) -> None:
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"))
        for _ in range(rows):
            conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "x" * 2000})


def _autocheckpoint(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())


def test_pool_defaults_bound_connections_per_worker() -> None:
    settings = Settings()
    # Above the concurrent requests of one busy worker, bounded well under max_connections.
    assert settings.db_pool_size >= 16
    assert settings.db_pool_size + settings.db_max_overflow <= 30


def test_postgresql_pool_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from checkoutlab.config import get_settings

    monkeypatch.setenv("CHECKOUTLAB_DB_POOL_SIZE", "7")
    monkeypatch.setenv("CHECKOUTLAB_DB_MAX_OVERFLOW", "3")
    get_settings.cache_clear()
    try:
        engine = make_engine("postgresql://u@127.0.0.1:1/none")  # no connection is made
        assert engine.pool.size() == 7
        assert engine.pool._max_overflow == 3  # type: ignore[attr-defined]
        assert engine.pool._pre_ping  # outage recovery depends on it
        engine.dispose()
        explicit = make_engine("postgresql://u@127.0.0.1:1/none", pool_size=2, max_overflow=0)
        assert explicit.pool.size() == 2
        explicit.dispose()
    finally:
        get_settings.cache_clear()


def test_background_checkpoint_empties_the_wal_and_stops_on_dispose(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    database = Database(f"sqlite:///{path}", checkpoint_seconds=0.05)
    checkpointer = database.checkpointer
    assert checkpointer is not None and checkpointer.running
    # Requests' connections no longer checkpoint every 1000 pages; the thread does.
    assert _autocheckpoint(database) == BACKGROUND_AUTOCHECKPOINT_PAGES
    _write(database, 1500)  # ~750 pages: the WAL holds them until a checkpoint
    before = checkpointer.checkpoints
    assert _wait(lambda: checkpointer.checkpoints > before + 1)
    busy, frames, copied = checkpointer.last_result or (1, -1, -2)
    assert busy == 0 and frames >= 0 and copied == frames  # every WAL frame is in the db
    # The main file now holds the rows: a copy of it without the WAL has them all.
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    raw = sqlite3.connect(copy)
    assert raw.execute("SELECT count(*) FROM t").fetchone()[0] == 1500
    raw.close()

    database.dispose()
    assert not checkpointer.running
    count = checkpointer.checkpoints
    time.sleep(0.2)
    assert checkpointer.checkpoints == count
    # Without the thread, new connections keep SQLite's default auto-checkpoint.
    assert _autocheckpoint(database) == 1000
    database.dispose()


def test_checkpoint_zero_keeps_sqlite_auto_checkpoint(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'n.db'}", checkpoint_seconds=0)
    assert database.checkpointer is None
    assert _autocheckpoint(database) == 1000
    database.dispose()


def test_no_checkpointer_for_memory_or_postgresql() -> None:
    memory = Database("sqlite:///:memory:", checkpoint_seconds=1)
    assert memory.checkpointer is None
    memory.dispose()


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (CHECKOUTLAB_TEST_DATABASE_URL)")
def test_postgresql_database_has_no_checkpointer() -> None:
    database = Database(PG_URL or "", checkpoint_seconds=1)
    assert database.checkpointer is None
    with database.engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    database.dispose()
