"""PostgreSQL unreachable for a few seconds under load: 503 with a clear error, then recovery.

Why a proxy rather than stopping PostgreSQL: the server on this machine (and in CI) is
shared by every other test running at the same time; stopping it would fail them, and
restarting it needs root and takes seconds. From the API's side an outage *is* its
connections dying and new connections being refused, which is exactly what cutting the
proxy does: the listener is closed (connect → "connection refused") and every live
connection is torn down mid-stream (pooled connections die as on a server crash or a
network partition). Then the listener comes back on the same port, as a restarted server
or a healed network would.

During the cut every request must answer **503** ``database_unavailable`` in the platform's
error shape with ``Retry-After`` (never a 500, never a hang), ``/readyz`` says not ready
while ``/livez`` stays 200; after the cut, the same server process answers 2xx again.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import psutil
from sqlalchemy.engine import make_url

from .conftest import assert_error_shape, create_merchant, free_port, server_env

CUT_AT, CUT_FOR, RUN_FOR = 2.0, 3.0, 7.0  # seconds of load; the cut is [2 s, 5 s)
SETTLE = 0.3  # requests started this close to a switch may see either side


class TcpProxy:
    """A loopback TCP forwarder that can be cut (refuse and drop everything) and restored."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._generation = 0  # bumped by every cut: connections of an older one are dropped

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        generation = self._generation
        threading.Thread(target=self._accept, args=(listener, generation), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket, generation: int) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if generation != self._generation:  # cut while connecting
                    client.close()
                    server.close()
                    return
                self._conns |= {client, server}
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._conns -= {a, b}

    def cut(self) -> None:
        assert self._listener is not None
        with self._lock:
            self._generation += 1
            conns, self._conns = list(self._conns), set()
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept() (Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._listener = None
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def restore(self) -> None:
        self.start()

    def stop(self) -> None:
        if self._listener is not None:
            self.cut()


@dataclass
class Answer:
    started: float
    ended: float
    path: str
    status: int  # 0: no HTTP answer at all
    body: object
    retry_after: str | None


def _load(base: str, merchant, stop: threading.Event, answers: list[Answer], t0: float) -> None:
    with httpx.Client(base_url=base, timeout=15) as client:

        def call(method: str, path: str, **kwargs) -> httpx.Response | None:
            started = time.monotonic() - t0
            try:
                response = client.request(method, path, **kwargs)
            except httpx.HTTPError:
                answers.append(Answer(started, time.monotonic() - t0, path, 0, None, None))
                return None
            try:
                body = response.json()
            except ValueError:
                body = response.text
            answers.append(
                Answer(
                    started,
                    time.monotonic() - t0,
                    path,
                    response.status_code,
                    body,
                    response.headers.get("retry-after"),
                )
            )
            return response

        while not stop.is_set():
            created = call(
                "POST",
                "/v1/checkout_sessions",
                json={"amount": 1500, "currency": "EUR"},
                headers=merchant.secret_headers,
            )
            call(
                "POST",
                "/v1/events",
                json={"events": [{"type": "interaction"}]},
                headers=merchant.public_headers,
            )
            if created is not None and created.status_code == 201:
                call(
                    "POST",
                    "/v1/payment_profile",
                    json={"client_secret": created.json()["client_secret"], "context": {}},
                    headers=merchant.public_headers,
                )
            time.sleep(0.01)


def test_database_outage_answers_503_then_recovers_without_restart(pg_url, start_server):
    url = make_url(pg_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432)).start()
    try:
        merchant = create_merchant(pg_url)  # directly, not through the proxy
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        server = start_server(server_env(proxied))
        assert server.proc is not None
        pid = server.proc.pid
        answers: list[Answer] = []
        probes: list[tuple[float, str, int]] = []
        stop = threading.Event()
        t0 = time.monotonic()
        threads = [
            threading.Thread(target=_load, args=(server.base_url, merchant, stop, answers, t0))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(CUT_AT)
            proxy.cut()
            cut_at = time.monotonic() - t0
            time.sleep(CUT_FOR / 2)
            for probe in ("/readyz", "/livez"):
                response = httpx.get(server.base_url + probe, timeout=15)
                probes.append((time.monotonic() - t0, probe, response.status_code))
            time.sleep(max(0.0, t0 + cut_at + CUT_FOR - time.monotonic()))
            proxy.restore()
            restored_at = time.monotonic() - t0
            time.sleep(max(0.0, t0 + RUN_FOR - time.monotonic()))
            for probe in ("/readyz", "/livez"):
                response = httpx.get(server.base_url + probe, timeout=15)
                probes.append((time.monotonic() - t0, probe, response.status_code))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    finally:
        proxy.stop()

    # The same process served throughout: no restart, no crash.
    assert server.proc.poll() is None and psutil.pid_exists(pid)

    before = [a for a in answers if a.ended < cut_at - SETTLE]
    during = [a for a in answers if a.started > cut_at + SETTLE and a.ended < restored_at]
    after = [a for a in answers if a.started > restored_at + 1.0]
    assert len(before) >= 10 and len(during) >= 10 and len(after) >= 10, (
        len(before),
        len(during),
        len(after),
    )
    assert all(200 <= a.status < 300 for a in before), [a for a in before if a.status >= 300]

    assert not [a for a in answers if a.status == 0], "a request got no HTTP answer at all"
    assert not [a for a in answers if a.status == 500], [a for a in answers if a.status == 500][:3]
    for answer in during:
        assert answer.status == 503, answer
        error = assert_error_shape(answer.body)
        assert error["code"] == "database_unavailable", answer
        assert "database" in error["message"].lower(), answer
        assert answer.retry_after is not None and int(answer.retry_after) > 0, answer
        assert answer.ended - answer.started < 5.0, f"a request hung during the outage: {answer}"

    # Recovery: without a restart, everything succeeds again once the database is back.
    assert all(200 <= a.status < 300 for a in after), [a for a in after if a.status >= 300][:3]
    assert {a.path for a in after} >= {
        "/v1/checkout_sessions",
        "/v1/events",
        "/v1/payment_profile",
    }

    assert [(p, s) for _, p, s in probes] == [
        ("/readyz", 503),
        ("/livez", 200),
        ("/readyz", 200),
        ("/livez", 200),
    ], probes
