"""Rate limits on the public (publishable-key) endpoints, per client IP and per key.

Built on the ``limits`` library (moving windows). Storage is in memory by default, which
limits each API worker separately; set ``CHECKOUTLAB_RATE_LIMIT_STORAGE`` to a shared
store (``redis://127.0.0.1:6379``, needs the ``redis`` package) so several workers share
one budget. An exhausted limit answers 429 in the error shape with ``Retry-After``.

The per-IP limit is checked first so a flood of made-up keys is stopped by the address;
the per-key limit counts by the key as sent (hashed), before the key is looked up, so an
over-limit request costs no database query.
"""

from __future__ import annotations

import hashlib
import math
import time

import anyio.to_thread
from limits import RateLimitItem, parse, storage, strategies
from starlette.types import ASGIApp, Receive, Scope, Send

from checkoutlab.api.security import bearer_key, is_public_path, send_error
from checkoutlab.config import Settings
from checkoutlab.deps import client_ip


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.enabled = settings.rate_limit_enabled
        self.trust_proxy = settings.trust_proxy
        self.per_key: RateLimitItem = parse(settings.rate_limit_per_key)
        self.per_ip: RateLimitItem = parse(settings.rate_limit_per_ip)
        self._in_memory = settings.rate_limit_storage.startswith("memory://")
        self._limiter = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(settings.rate_limit_storage)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope["method"] == "OPTIONS"  # CORS preflights carry no key
            or not is_public_path(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        checks: list[tuple[RateLimitItem, str, str]] = [
            (self.per_ip, "ip", client_ip(scope, trust_proxy=self.trust_proxy) or "unknown")
        ]
        key = bearer_key(scope)
        if key is not None and key.startswith("pk_"):
            checks.append((self.per_key, "key", hashlib.sha256(key.encode()).hexdigest()[:32]))
        for item, kind, identity in checks:
            retry_after = await self._hit(item, kind, identity)
            if retry_after is not None:
                what = "this client address" if kind == "ip" else "this publishable key"
                await send_error(
                    send,
                    429,
                    "rate_limited",
                    f"Too many requests from {what} (limit {item}); retry after {retry_after} s.",
                    headers={"Retry-After": str(retry_after)},
                )
                return
        await self.app(scope, receive, send)

    async def _hit(self, item: RateLimitItem, kind: str, identity: str) -> int | None:
        """None when allowed, else the whole seconds until the window admits a request."""

        def hit() -> int | None:
            if self._limiter.hit(item, "checkoutlab", kind, identity):
                return None
            reset_at = self._limiter.get_window_stats(item, "checkoutlab", kind, identity)[0]
            return max(1, math.ceil(reset_at - time.time()))

        if self._in_memory:
            return hit()
        return await anyio.to_thread.run_sync(hit)  # a network store must not block the loop
