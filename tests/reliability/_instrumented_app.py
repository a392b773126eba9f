"""App factory for the reliability servers: the product app with its gateway instrumented.

``uvicorn --factory _instrumented_app:create_app`` (``tests/reliability`` is on the server's
PYTHONPATH). The product app is built by :func:`checkoutlab.api.app.create_app` unchanged;
only ``app.state.gateway`` is wrapped:

- ``CL_TEST_GATEWAY_LOG``: every charge the gateway answered is appended to this file, one
  JSON line (pid, session, gateway idempotency key, status, reference), with ``O_APPEND``
  writes that are atomic across worker processes. A SIGKILL after the gateway charged but
  before the platform committed leaves the line behind, which is what "no duplicate gateway
  charge" is checked against.
- ``CL_TEST_GATEWAY_LATENCY``: seconds every charge takes, as a real gateway's round trip
  does (the sandbox answers in microseconds, which would hide the window between charging
  and recording the charge).
- ``CL_TEST_GATEWAY_INFLIGHT``: a directory; while a worker is inside a charge that has
  reached the gateway, a file named after its pid exists there, so a test can SIGKILL a
  worker exactly between "the gateway charged" and "the platform recorded it".
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from checkoutlab.api.app import create_app as product_app


class RecordingGateway:
    def __init__(
        self, inner: Any, log_path: str | None, latency: float, inflight: str | None
    ) -> None:
        self._inner = inner
        self._log_path = log_path
        self._latency = latency
        self._inflight = inflight

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def charge(self, request: Any) -> Any:
        result = self._inner.charge(request)  # the gateway has charged from here on
        if self._log_path:
            line = {
                "pid": os.getpid(),
                "session": request.metadata.get("session_id"),
                "key": request.idempotency_key,
                "status": result.status,
                "reference": result.reference,
            }
            fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (json.dumps(line) + "\n").encode())
            finally:
                os.close(fd)
        marker = Path(self._inflight) / str(os.getpid()) if self._inflight else None
        if marker:
            marker.touch()  # charged, answer not yet back in the platform
        try:
            if self._latency:  # the gateway's answer travelling back
                time.sleep(self._latency)
        finally:
            if marker:
                marker.unlink(missing_ok=True)
        return result


def create_app() -> Any:
    app = product_app()
    app.state.gateway = RecordingGateway(
        app.state.gateway,
        os.environ.get("CL_TEST_GATEWAY_LOG"),
        float(os.environ.get("CL_TEST_GATEWAY_LATENCY", "0")),
        os.environ.get("CL_TEST_GATEWAY_INFLIGHT"),
    )
    return app
