"""Liveness, readiness, and 503 (not 500) while the database is unreachable, then recovery."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from checkoutlab.api.app import create_app
from checkoutlab.db import Database, alembic_config

PG_URL = os.environ.get("CHECKOUTLAB_TEST_DATABASE_URL")


def _client(settings, database) -> TestClient:
    return TestClient(create_app(settings, database=database))


def _unavailable(response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["type"] == "api_error"
    assert error["code"] == "database_unavailable"
    assert "retry" in error["message"].lower()
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["X-Request-Id"]


def test_livez_answers_with_the_process_id(client) -> None:
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.json()["pid"] == os.getpid()
    assert client.get("/healthz").json()["status"] == "ok"  # the old endpoint stays


def test_readyz_ready_on_a_migrated_database(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["schema"] == {"status": "at_head"}
    assert body["checks"]["fraud_model"]["status"] == "disabled"


def test_readyz_without_a_champion_is_degraded_but_ready(
    settings, database, tmp_path, monkeypatch
) -> None:
    from checkoutlab.fraud.serving import ChampionWatcher

    # No registry polling: MLflow's own migrations in a background thread would race the
    # Alembic runs of other tests (Alembic's module-level proxies are not thread-safe).
    monkeypatch.setattr(ChampionWatcher, "tick", lambda self: None)
    champion = settings.model_copy(
        update={"risk_scorer": "champion", "mlflow_tracking_uri": f"sqlite:///{tmp_path}/m.db"}
    )
    with _client(champion, database) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["fraud_model"]["status"] == "missing"


def test_readyz_refuses_traffic_until_the_schema_is_at_head(settings, tmp_path) -> None:
    from alembic import command

    empty = Database(f"sqlite:///{tmp_path}/empty.db")
    behind = Database(f"sqlite:///{tmp_path}/behind.db")
    command.upgrade(alembic_config(behind.engine), "0001")
    try:
        for database, status in ((empty, "missing"), (behind, "behind")):
            with _client(settings.model_copy(update={"database_url": database.url}), database) as c:
                response = c.get("/readyz")
                assert response.status_code == 503, response.text
                assert response.json()["status"] == "not_ready"
                assert response.json()["checks"]["schema"] == {"status": status}
                assert c.get("/livez").status_code == 200  # not a reason to restart it
        behind.upgrade()
        with _client(settings.model_copy(update={"database_url": behind.url}), behind) as c:
            assert c.get("/readyz").json()["checks"]["schema"] == {"status": "at_head"}
    finally:
        empty.dispose()
        behind.dispose()


def test_unreachable_postgresql_answers_503_in_the_error_shape(settings) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Database(f"postgresql://postgres@127.0.0.1:{port}/checkoutlab")
    try:
        with _client(settings.model_copy(update={"database_url": down.url}), down) as client:
            _unavailable(
                client.post(
                    "/v1/checkout_sessions",
                    json={"amount": 100, "currency": "EUR"},
                    headers={"Authorization": "Bearer sk_test_whatever"},
                )
            )
            _unavailable(
                client.post(
                    "/v1/payment_profile",
                    json={"client_secret": "cs_x_secret_y"},
                    headers={"Authorization": "Bearer pk_test_whatever"},
                )
            )
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"] == {"status": "unavailable"}
            assert str(port) not in ready.text  # no connection details for the public
            assert client.get("/livez").status_code == 200
    finally:
        down.dispose()


def _failing_sessions(database, monkeypatch, error: BaseException) -> None:
    """Every request's session (``get_db``) fails with ``error``."""

    def broken():
        raise error

    monkeypatch.setattr(database, "sessionmaker", broken)


def _answer(app, path: str, headers) -> object:
    with TestClient(app, raise_server_exceptions=False) as client:
        return client.get(path, headers=headers)


