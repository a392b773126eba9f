"""Database engine, declarative base and Alembic upgrade.

One code path for SQLite (embedded default) and PostgreSQL (production, CI). SQLite gets
WAL and foreign keys so that the demo behaves like the real thing under concurrent
requests.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    Integer,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

log = logging.getLogger(__name__)

#: ``PRAGMA wal_autocheckpoint`` (pages) of SQLite connections while a background
#: checkpointer runs: a safety bound, reached only if the checkpointer falls behind
#: (SQLite's default, 1000 pages, checkpoints on the committing request every ~77 profiles).
BACKGROUND_AUTOCHECKPOINT_PAGES = 20_000

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants 64 bits for event ids.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use checkoutlab.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Stripe-style prefixed ids: readable in logs, unguessable across merchants."""
    return f"{prefix}_{secrets.token_hex(12)}"


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL (None: not SQLite, or in memory)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return path if path and path != ":memory:" else None


def make_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
) -> Engine:
    """The engine of ``url``; its errors never show a statement's parameters (client
    secrets, keys' hashes, e-mail addresses), since unhandled ones are logged.

    PostgreSQL: ``pool_size`` / ``max_overflow`` default to ``CHECKOUTLAB_DB_POOL_SIZE`` /
    ``CHECKOUTLAB_DB_MAX_OVERFLOW``.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if pool_size is None or max_overflow is None:
        from checkoutlab.config import get_settings

        settings = get_settings()
        pool_size = settings.db_pool_size if pool_size is None else pool_size
        max_overflow = settings.db_max_overflow if max_overflow is None else max_overflow
    # pool_pre_ping: connections that died in an outage are replaced, not handed out.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        hide_parameters=True,
    )


class WalCheckpointer:
    """A daemon thread running ``PRAGMA wal_checkpoint(PASSIVE)`` on a SQLite file every
    ``interval`` seconds, so that requests' commits do not pay for the checkpoint.

    PASSIVE never waits for readers or writers; it copies what it can. It uses its own
    connection (none is taken from the engine's pool). :meth:`stop` ends the thread.
    """

    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0  # completed PRAGMA wal_checkpoint calls
        self.last_result: tuple[int, int, int] | None = None  # (busy, wal frames, copied)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint:{Path(path).name}", daemon=True
        )

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.last_result = (int(row[0]), int(row[1]), int(row[2]))
        self.checkpoints += 1

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
                    self.checkpoint(conn)
                except sqlite3.Error as exc:  # e.g. the file was removed; retry next time
                    log.debug("WAL checkpoint failed: %s", exc)
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


class Database:
    """Engine plus session factory; one per process, held by the app and the CLI."""

    def __init__(self, url: str, *, checkpoint_seconds: float | None = None) -> None:
        """``checkpoint_seconds`` (SQLite files only; default
        ``CHECKOUTLAB_SQLITE_CHECKPOINT_SECONDS``): checkpoint the WAL from a background
        thread this often, stopped by :meth:`dispose`; 0 keeps SQLite's auto-checkpoint."""
        self.url = url
        self.checkpointer: WalCheckpointer | None = None
        path = sqlite_path(url)
        if path is not None and checkpoint_seconds is None:
            from checkoutlab.config import get_settings

            checkpoint_seconds = get_settings().sqlite_checkpoint_seconds
        self.engine = make_engine(url)
        if path is not None and checkpoint_seconds:
            checkpointer = self.checkpointer = WalCheckpointer(path, checkpoint_seconds)

            @event.listens_for(self.engine, "connect")
            def _autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
                # Raised only while the thread runs; otherwise (not started, or stopped by
                # dispose) SQLite's default auto-checkpoint keeps the WAL small.
                if checkpointer.running:
                    dbapi_conn.execute(
                        f"PRAGMA wal_autocheckpoint={BACKGROUND_AUTOCHECKPOINT_PAGES}"
                    )

            checkpointer.start()
            # An undisposed Database does not leave its thread behind once collected.
            weakref.finalize(self, checkpointer.stop, 0)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessionmaker() as session:
            yield session

    def upgrade(self) -> None:
        upgrade(self.engine)

    def migrate(self) -> str:
        """Upgrade the schema only when it is behind this code (or missing); returns the
        status found (:func:`checkoutlab.observability.health.schema_status`).

        ``ahead`` (a newer release already migrated the database, during a rolling deploy)
        is left alone: Alembic cannot upgrade from a revision it does not know, and the
        migrations are additive until the old release is gone. On PostgreSQL an advisory
        lock serialises processes starting together (``serve`` and ``worker``), and the
        status is read under it, so the second one finds the schema at head.
        """
        from checkoutlab.observability.health import schema_status

        with migration_lock(self.engine):
            status = schema_status(self.engine)
            if status in ("missing", "behind"):
                self.upgrade()
        return status

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()


def open_database() -> Database:
    """The database the settings name, upgraded to this code's schema: what a one-shot CLI
    command (merchants, experiments, bandits, webhooks, dashboard users) works on."""
    from checkoutlab.config import get_settings

    database = Database(get_settings().database_url)
    database.upgrade()
    return database


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


#: pg_advisory_lock key of schema migrations (any constant 64-bit number; "cklbmigr").
MIGRATION_LOCK_KEY = 0x636B6C626D696772


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock for migrations (a no-op on SQLite, whose
    single writer already serialises the DDL)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})


def upgrade(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration (idempotent).

    ``heads``, not ``head``: work developed in parallel lands as sibling branches off one
    revision until a merge revision joins them; upgrading must not fail in between.
    """
    from alembic import command

    command.upgrade(alembic_config(engine), "heads")


def import_models() -> None:
    """Register every domain's tables on ``Base.metadata`` (Alembic autogenerate, tests)."""
    import checkoutlab.bandits.models
    import checkoutlab.dashboard.models
    import checkoutlab.events.models
    import checkoutlab.experiments.models
    import checkoutlab.fraud.models
    import checkoutlab.merchants.models
    import checkoutlab.payments.models
    import checkoutlab.profile.models
    import checkoutlab.webhooks.models  # noqa: F401
