"""Security middleware: response headers, a request-body size limit, the secret-key audit.

The generated forms contain no script and no inline handler, so pages can run under
``script-src 'self'`` with no ``unsafe-inline``: that is what the widget and the demo store
are tested against in a real browser. Every response gets ``nosniff`` and a
``frame-ancestors 'none'`` policy (JSON too: an API answer is never meant to be framed);
HSTS is sent when the request arrived over TLS, which behind a TLS-terminating proxy is
known only from ``X-Forwarded-Proto`` and so trusted only with ``CHECKOUTLAB_TRUST_PROXY``.

All are pure ASGI (no BaseHTTPMiddleware) so streaming and background tasks are untouched.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from checkoutlab.api.errors import error_body
from checkoutlab.deps import client_ip, is_https
from checkoutlab.merchants import audit

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# For everything that is not a page (JSON, scripts, styles): nothing may frame it.
NON_PAGE_POLICY = "frame-ancestors 'none'"
HSTS = b"max-age=63072000; includeSubDomains"
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]


# The publishable-key (browser) endpoints: rate limited, and the only ones with CORS.
PUBLIC_PATH = re.compile(
    r"^/v1/(payment_profile|elements|events"
    r"|checkout_sessions/[^/]+/confirm|checkout_sessions/[^/]+/payments/[^/]+/challenge)/?$"
)


def is_public_path(path: str) -> bool:
    return PUBLIC_PATH.match(path) is not None


def bearer_key(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, key = value.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """Answer in the one error shape from a middleware (outside the app's handlers)."""
    type_ = "rate_limit_error" if status == 429 else "invalid_request_error"
    body = json.dumps(error_body(type_, code, message)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, trust_proxy: bool = False) -> None:
        self.app = app
        self.trust_proxy = trust_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = is_https(scope, trust_proxy=self.trust_proxy)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [h for h in _COMMON if h[0] not in names]
                content_type = dict(headers).get(b"content-type", b"")
                if b"content-security-policy" not in names:
                    if content_type.startswith(b"text/html"):
                        headers.append(
                            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
                        )
                        headers.append((b"x-frame-options", b"DENY"))
                    else:
                        headers.append((b"content-security-policy", NON_PAGE_POLICY.encode()))
                if https and b"strict-transport-security" not in names:
                    headers.append((b"strict-transport-security", HSTS))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` while the app reads the body; the app's handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is larger than {limit} bytes; send a smaller request.")


class BodySizeLimitMiddleware:
    """413 for a declared Content-Length over the limit, and for streamed bodies that pass it."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = 1_048_576) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = header(scope, b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                await send_error(send, 400, "invalid_content_length", "Invalid Content-Length.")
                return
            if too_large:
                await send_error(send, 413, "payload_too_large", BodyTooLarge(limit).detail)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # read outside the app's exception handlers
            if started:
                raise
            await send_error(send, 413, "payload_too_large", exc.detail)


class AuditMiddleware:
    """Writes the audit row of a secret-key request, with its status, before the response.

    ``deps.secret_key`` fills the :class:`~checkoutlab.merchants.audit.AuditSlot` placed in
    the scope; requests that no secret key authenticated leave it empty and are not logged.
    A failed audit write is logged and does not fail the merchant's request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot = audit.AuditSlot()
        scope[audit.SCOPE_KEY] = slot
        written = False

        async def audited_send(message: Message) -> None:
            nonlocal written
            if message["type"] == "http.response.start" and slot.merchant_id and not written:
                written = True
                await self._write(scope, slot, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        finally:
            if slot.merchant_id and not written:  # the app failed before answering
                await self._write(scope, slot, 500)

    @staticmethod
    async def _write(scope: Scope, slot: audit.AuditSlot, status: int) -> None:
        database: Any = scope["app"].state.db

        def write() -> None:
            with database.session() as session:
                audit.record(
                    db=session,
                    merchant_id=slot.merchant_id or "",
                    key_id=slot.key_id,
                    key_last4=slot.key_last4,
                    method=scope["method"],
                    path=scope["path"],
                    status_code=status,
                    client_ip=slot.client_ip,
                )

        try:
            await anyio.to_thread.run_sync(write)
        except Exception:
            log.exception("audit log write failed for %s %s", scope["method"], scope["path"])


def install(app: Any, settings: Any) -> None:
    """Add the hardening middleware in their order (idempotent; replaces a bare
    ``SecurityHeadersMiddleware``). Outermost first: security headers (on every answer,
    413/429/403 included), CORS (so a browser can read a 429), rate limits, body size,
    audit (which sees the final status of the app's answer).
    """
    from checkoutlab.api.cors import MerchantCorsMiddleware
    from checkoutlab.api.ratelimit import RateLimitMiddleware

    ours = {
        SecurityHeadersMiddleware,
        MerchantCorsMiddleware,
        RateLimitMiddleware,
        BodySizeLimitMiddleware,
        AuditMiddleware,
    }
    app.user_middleware[:] = [m for m in app.user_middleware if m.cls not in ours]
    app.add_middleware(AuditMiddleware)  # add_middleware puts each one outside the last
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitMiddleware, settings=settings)
    app.add_middleware(MerchantCorsMiddleware, trust_proxy=settings.trust_proxy)
    app.add_middleware(SecurityHeadersMiddleware, trust_proxy=settings.trust_proxy)


__all__ = [
    "AuditMiddleware",
    "BodySizeLimitMiddleware",
    "SecurityHeadersMiddleware",
    "bearer_key",
    "client_ip",
    "header",
    "install",
    "is_https",
    "is_public_path",
    "send_error",
]
