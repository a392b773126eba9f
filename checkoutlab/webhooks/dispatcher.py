"""Delivering merchant webhooks: claim due deliveries, POST them signed, schedule retries.

**Claims, not locks.** A due delivery is claimed by moving its ``next_attempt_at`` a lease
into the future in a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), then
sent with no transaction open. Several dispatchers (the worker, API workers) can therefore
run at once without sending a delivery twice in the normal case, and a dispatcher that
dies mid-send only delays the delivery until its lease expires. Delivery is at least once:
receivers de-duplicate by the event ``id``, as with Stripe.

**Retries.** A non-2xx answer (redirects included: they are not followed), a timeout or a
connection error schedules the next attempt after an exponential backoff with jitter
(``base * 2**(attempt-1)``, capped, then drawn from its upper half), so a receiver that
comes back is not hit by every dispatcher at once. After ``max_attempts`` the delivery is
``failed``; ``checkoutlab webhooks replay`` sends it again.

Time comes from an injectable ``clock`` and jitter from an injectable ``rng``, so tests
step through the whole schedule without sleeping.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import httpx
from sqlalchemy import select, update

from checkoutlab import __version__
from checkoutlab.background import PeriodicTask
from checkoutlab.config import Settings
from checkoutlab.db import Database, utcnow
from checkoutlab.errors import InvalidRequest
from checkoutlab.webhooks.models import OutboundEvent, WebhookDelivery, WebhookEndpoint
from checkoutlab.webhooks.outbound import (
    LENIENT_ENVIRONMENTS,
    check_public_host,
    collect_from_log,
    endpoint_secret,
    pinned_transport,
)
from checkoutlab.webhooks.signing import SIGNATURE_HEADER, signature_header

__all__ = ["Attempt", "Dispatcher", "backoff_delay"]

log = logging.getLogger(__name__)

USER_AGENT: Final = f"Checkoutlab-Webhooks/{__version__}"
_ERROR_LENGTH: Final = 300


def backoff_delay(attempts: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based).

    >>> rng = random.Random(0)
    >>> [30 <= backoff_delay(1, base=60, cap=3600, rng=rng) <= 60 for _ in range(3)]
    [True, True, True]
    >>> backoff_delay(20, base=60, cap=3600, rng=rng) <= 3600
    True
    """
    ceiling = min(cap, base * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Attempt:
    """What one send did; ``status`` is the delivery's status after it."""

    delivery_id: str
    status: str
    status_code: int | None
    error: str | None
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class _Claim:
    delivery_id: str
    endpoint_id: str
    url: str
    secret_salt: str
    payload: dict[str, object]


class Dispatcher(PeriodicTask):
    """Collects payment events from the log and sends due deliveries, every interval.

    Parameters
    ----------
    database
        Where deliveries live.
    settings
        Backoff, attempts, timeout, environment (SSRF checks) and the platform secret.
    client
        An ``httpx.Client`` to send with (tests pass one); by default one with the
        configured timeout, no redirects and no proxy from the environment.
    clock, rng
        Time and jitter sources; real time and a fresh ``random.Random()`` by default.
    """

    thread_name = "webhook-dispatcher"

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        batch_size: int = 50,
    ) -> None:
        self.database = database
        self.settings = settings
        self.client = client
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter only
        self.batch_size = batch_size
        self.interval_seconds = settings.webhook_dispatch_interval_seconds
        self._own_client: httpx.Client | None = None

    # --- PeriodicTask ---------------------------------------------------------------------

    def tick(self) -> None:
        self.collect()
        stopping = getattr(self, "_stop_event", None)
        # A full batch means more may be due; a backlog must not delay stop() for long.
        while len(self.deliver_due()) == self.batch_size:
            if stopping is not None and stopping.is_set():
                break

    def stop(self) -> None:
        super().stop()
        if self._own_client is not None:
            self._own_client.close()
            self._own_client = None

    # --- work -----------------------------------------------------------------------------

    def collect(self) -> int:
        """Outbox events for new payment events of the log (see ``outbound``)."""
        with self.database.session() as db:
            return collect_from_log(db=db, now=self.clock())

    def deliver_due(self, *, only: Sequence[str] | None = None) -> list[Attempt]:
        """Send every delivery due now (or only those of ``only`` that are due)."""
        claims = self._claim(only)
        return [self._send(claim) for claim in claims]

    # --- internals ------------------------------------------------------------------------

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=2 * self.settings.webhook_timeout_seconds + 30)

    def _http(self) -> httpx.Client:
        if self.client is not None:
            return self.client
        if self._own_client is None:
            self._own_client = httpx.Client(
                timeout=httpx.Timeout(self.settings.webhook_timeout_seconds),
                follow_redirects=False,
                trust_env=False,  # never route merchant URLs through an environment proxy
                headers={"User-Agent": USER_AGENT},
                # resolves, checks and connects to the same address (no DNS rebinding)
                transport=pinned_transport(environment=self.settings.environment),
            )
        return self._own_client

    def _claim(self, only: Sequence[str] | None) -> list[_Claim]:
        now = self.clock()
        query = (
            select(WebhookDelivery, OutboundEvent.payload, WebhookEndpoint)
            .join(OutboundEvent, OutboundEvent.id == WebhookDelivery.event_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(self.batch_size)
            .with_for_update(of=WebhookDelivery, skip_locked=True)
        )
        if only is not None:
            query = query.where(WebhookDelivery.id.in_(list(only)))
        claims = []
        with self.database.session() as db:
            for delivery, payload, endpoint in db.execute(query).tuples():
                # Compare-and-set: the claim holds only if the row is still due when we
                # write. Row locks make this redundant on PostgreSQL; SQLite reads outside
                # a write transaction, so two dispatchers can both have read the row.
                due = (
                    WebhookDelivery.id == delivery.id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                if endpoint.status != "enabled":
                    db.execute(
                        update(WebhookDelivery)
                        .where(*due)
                        .values(status="canceled", next_attempt_at=None)
                    )
                    continue
                claimed = db.execute(
                    update(WebhookDelivery).where(*due).values(next_attempt_at=now + self._lease)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    claims.append(
                        _Claim(
                            delivery.id, endpoint.id, endpoint.url, endpoint.secret_salt, payload
                        )
                    )
            db.commit()
        return claims

    def _post(self, claim: _Claim) -> tuple[int | None, str | None]:
        """(status code, error); the error is ours to write, never the receiver's body."""
        if self.settings.environment not in LENIENT_ENVIRONMENTS:
            # Checked again at send time (DNS may have changed since the endpoint was saved)
            # for a clear error; the pinned transport is what enforces it per connection.
            host = httpx.URL(claim.url).host
            try:
                check_public_host(host)
            except InvalidRequest:
                return None, "destination not allowed: the host resolves to a non-public address"
        body = json.dumps(claim.payload, separators=(",", ":")).encode()
        endpoint = WebhookEndpoint(id=claim.endpoint_id, secret_salt=claim.secret_salt)
        secret = endpoint_secret(endpoint, platform_secret=self.settings.secret_key)
        timestamp = int(self.clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature_header(body, secret, timestamp),
        }
        try:
            response = self._http().post(claim.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:_ERROR_LENGTH]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    def _send(self, claim: _Claim) -> Attempt:
        status_code, error = self._post(claim)
        now = self.clock()
        with self.database.session() as db:
            delivery = db.get(WebhookDelivery, claim.delivery_id, with_for_update=True)
            assert delivery is not None
            delivery.attempts += 1
            delivery.last_attempt_at = now
            delivery.last_status_code = status_code
            delivery.last_error = error
            if delivery.status == "canceled":
                pass  # the endpoint was deleted while this attempt was in flight
            elif error is None:
                delivery.status = "succeeded"
                delivery.delivered_at = now
                delivery.next_attempt_at = None
            elif delivery.attempts >= self.settings.webhook_max_attempts:
                delivery.status = "failed"
                delivery.next_attempt_at = None
                log.warning(
                    "webhook delivery %s to endpoint %s failed after %d attempts: %s",
                    delivery.id,
                    claim.endpoint_id,
                    delivery.attempts,
                    error,
                )
            else:
                delay = backoff_delay(
                    delivery.attempts,
                    base=self.settings.webhook_backoff_base_seconds,
                    cap=self.settings.webhook_backoff_max_seconds,
                    rng=self.rng,
                )
                delivery.next_attempt_at = now + timedelta(seconds=delay)
            attempt = Attempt(
                delivery.id, delivery.status, status_code, error, delivery.next_attempt_at
            )
            db.commit()
        return attempt
