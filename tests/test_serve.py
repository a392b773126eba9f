"""``checkoutlab serve --workers 2`` as operators run it: real processes on SQLite and PostgreSQL.

One server per backend, started as a subprocess on a free port. It must migrate the
database once in the supervisor (no worker logs a migration), answer from two worker
processes that share their Prometheus metrics, log JSON lines with the request id, and on
SIGTERM finish a request that is still arriving before it exits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from checkoutlab.db import Database
from checkoutlab.merchants import service as merchants

PG_URL = os.environ.get("CHECKOUTLAB_TEST_DATABASE_URL")
CHECKOUTLAB = Path(sys.executable).with_name("checkoutlab")
STARTUP_SECONDS = 180  # spawned workers import the whole platform; CI machines are shared


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: serve must create the schema itself.

    On PostgreSQL a database of its own next to the test database, so dropping and
    creating it never waits on the suite's connections to the shared one.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/serve.db"
        return
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("CHECKOUTLAB_TEST_DATABASE_URL is not set; CI must serve on PostgreSQL")
        pytest.skip("needs PostgreSQL (CHECKOUTLAB_TEST_DATABASE_URL)")
    from sqlalchemy.engine import make_url

    name = f"{make_url(PG_URL).database}_serve"
    admin = create_engine(
        make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"serve not ready in {STARTUP_SECONDS}s:\n{log.read_text()[-3000:]}")


def _pids(base: str) -> set[int]:
    def one(_: int) -> int:
        with httpx.Client() as fresh:  # a new connection each time, so the kernel spreads them
            return fresh.get(f"{base}/livez", timeout=5).json()["pid"]

    seen: set[int] = set()
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(8) as pool:
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.update(pool.map(one, range(32)))
    return seen


def _log_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in log.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_serve_two_workers_migrates_once_and_drains_on_sigterm(database_url, tmp_path) -> None:
    url = database_url
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "metrics"
    env = {
        **os.environ,
        "CHECKOUTLAB_DATABASE_URL": url,
        "CHECKOUTLAB_ENVIRONMENT": "test",
        "CHECKOUTLAB_SECRET_KEY": "serve-test-secret-that-is-long-enough-0123456789",
        "CHECKOUTLAB_RISK_SCORER": "rules",
        "CHECKOUTLAB_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "CHECKOUTLAB_RATE_LIMIT_ENABLED": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    command = [str(CHECKOUTLAB), "serve", "--workers", "2", "--port", str(port)]
    command += ["--log-format", "json", "--graceful-timeout", "30"]
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    database = Database(url)
    try:
        _wait_ready(base, process, log)
        with database.session() as db:
            shop = merchants.create(db=db, name="Served")

        # two worker processes answer, and /metrics (from either) knows both
        pids = _pids(base)
        assert len(pids) == 2, pids
        assert process.pid not in pids
        scraped = httpx.get(f"{base}/metrics", timeout=5).text
        for pid in pids:
            assert f'checkoutlab_api_worker_started_timestamp_seconds{{pid="{pid}"}}' in scraped
        assert (
            'checkoutlab_http_requests_total{method="GET",route="/livez",status="200"}' in scraped
        )
        assert any(p.name.startswith("counter_") for p in metrics_dir.iterdir())

        # a request still arriving when SIGTERM comes is finished, then the server exits
        body = json.dumps({"amount": 4321, "currency": "EUR", "customer": "cus_drain"}).encode()
        head = (
            f"POST /v1/checkout_sessions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {shop.secret_key}\r\nContent-Type: application/json\r\n"
            f"X-Request-Id: drain-1\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            conn.sendall(head + body[:10])
            time.sleep(1.5)  # the worker has the request and waits for the rest of its body
            process.send_signal(signal.SIGTERM)
            time.sleep(1.5)  # shutdown has begun
            assert process.poll() is None, "exited before the in-flight request finished"
            conn.sendall(body[10:])
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 201"), answer[:500]
        assert b"x-request-id: drain-1" in rest.lower()
        session_id = json.loads(rest.split(b"\r\n\r\n", 1)[1])["id"]
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    from checkoutlab.payments.models import CheckoutSession

    with database.session() as db:  # the drained request's write is durable
        stored = db.scalars(select(CheckoutSession).where(CheckoutSession.id == session_id)).one()
        assert stored.amount == 4321
    database.dispose()

    lines = _log_lines(log)
    assert lines, log.read_text()[-2000:]
    migrations = [line for line in lines if line["message"].startswith("Running upgrade")]
    assert migrations and {line["pid"] for line in migrations} == {process.pid}
    drained = [line for line in lines if line.get("request_id") == "drain-1"]
    assert drained and drained[-1]["logger"] == "checkoutlab.access"
    assert drained[-1]["status"] == 201 and drained[-1]["route"] == "/v1/checkout_sessions"
    stopped = [line["pid"] for line in lines if line["message"] == "Application shutdown complete."]
    assert sorted(stopped) == sorted(pids)  # both workers ran their shutdown (threads stopped)
    assert shop.secret_key not in log.read_text()


def test_worker_exports_learner_metrics_and_stops_on_sigterm(tmp_path) -> None:
    """``checkoutlab worker`` on its own: learner lag on its metrics port, clean SIGTERM."""
    from datetime import timedelta

    from bandits.test_learner import Log  # tests/ is the import root (no __init__.py)

    from checkoutlab.db import utcnow

    port = _free_port()
    url = f"sqlite:///{tmp_path}/worker.db"
    database = Database(url)
    database.upgrade()
    config = {"ordering_policy": "thompson", "ordering_params": {"seed": 1}}
    with database.session() as db:
        shop = merchants.create(db=db, name="Worker")
    history = Log(database, shop.merchant_id, config)
    t0 = utcnow() - timedelta(hours=2)
    served = [history.serve(t0 + timedelta(seconds=i)) for i in range(3)]
    history.succeed(served[0], t0 + timedelta(minutes=1))  # 4 events: 1 success, 2 windows closed
    database.dispose()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "CHECKOUTLAB_DATABASE_URL": url,
        "CHECKOUTLAB_RETRAIN_INTERVAL_HOURS": "0",
        "CHECKOUTLAB_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
    }
    command = [str(CHECKOUTLAB), "worker", "--interval", "0.2", "--metrics-port", str(port)]
    command += ["--log-format", "json"]
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if "checkoutlab_learner_cursor 4.0" in scraped:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.25)
        assert "checkoutlab_learner_lag_events 0.0" in scraped
        assert 'checkoutlab_learner_rewards_total{outcome="succeeded"} 1.0' in scraped
        assert 'checkoutlab_learner_rewards_total{outcome="window_closed"} 2.0' in scraped
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "worker stopped" in log.read_text()
