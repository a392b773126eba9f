"""CORS for the publishable-key endpoints, restricted to each merchant's ``allowed_origins``.

A browser's preflight (``OPTIONS``) carries no Authorization header, so it cannot name the
merchant. The preflight is therefore answered for an origin that is in *some* merchant's
``allowed_origins`` (anything else gets 403 and no CORS headers, so the browser never sends
the real request). The real request carries the publishable key: it is refused with 403
(``origin_not_allowed``), before any work is done, unless its Origin is in *that*
merchant's list, and only then does the response echo ``Access-Control-Allow-Origin``.
So a site listed by merchant A can never use merchant B's key, and a confirm from an
unlisted site never executes. Same-origin requests (the demo store, the widget served by
this app) are not CORS and pass untouched.

Secret-key routes get no CORS headers at all: their preflights fall through to the app
(405), and a browser can therefore never call them cross-origin.

Merchants' origin lists are cached for ``cache_seconds`` (default 10 s): a configuration
change takes effect within that time on every worker.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from checkoutlab.api.security import bearer_key, header, is_https, is_public_path, send_error
from checkoutlab.merchants.models import Merchant

ALLOW_METHODS = "POST"
ALLOW_HEADERS = ("authorization", "content-type", "idempotency-key", "x-request-id")
EXPOSE_HEADERS = "Retry-After, Idempotent-Replayed, X-Request-Id"
MAX_AGE = "600"


def _origins(config: Any) -> set[str]:
    listed = config.get("allowed_origins") if isinstance(config, dict) else None
    return {str(o).lower() for o in listed or []}


class MerchantCorsMiddleware:
    def __init__(
        self, app: ASGIApp, *, trust_proxy: bool = False, cache_seconds: float = 10.0
    ) -> None:
        self.app = app
        self.trust_proxy = trust_proxy
        self.cache_seconds = cache_seconds
        self._any: tuple[float, set[str]] = (0.0, set())
        self._by_key: dict[str, tuple[float, set[str] | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin_raw = header(scope, b"origin") if scope["type"] == "http" else None
        if origin_raw is None or not is_public_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        origin = origin_raw.decode("latin-1").strip().lower()
        if origin == self._own_origin(scope):
            await self.app(scope, receive, send)
            return
        database = scope["app"].state.db
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            await self._preflight(scope, send, origin, database)
            return
        key = bearer_key(scope)
        if key is None or not key.startswith("pk_"):
            await self.app(scope, receive, send)  # the app answers 401/403; no CORS headers
            return
        allowed = await self._merchant_origins(database, key)
        if allowed is None:  # unknown key: the app answers 401
            await self.app(scope, receive, send)
            return
        if origin not in allowed:
            await send_error(
                send,
                403,
                "origin_not_allowed",
                f"Origin {origin} is not in this merchant's allowed_origins; add it to the "
                "merchant configuration to call the API from that site.",
                headers={"Vary": "Origin"},
            )
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if not k.lower().startswith(b"access-control-")
                ]
                headers += [
                    (b"access-control-allow-origin", origin_raw.strip()),
                    (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
                    (b"vary", b"Origin"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _own_origin(self, scope: Scope) -> str:
        host = (header(scope, b"host") or b"").decode("latin-1").lower()
        scheme = "https" if is_https(scope, trust_proxy=self.trust_proxy) else "http"
        return f"{scheme}://{host}"

    async def _preflight(self, scope: Scope, send: Send, origin: str, database: Any) -> None:
        method = (header(scope, b"access-control-request-method") or b"").decode().upper()
        requested = (header(scope, b"access-control-request-headers") or b"").decode("latin-1")
        extra = {h.strip().lower() for h in requested.split(",") if h.strip()} - set(ALLOW_HEADERS)
        if origin not in await self._any_origins(database) or method != "POST" or extra:
            await send_error(
                send,
                403,
                "origin_not_allowed",
                "CORS preflight refused: the origin is in no merchant's allowed_origins, or "
                f"the request asks for more than POST with headers {', '.join(ALLOW_HEADERS)}.",
                headers={"Vary": "Origin"},
            )
            return
        headers = [
            (b"access-control-allow-origin", (header(scope, b"origin") or b"").strip()),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ", ".join(ALLOW_HEADERS).encode()),
            (b"access-control-max-age", MAX_AGE.encode()),
            (b"vary", b"Origin"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _any_origins(self, database: Any) -> set[str]:
        loaded_at, origins = self._any
        if time.monotonic() - loaded_at < self.cache_seconds:
            return origins

        def load() -> set[str]:
            with database.session() as session:
                return set().union(*(_origins(c) for c in session.scalars(select(Merchant.config))))

        origins = await anyio.to_thread.run_sync(load)
        self._any = (time.monotonic(), origins)
        return origins

    async def _merchant_origins(self, database: Any, key: str) -> set[str] | None:
        cached = self._by_key.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]

        def load() -> set[str] | None:
            with database.session() as session:
                config = session.scalar(
                    select(Merchant.config).where(Merchant.publishable_key == key)
                )
            return None if config is None else _origins(config)

        origins = await anyio.to_thread.run_sync(load)
        if len(self._by_key) > 10_000:  # bound memory against made-up keys
            self._by_key.clear()
        self._by_key[key] = (time.monotonic(), origins)
        return origins
