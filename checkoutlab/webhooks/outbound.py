"""Merchant webhook endpoints and the outbox of events they receive.

**Where events come from.** Deliveries are driven by an outbox (``webhook_events``), not by
reading the event log at send time:

- the event log is append-only and shaped for learners (one row per server fact, no
  delivery state), while a webhook needs per-endpoint state that changes (attempts, next
  attempt, last error), and a stable payload that a replay re-sends byte for byte;
- an outbox row is written in the same transaction as the change it reports, so a
  committed payment change always has its event, and a rolled-back one never does.

Confirm (owned by the payments domain) already writes ``payment_succeeded`` /
``payment_failed`` to the event log in its transaction, so :func:`collect_from_log` turns
those into outbox events by cursor (the learners' pattern: the cursor advances in the same
transaction as the inserts, and a ``log:<id>`` dedupe key makes a rerun harmless). The
inbound gateway webhooks write payment changes to the event log too (the bandit learner
needs them as rewards) and so reach merchants the same way; disputes and refunds, which
the event log has no types for, go straight to the outbox with :func:`emit`.

Events are only written for merchants that have an endpoint subscribed to the type, like
Stripe: an endpoint receives what happens after it was created.

**Endpoint secrets** are not stored: each is an HMAC of the endpoint's id and a random salt
under the platform's ``CHECKOUTLAB_SECRET_KEY``, recomputed to sign. A leaked database alone
therefore cannot forge webhooks; rotating the platform secret changes every endpoint's
signing secret (re-create the endpoints, as for profile tokens).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import ssl
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import InvalidRequest, NotFound
from checkoutlab.events.service import read_since
from checkoutlab.webhooks.models import (
    OutboundEvent,
    WebhookCursor,
    WebhookDelivery,
    WebhookEndpoint,
)
from checkoutlab.webhooks.schemas import (
    DeliveryRead,
    EndpointCreate,
    EndpointRead,
)
from checkoutlab.webhooks.signing import SECRET_PREFIX

log = logging.getLogger(__name__)

LOG_TYPES: Final = {"payment_succeeded": "payment.succeeded", "payment_failed": "payment.failed"}
CURSOR_NAME: Final = "webhooks"
LENIENT_ENVIRONMENTS: Final = frozenset({"development", "test"})
MAX_ENDPOINTS_PER_MERCHANT: Final = 16


# --- endpoint URLs (SSRF) -----------------------------------------------------------------


def validate_url(url: str, *, environment: str) -> str:
    """Refuse URLs the platform must not call; answers the URL unchanged when it is fine.

    Outside development and test an endpoint needs https and a host that resolves only to
    public addresses: otherwise any merchant could make the platform's servers POST to
    its internal network or cloud metadata service (SSRF). Credentials in the URL are
    refused everywhere, because URLs are shown in listings and logs.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest(
            "The endpoint URL must be an absolute https:// URL, e.g. https://shop.example/hooks.",
            code="invalid_url",
            param="url",
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "Put no credentials in the endpoint URL; verify the Checkoutlab-Signature header "
            "with your endpoint's secret instead.",
            code="invalid_url",
            param="url",
        )
    if environment in LENIENT_ENVIRONMENTS:
        return url
    if parts.scheme != "https":
        raise InvalidRequest("The endpoint URL must use https.", code="insecure_url", param="url")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port not in (None, HTTPS_PORT):
        raise InvalidRequest(
            "The endpoint URL must use the standard https port (443); other ports could reach "
            "services that are not web servers.",
            code="url_not_allowed",
            param="url",
        )
    check_public_host(parts.hostname)
    return url


HTTPS_PORT: Final = 443


def check_public_host(host: str) -> None:
    """Raise unless every address ``host`` resolves to is public (not private, loopback, ...).

    Every address counts, not the first: a name with one public and one private record
    could otherwise be used to reach the private one.
    """
    public_addresses(host)


