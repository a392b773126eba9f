"""The plumbing shared by the provider test doubles: a local HTTP server in a thread.

A double binds 127.0.0.1 on an ephemeral port, records every request it receives, and can be
told to misbehave on the next matching requests (answer 5xx, hang, send a malformed body), so
tests drive the real SDKs through the failure modes a network and a provider produce.

Fault semantics, shared by both doubles:

- ``inject(503)`` (any status ≥ 500): answer with that status straight away and execute
  nothing, as a load balancer or a front end failing before the provider's API runs.
- ``inject("hang")``: execute the request (so its result is stored under its idempotency
  key), then send nothing until the server closes or ``hang_seconds`` pass: the answer is
  lost after the provider acted, the case that reconciliation exists for.
- ``inject("malformed")``: execute the request, then answer 200 with a truncated JSON body.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

Fault = int | Literal["hang", "malformed"]

__all__ = ["DoubleServer", "Fault", "RecordedRequest", "Reply"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    replayable: bool = True  # stored under the idempotency key (False: validation errors)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass
class _PendingFault:
    fault: Fault
    path_prefix: str | None
    remaining: int


class DoubleServer:
    """Base class: subclasses implement :meth:`handle` and :meth:`error_reply`.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, *, hang_seconds: float = 10.0) -> None:
        self.hang_seconds = hang_seconds
        self.latency_seconds = 0.0  # every request takes this long, as over a real network
        self.requests: list[RecordedRequest] = []
        self._faults: list[_PendingFault] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._stored: dict[str, tuple[tuple[str, str, bytes], Reply | None]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> DoubleServer:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                double._serve(self)

            def do_POST(self) -> None:
                double._serve(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # shutdown() waits up to one poll
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._released.set()  # wake hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DoubleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the double first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- test controls --------------------------------------------------------------------

    def inject(self, fault: Fault, *, path: str | None = None, times: int = 1) -> None:
        """Misbehave on the next ``times`` requests whose path starts with ``path``."""
        if isinstance(fault, int) and fault < 500:
            raise ValueError("inject() status faults are 5xx; declines come from test data")
        with self._lock:
            self._faults.append(_PendingFault(fault, path, times))

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    # --- for subclasses -------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def error_reply(self, status: int) -> Reply:
        raise NotImplementedError

    def idempotent(
        self,
        request: RecordedRequest,
        execute: Callable[[], Reply],
        *,
        in_progress: Callable[[], Reply],
        mismatch: Callable[[], Reply] | None = None,
        replay_headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Run ``execute`` once per ``Idempotency-Key``; later requests get the stored reply.

        A request arriving while the first is still executing gets ``in_progress()``; one
        whose method, path or body differ from the first gets ``mismatch()`` when given
        (Stripe), else the stored reply. Replies marked ``replayable=False`` (validation
        errors) are not stored, so the key can be used again.
        """
        key = request.header("Idempotency-Key")
        if not key:
            return execute()
        fingerprint = (request.method, request.path, request.body)
        with self._lock:
            entry = self._stored.get(key)
            if entry is None:
                self._stored[key] = (fingerprint, None)
        if entry is not None:
            stored_fingerprint, stored = entry
            if stored is None:
                return in_progress()
            if mismatch is not None and stored_fingerprint != fingerprint:
                return mismatch()
            return Reply(stored.status, stored.body, {**stored.headers, **(replay_headers or {})})
        try:
            reply = execute()
        except BaseException:
            with self._lock:
                del self._stored[key]
            raise
        with self._lock:
            if reply.replayable:
                self._stored[key] = (fingerprint, reply)
            else:
                del self._stored[key]
        return reply

    # --- internals ------------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for pending in self._faults:
                if pending.path_prefix is None or path.startswith(pending.path_prefix):
                    pending.remaining -= 1
                    if pending.remaining <= 0:
                        self._faults.remove(pending)
                    return pending.fault
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(request)

        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        fault = self._take_fault(request.path)
        if isinstance(fault, int):
            self._send(handler, self.error_reply(fault))
            return
        reply = self.handle(request)
        if fault == "hang":
            self._released.wait(self.hang_seconds)
            return  # the connection closes without an answer
        if fault == "malformed":
            reply = Reply(200, reply.encoded()[: max(1, len(reply.encoded()) // 2)])
        self._send(handler, reply)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        payload = reply.encoded()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to do