def test_a_database_error_inside_any_route_is_503(app, database, merchant, monkeypatch) -> None:
    import psycopg

    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    _failing_sessions(database, monkeypatch, OperationalError("SELECT 1", {}, lost))
    _unavailable(_answer(app, "/v1/checkout_sessions/cs_1", merchant.secret_headers))


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("database is locked", 503),
        ("unable to open database file", 503),
        ("syntax error", 500),
        ("no such table: checkout_sessions", 500),  # a missing migration is a bug to see
    ],
)
def test_sqlite_operational_errors_are_503_only_when_the_database_is_unavailable(
    app, database, merchant, monkeypatch, message, status
) -> None:
    """sqlite3 uses OperationalError for SQL mistakes too; those stay 500 so bugs show."""
    import sqlite3

    error = OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))
    _failing_sessions(database, monkeypatch, error)
    response = _answer(app, "/v1/checkout_sessions/cs_1", merchant.secret_headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == (
        "database_unavailable" if status == 503 else "internal_error"
    )


def _psycopg_errors():
    import psycopg
    from psycopg import errors

    return {
        "connect failed": (psycopg.OperationalError("connection refused"), 503),
        "admin shutdown": (errors.AdminShutdown("terminating connection"), 503),
        "crash shutdown": (errors.CrashShutdown("crash"), 503),
        "starting up": (errors.CannotConnectNow("the database system is starting up"), 503),
        "too many connections": (errors.TooManyConnections("too many clients"), 503),
        "connection failure": (errors.ConnectionFailure("08006"), 503),
        "deadlock": (errors.DeadlockDetected("deadlock detected"), 503),
        "serialization": (errors.SerializationFailure("could not serialize access"), 503),
        "query canceled": (errors.QueryCanceled("statement timeout"), 500),
        "lock not available": (errors.LockNotAvailable("could not obtain lock"), 500),
        "disk full": (errors.DiskFull("could not extend file"), 500),
    }


@pytest.mark.parametrize("case", list(_psycopg_errors()))
def test_postgresql_errors_are_503_only_for_connection_failures_and_retryable_conflicts(
    app, database, merchant, monkeypatch, caplog, case
) -> None:
    """psycopg makes deadlocks, cancelled queries and full disks OperationalErrors too."""
    import logging

    orig, status = _psycopg_errors()[case]
    _failing_sessions(database, monkeypatch, OperationalError("SELECT 1", {}, orig))
    caplog.set_level(logging.WARNING)
    response = _answer(app, "/v1/checkout_sessions/cs_1", merchant.secret_headers)
    assert response.status_code == status, response.text
    if status == 503:
        _unavailable(response)
    else:
        assert response.json()["error"]["code"] == "internal_error"
    records = [r for r in caplog.records if r.name == "checkoutlab.api.errors"]
    if case in ("deadlock", "serialization") or status == 500:
        # a bug or a concurrency conflict: at ERROR, with the traceback
        assert [r.levelno for r in records] == [logging.ERROR], records
        logged = records[0].getMessage()
        assert "raised at:" in logged and "test_health.py" in logged  # its traceback
    else:
        assert [r.levelno for r in records] == [logging.WARNING], records


def test_a_bug_raised_while_handling_a_database_error_is_500(
    app, database, merchant, monkeypatch
) -> None:
    """Only an explicit ``raise ... from`` counts, not the implicit ``__context__``."""
    import sqlite3

    def broken():
        try:
            raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))
        except OperationalError:
            raise RuntimeError("a bug in the fallback")  # implicit __context__ only

    monkeypatch.setattr(database, "sessionmaker", broken)
    response = _answer(app, "/v1/checkout_sessions/cs_1", merchant.secret_headers)
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "internal_error"

    def wrapped():
        try:
            raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked"))
        except OperationalError as exc:
            raise RuntimeError("the domain wraps it") from exc

    monkeypatch.setattr(database, "sessionmaker", wrapped)
    _unavailable(_answer(app, "/v1/checkout_sessions/cs_1", merchant.secret_headers))


# -- recovery without restart, through a TCP proxy we can cut ------------------------------------


class _Proxy:
    """Forwards a local port to PostgreSQL; ``cut()`` drops every connection and the port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns = []


@pytest.fixture
def pg_proxy() -> Iterator[tuple[_Proxy, str]]:
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("CHECKOUTLAB_TEST_DATABASE_URL is not set; CI must run the PostgreSQL test")
        pytest.skip("needs PostgreSQL (CHECKOUTLAB_TEST_DATABASE_URL)")
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    proxy = _Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    proxied = url.set(drivername="postgresql", host="127.0.0.1", port=proxy.port)
    yield proxy, proxied.render_as_string(hide_password=False)
    proxy.cut()


@pytest.mark.postgres
def test_api_recovers_without_restart_when_postgresql_returns(_databases, pg_proxy) -> None:
    from conftest import TEST_SECRET

    from checkoutlab.config import Settings
    from checkoutlab.merchants import service as merchants

    proxy, url = pg_proxy
    database = Database(url)
    with database.session() as db:
        shop = merchants.create(db=db, name="Outage")
    headers = {"Authorization": f"Bearer {shop.secret_key}"}
    body = {"amount": 1200, "currency": "EUR"}
    settings = Settings(
        environment="test",
        database_url=url,
        secret_key=TEST_SECRET,
        risk_scorer="rules",
        rate_limit_enabled=False,
    )
    try:
        with _client(settings, database) as client:
            assert (
                client.post("/v1/checkout_sessions", json=body, headers=headers).status_code == 201
            )
            proxy.cut()
            _unavailable(client.post("/v1/checkout_sessions", json=body, headers=headers))
            assert client.get("/readyz").status_code == 503
            proxy.start()  # the same port again: PostgreSQL is back
            deadline = time.monotonic() + 10
            while (ready := client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.1)
            again = client.post("/v1/checkout_sessions", json=body, headers=headers)
            assert again.status_code == 201, again.text
    finally:
        database.dispose()