def public_addresses(host: str) -> list[str]:
    """The addresses ``host`` resolves to, all checked public; else InvalidRequest."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise InvalidRequest(
            f"The endpoint host {host!r} does not resolve.", code="invalid_url", param="url"
        ) from None
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]
        address = ipaddress.ip_address(text)
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        if not address.is_global or address.is_multicast:
            raise InvalidRequest(
                f"The endpoint host {host!r} resolves to a non-public address; webhooks are "
                "only sent to public internet addresses.",
                code="url_not_allowed",
                param="url",
            )
        if str(address) not in addresses:
            addresses.append(str(address))
    return addresses


class PinnedNetworkBackend(httpcore.NetworkBackend):
    """Connects only to addresses it has just resolved and checked: no DNS rebinding.

    Checking a host and then letting the HTTP client resolve it again leaves a window in
    which a merchant's DNS can answer a public address to the check and ``127.0.0.1`` or
    the cloud metadata address to the connection. Here the name is resolved once, every
    address is checked (:func:`public_addresses`), and the socket connects to a checked
    address itself. httpcore still passes the URL's host name for TLS (SNI and certificate
    verification) and httpx sends it as the Host header, so receivers see no difference.
    Outside development and test only port 443 is allowed.
    """

    def __init__(self, *, strict: bool, inner: httpcore.NetworkBackend | None = None) -> None:
        self.strict = strict
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if not self.strict:
            return self._inner.connect_tcp(
                host,
                port,
                timeout=timeout,
                local_address=local_address,
                socket_options=socket_options,
            )
        if port != HTTPS_PORT:
            raise httpcore.ConnectError(f"destination not allowed: port {port} (only 443)")
        try:
            addresses = public_addresses(host)
        except InvalidRequest as exc:
            raise httpcore.ConnectError(f"destination not allowed: {exc}") from None
        error: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:  # the next checked address, if any
                error = exc
        assert error is not None  # public_addresses never answers an empty list
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("destination not allowed: unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def pinned_transport(*, environment: str) -> httpx.HTTPTransport:
    """An httpx transport for merchant URLs that connects through
    :class:`PinnedNetworkBackend` (strict outside development and test).

    httpx's transport has no public way to choose httpcore's network backend, so its
    connection pool is replaced by an equivalent one (certificate verification with
    certifi's roots, HTTP/1.1) that uses the pinned backend.
    """
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(  # a private attribute: see the docstring
        ssl_context=ssl.create_default_context(cafile=certifi.where()),
        network_backend=PinnedNetworkBackend(strict=environment not in LENIENT_ENVIRONMENTS),
    )
    return transport


# --- endpoints ----------------------------------------------------------------------------


def endpoint_secret(endpoint: WebhookEndpoint, *, platform_secret: str) -> str:
    """The endpoint's signing secret, recomputed from its id and salt (never stored)."""
    message = f"checkoutlab.webhook_endpoint:{endpoint.id}:{endpoint.secret_salt}".encode()
    digest = hmac.new(platform_secret.encode(), message, hashlib.sha256).digest()
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def endpoint_read(endpoint: WebhookEndpoint) -> EndpointRead:
    return EndpointRead.model_validate(endpoint, from_attributes=True)


def create_endpoint(
    *,
    db: Session,
    merchant_id: str,
    data: EndpointCreate,
    platform_secret: str,
    environment: str,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its signing secret (show that once)."""
    validate_url(data.url, environment=environment)
    if len(list_endpoints(db=db, merchant_id=merchant_id)) >= MAX_ENDPOINTS_PER_MERCHANT:
        raise InvalidRequest(
            f"A merchant can have at most {MAX_ENDPOINTS_PER_MERCHANT} webhook endpoints; "
            "delete one first.",
            code="too_many_endpoints",
        )
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        merchant_id=merchant_id,
        url=data.url,
        description=data.description,
        enabled_events=list(data.enabled_events),
        secret_salt=secrets.token_hex(16),
        secret_last4="",
        status="enabled",
        created_at=utcnow(),
    )
    secret = endpoint_secret(endpoint, platform_secret=platform_secret)
    endpoint.secret_last4 = secret[-4:]
    db.add(endpoint)
    db.commit()
    return endpoint, secret


def list_endpoints(*, db: Session, merchant_id: str) -> list[WebhookEndpoint]:
    return list(
        db.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.merchant_id == merchant_id, WebhookEndpoint.status == "enabled")
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def get_endpoint(*, db: Session, merchant_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = db.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.merchant_id == merchant_id,
            WebhookEndpoint.status == "enabled",
        )
    )
    if endpoint is None:
        raise NotFound(f"No such webhook endpoint: '{endpoint_id}'", param="id")
    return endpoint


def delete_endpoint(*, db: Session, merchant_id: str, endpoint_id: str) -> WebhookEndpoint:
    """Stop sending to an endpoint; its pending deliveries are canceled, history is kept."""
    endpoint = get_endpoint(db=db, merchant_id=merchant_id, endpoint_id=endpoint_id)
    now = utcnow()
    endpoint.status = "deleted"
    endpoint.deleted_at = now
    for delivery in db.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending"
        )
    ):
        delivery.status = "canceled"
        delivery.next_attempt_at = None
    db.commit()
    return endpoint


# --- the outbox ---------------------------------------------------------------------------


def _subscribed(endpoint: WebhookEndpoint, event_type: str) -> bool:
    return "*" in endpoint.enabled_events or event_type in endpoint.enabled_events


def emit(
    *,
    db: Session,
    merchant_id: str,
    type: str,
    data: dict[str, Any],
    dedupe_key: str,
    now: datetime | None = None,
) -> OutboundEvent | None:
    """Stage a merchant event and its deliveries in the caller's transaction.

    Returns None when no endpoint of the merchant wants the type, or when an event with
    this ``dedupe_key`` was already written (a rerun, or two provider events reporting
    one dispute).
    """
    endpoints = [e for e in list_endpoints(db=db, merchant_id=merchant_id) if _subscribed(e, type)]
    if not endpoints:
        return None
    exists = db.scalar(
        select(OutboundEvent.id).where(
            OutboundEvent.merchant_id == merchant_id, OutboundEvent.dedupe_key == dedupe_key
        )
    )
    if exists is not None:
        return None
    now = now or utcnow()
    event_id = new_id("evt")
    event = OutboundEvent(
        id=event_id,
        merchant_id=merchant_id,
        type=type,
        dedupe_key=dedupe_key,
        payload={
            "id": event_id,
            "object": "event",
            "type": type,
            "created": int(now.timestamp()),
            "data": {"object": data},
        },
        created_at=now,
    )
    db.add(event)
    db.flush()  # the event row before the deliveries that reference it
    for endpoint in endpoints:
        db.add(
            WebhookDelivery(
                id=new_id("whd"),
                merchant_id=merchant_id,
                event_id=event_id,
                endpoint_id=endpoint.id,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return event


def payment_object(payment_id: str | None, status: str, props: dict[str, Any]) -> dict[str, Any]:
    """The ``data.object`` of payment events: ids, amounts and brand/last four only."""
    card = None
    if props.get("card_brand") or props.get("card_last4"):
        card = {"brand": props.get("card_brand"), "last4": props.get("card_last4")}
    return {
        "id": payment_id,
        "object": "payment",
        "session_id": props.get("session_id"),
        "status": status,
        "amount": props.get("amount"),
        "currency": props.get("currency"),
        "method": props.get("method"),
        "gateway": props.get("gateway"),
        "decline_code": props.get("decline_code"),
        "card": card,
    }


def _cursor(db: Session) -> WebhookCursor:
    query = select(WebhookCursor).where(WebhookCursor.name == CURSOR_NAME).with_for_update()
    cursor = db.scalars(query).first()
    if cursor is None:
        db.add(WebhookCursor(name=CURSOR_NAME, last_event_id=0, updated_at=utcnow()))
        db.flush()
        cursor = db.scalars(query).one()
    return cursor


def collect_from_log(
    *,
    db: Session,
    now: datetime | None = None,
    settle: timedelta = timedelta(seconds=2),
    limit: int = 500,
) -> int:
    """Turn new payment events of the event log into outbox events; returns how many.

    Events younger than ``settle`` wait for the next run: ids are assigned at insert but
    become visible at commit, so a transaction that commits a lower id just after a higher
    one was read would otherwise be skipped by the cursor (the bandit learner does the same).
    A second collector blocks on the cursor row until the first commits.
    """
    now = now or utcnow()
    cursor = _cursor(db)
    rows = read_since(db=db, cursor=cursor.last_event_id, limit=limit, types=list(LOG_TYPES))
    created = 0
    last = cursor.last_event_id
    for row in rows:
        if row.received_at > now - settle:
            break
        props = dict(row.properties or {})
        props["session_id"] = row.session_id
        status = "succeeded" if row.type == "payment_succeeded" else "failed"
        event = emit(
            db=db,
            merchant_id=row.merchant_id,
            type=LOG_TYPES[row.type],
            data=payment_object(props.get("payment_id"), status, props),
            dedupe_key=f"log:{row.id}",
            now=now,
        )
        created += event is not None
        last = row.id
    if last != cursor.last_event_id:
        cursor.last_event_id = last
        cursor.updated_at = now
    db.commit()
    return created


# --- deliveries and replay ----------------------------------------------------------------


def delivery_read(delivery: WebhookDelivery, event_type: str) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=event_type,
        endpoint_id=delivery.endpoint_id,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


def list_deliveries(
    *,
    db: Session,
    merchant_id: str | None = None,
    endpoint_id: str | None = None,
    event_id: str | None = None,
    statuses: Sequence[str] | None = None,
    limit: int = 100,
) -> list[DeliveryRead]:
    """Newest first. ``merchant_id=None`` is for the admin CLI only."""
    query = select(WebhookDelivery, OutboundEvent.type).join(
        OutboundEvent, OutboundEvent.id == WebhookDelivery.event_id
    )
    if merchant_id is not None:
        query = query.where(WebhookDelivery.merchant_id == merchant_id)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if event_id is not None:
        query = query.where(WebhookDelivery.event_id == event_id)
    if statuses:
        query = query.where(WebhookDelivery.status.in_(list(statuses)))
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit)
    return [delivery_read(d, t) for d, t in db.execute(query).tuples()]


def replay(
    *,
    db: Session,
    event_id: str | None = None,
    endpoint_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    merchant_id: str | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Schedule deliveries to be sent again now, with a fresh retry budget; returns their ids.

    By event (every live endpoint that had it, or only ``endpoint_id``; an endpoint that
    never had the event gets a new delivery, so an endpoint created later can catch up),
    or by endpoint and a time range of the events. Deleted endpoints are skipped.
    """
    if event_id is None and endpoint_id is None:
        raise InvalidRequest("Pass an event id, or an endpoint id and a time range.")
    now = now or utcnow()
    query = (
        select(WebhookDelivery)
        .join(OutboundEvent, OutboundEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookEndpoint.status == "enabled")
    )
    if merchant_id is not None:
        query = query.where(WebhookDelivery.merchant_id == merchant_id)
    if event_id is not None:
        query = query.where(WebhookDelivery.event_id == event_id)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if since is not None:
        query = query.where(OutboundEvent.created_at >= since)
    if until is not None:
        query = query.where(OutboundEvent.created_at < until)
    deliveries = list(db.scalars(query.order_by(OutboundEvent.created_at)))
    if event_id is not None and endpoint_id is not None and not deliveries:
        deliveries = [_new_delivery(db, event_id, endpoint_id, merchant_id, now)]
    if event_id is not None and not deliveries:
        raise NotFound(f"No deliveries of event '{event_id}' to a live endpoint.", param="event")
    for delivery in deliveries:
        delivery.status = "pending"
        delivery.attempts = 0
        delivery.next_attempt_at = now
        delivery.last_error = None
        delivery.delivered_at = None
    db.commit()
    return [d.id for d in deliveries]


def _new_delivery(
    db: Session, event_id: str, endpoint_id: str, merchant_id: str | None, now: datetime
) -> WebhookDelivery:
    event = db.get(OutboundEvent, event_id)
    endpoint = db.get(WebhookEndpoint, endpoint_id)
    if (
        event is None
        or endpoint is None
        or endpoint.status != "enabled"
        or event.merchant_id != endpoint.merchant_id  # never send one merchant's event to another
        or (merchant_id is not None and event.merchant_id != merchant_id)
    ):
        raise NotFound(
            f"No event '{event_id}' and live endpoint '{endpoint_id}' of one merchant.",
            param="event",
        )
    delivery = WebhookDelivery(
        id=new_id("whd"),
        merchant_id=event.merchant_id,
        event_id=event.id,
        endpoint_id=endpoint.id,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    db.add(delivery)
    return delivery
