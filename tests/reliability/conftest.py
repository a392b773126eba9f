"""Harness of the fault and load tests: real server processes, a real database, real kills.

Servers run as subprocesses (``uvicorn --factory``, the same app factory ``checkoutlab
serve`` uses) on free loopback ports, configured only through ``CHECKOUTLAB_*`` variables,
with their working directory in the test's tmp dir (no ``.env`` or ``var/`` of the
checkout leaks in). Load is a few threads of httpx clients.

PostgreSQL: ``CHECKOUTLAB_TEST_DATABASE_URL`` names the server; every test that needs it
gets a database of its own (``CREATE DATABASE clrel_<random>``, dropped afterwards), so
the suite's shared database is never touched. Without the variable the PostgreSQL tests
skip locally; under ``CI=true`` they fail, because CI must exercise the real dependency.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy.engine import make_url

from checkoutlab.db import Database
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.schemas import MerchantConfig

PG_URL = os.environ.get("CHECKOUTLAB_TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_SECRET = "reliability-secret-key-that-is-long-enough-0123456789"
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def require_postgres() -> str:
    """The PostgreSQL server URL, or skip (locally) / fail (CI) when there is none."""
    if PG_URL:
        return PG_URL
    message = "needs PostgreSQL: set CHECKOUTLAB_TEST_DATABASE_URL=postgresql://..."
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- databases -------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh, migrated database on the server of ``server_url``; dropped afterwards."""
    import psycopg

    url = make_url(server_url)
    name = f"clrel_{secrets.token_hex(6)}"
    admin = dict(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )
    try:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:  # the server is the dependency: never skip this
        pytest.fail(f"PostgreSQL at {url.host}:{url.port} unreachable: {exc}", pytrace=False)
    db_url = url.set(database=name).render_as_string(hide_password=False)
    database = Database(db_url)
    try:
        database.upgrade()
    finally:
        database.dispose()
    try:
        yield db_url
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@contextlib.contextmanager
def migrated_database(backend: str, directory: Path) -> Iterator[str]:
    """A migrated database: a SQLite file in ``directory``, or a PostgreSQL database."""
    if backend == "sqlite":
        url = f"sqlite:///{directory / 'reliability.db'}"
        database = Database(url)
        database.upgrade()
        database.dispose()
        yield url
    else:
        with postgres_database(require_postgres()) as url:
            yield url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database on every configured backend (like the suite's ``database``)."""
    with migrated_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own (fails under CI without one)."""
    with postgres_database(require_postgres()) as url:
        yield url


# -- merchants ---------------------------------------------------------------------------------


@dataclass
class Merchant:
    id: str
    pk: str
    sk: str

    @property
    def secret_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sk}"}

    @property
    def public_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.pk}"}


def create_merchant(url: str, config: dict[str, Any] | None = None) -> Merchant:
    database = Database(url)
    try:
        with database.session() as session:
            created = merchants.create(
                db=session,
                name="Reliability Shop",
                config=MerchantConfig.model_validate(config or {}),
            )
    finally:
        database.dispose()
    return Merchant(created.merchant_id, created.publishable_key, created.secret_key)


# -- server processes --------------------------------------------------------------------------


def server_env(database_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKOUTLAB_")}
    env.update(
        CHECKOUTLAB_ENVIRONMENT="test",
        CHECKOUTLAB_SECRET_KEY=TEST_SECRET,
        CHECKOUTLAB_DATABASE_URL=database_url,
        CHECKOUTLAB_RISK_SCORER="rules",
        CHECKOUTLAB_RATE_LIMIT_ENABLED="false",
        CHECKOUTLAB_LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    env.update({f"CHECKOUTLAB_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class Server:
    """One ``uvicorn --factory`` server (``workers`` > 1: a master and its worker children)."""

    env: dict[str, str]
    cwd: Path
    workers: int = 1
    factory: str = "checkoutlab.api.app:create_app"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.cwd / f"server-{self.port}.log"

    def start(self, timeout: float = 60.0) -> Server:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            self.factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if self.workers > 1 and len(self.worker_pids()) < self.workers:
                time.sleep(0.1)
                continue
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the master) that serve requests."""
        assert self.proc is not None
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []
        # uvicorn's multiprocessing also starts a resource tracker; workers run the app
        return [
            c.pid
            for c in children
            if "multiprocessing.resource_tracker" not in " ".join(c.cmdline())
            and c.status() != psutil.STATUS_ZOMBIE
        ]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def _start(env: dict[str, str], **options: Any) -> Server:
        server = Server(env=env, cwd=tmp_path, **options)
        started.append(server)
        return server.start()

    yield _start
    for server in started:
        server.stop()


# -- a checkout over HTTP, like the widget ------------------------------------------------------


CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


def new_checkout(client: httpx.Client, merchant: Merchant, amount: int = 2599) -> dict[str, Any]:
    """Create a session (secret key) and fetch its profile (publishable key)."""
    response = client.post(
        "/v1/checkout_sessions",
        json={"amount": amount, "currency": "EUR"},
        headers=merchant.secret_headers,
    )
    assert response.status_code == 201, response.text
    session = response.json()
    response = client.post(
        "/v1/payment_profile",
        json={"client_secret": session["client_secret"], "context": {}},
        headers=merchant.public_headers,
    )
    assert response.status_code == 200, response.text
    return {"session": session, "profile": response.json()}


def confirm_body(checkout: dict[str, Any], card: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "client_secret": checkout["session"]["client_secret"],
        "profile_token": checkout["profile"]["token"],
        "payment_method": {"type": "card", "card": card or CARD},
    }


def assert_error_shape(body: Any) -> dict[str, Any]:
    """The platform's one error shape: {"error": {"type", "code", "message", "param"}}."""
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert {"type", "code", "message"} <= set(error), body
    assert isinstance(error["message"], str) and error["message"], body
    return error
