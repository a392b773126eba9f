"""One pure-ASGI middleware per request: request id, latency metrics, structured access log.

It is the outermost of the app's own middleware, so the id is bound before the security,
rate-limit and audit layers log anything, every answer (401, 413 and 429 included) echoes
``X-Request-Id``, and the latency covers the whole stack. Pure ASGI (no
BaseHTTPMiddleware) keeps streaming responses and background tasks untouched.

The access line (logger ``checkoutlab.access``) replaces uvicorn's: it names the route
template and the request id, and leaves out the query string and client address, which
can carry a client secret or personal data.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from checkoutlab.observability import metrics
from checkoutlab.observability.request_id import (
    HEADER,
    SCOPE_KEY,
    bind_request_id,
    new_request_id,
    valid_request_id,
)

access_log = logging.getLogger("checkoutlab.access")
_HEADER_BYTES = HEADER.lower().encode()


def route_template(scope: Scope) -> str:
    """The matched route's path template; ``unmatched`` when no route matched (404s)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def _printable(path: str) -> str:
    """A path fit for a log line: percent-decoded control characters could forge lines."""
    return "".join(c if c.isprintable() else "?" for c in path[:300])


def _client_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == _HEADER_BYTES:
            return valid_request_id(value.decode("latin-1"))
    return None


class RequestObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or new_request_id()
        scope[SCOPE_KEY] = request_id
        status = 500  # what the outermost error handler answers when the app raises
        started = time.perf_counter()
        id_header = (_HEADER_BYTES, request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != _HEADER_BYTES]
                message["headers"] = [*headers, id_header]
            await send(message)

        metrics.HTTP_IN_FLIGHT.inc()
        with bind_request_id(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                metrics.HTTP_IN_FLIGHT.dec()
                seconds = time.perf_counter() - started
                route = route_template(scope)
                method = scope.get("method", "")
                metrics.observe_request(method, route, status, seconds)
                if access_log.isEnabledFor(logging.INFO):
                    path = _printable(scope.get("path", ""))
                    access_log.info(
                        "%s %s %s %.1f ms",
                        method[:16],
                        path,
                        status,
                        seconds * 1000,
                        extra={
                            "method": method[:16],
                            "route": route,
                            "path": path,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 3),
                        },
                    )
