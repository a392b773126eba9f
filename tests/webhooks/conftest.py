"""Fixtures for webhook tests: provider secrets, signed provider payloads, payments to match,
a local HTTP receiver standing in for a merchant's server, and a controllable clock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import Adyen.util
import pytest
import stripe
from pydantic import SecretStr

from checkoutlab.config import Settings
from checkoutlab.db import Database, new_id, utcnow
from checkoutlab.payments.models import CheckoutSession, Payment

STRIPE_SECRET = "whsec_test_platform_stripe_secret"
ADYEN_HMAC = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
ADYEN_ACCOUNT = "CheckoutLabECOM"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings plus the platform's provider webhook secrets."""
    return settings.model_copy(
        update={
            "stripe_webhook_secret": SecretStr(STRIPE_SECRET),
            "adyen_hmac_key": SecretStr(ADYEN_HMAC),
            "webhook_max_attempts": 4,
            "webhook_backoff_base_seconds": 60.0,
            "webhook_backoff_max_seconds": 3600.0,
            "webhook_timeout_seconds": 2.0,
        }
    )


# --- provider payloads, signed with the providers' own SDK helpers --------------------------


def stripe_event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> bytes:
    """An event as Stripe sends it (snapshot payload) wrapping ``obj``."""
    return json.dumps(
        {
            "id": event_id or new_id("evt"),
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
            "data": {"object": obj},
        }
    ).encode()


def stripe_headers(
    payload: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """``Stripe-Signature`` computed by the stripe SDK's own signing helper."""
    header = stripe.WebhookSignature.generate_signature_header(
        payload.decode(), secret, timestamp=timestamp
    )
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def adyen_item(
    *,
    event_code: str,
    psp_reference: str,
    merchant_reference: str,
    value: int,
    currency: str = "EUR",
    success: bool = True,
    original_reference: str | None = None,
    reason: str = "",
    hmac_key: str = ADYEN_HMAC,
) -> dict[str, Any]:
    """A NotificationRequestItem signed with the Adyen SDK's HMAC helper."""
    item: dict[str, Any] = {
        "amount": {"value": value, "currency": currency},
        "eventCode": event_code,
        "eventDate": "2026-11-26T12:00:00+01:00",
        "merchantAccountCode": ADYEN_ACCOUNT,
        "merchantReference": merchant_reference,
        "pspReference": psp_reference,
        "reason": reason,
        "success": "true" if success else "false",
    }
    if original_reference:
        item["originalReference"] = original_reference
    signature = Adyen.util.generate_notification_sig(item, hmac_key).decode()
    item["additionalData"] = {"hmacSignature": signature}
    return item


def adyen_body(*items: dict[str, Any]) -> bytes:
    return json.dumps(
        {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}
    ).encode()


# --- payments to match ---------------------------------------------------------------------


@pytest.fixture
def make_payment(database: Database) -> Callable[..., Payment]:
    """A payment as confirm leaves it for the given gateway, in a new or given session."""

    def _make(
        merchant_id: str,
        *,
        gateway: str = "stripe",
        reference: str | None = None,
        status: str = "processing",
        amount: int = 2599,
        currency: str = "EUR",
        key: str | None = None,
        session_id: str | None = None,
    ) -> Payment:
        now = utcnow()
        with database.session() as db:
            if session_id is None:
                session_id = new_id("cs")
                db.add(
                    CheckoutSession(
                        id=session_id,
                        merchant_id=merchant_id,
                        client_secret=f"{session_id}_secret_x",
                        amount=amount,
                        currency=currency,
                        line_items=[],
                        status="succeeded" if status == "succeeded" else "open",
                        created_at=now,
                        expires_at=now + timedelta(minutes=30),
                    )
                )
                db.flush()
            payment = Payment(
                id=new_id("pay"),
                merchant_id=merchant_id,
                session_id=session_id,
                status=status,
                amount=amount,
                currency=currency,
                method_type="card",
                card_brand="visa",
                card_last4="4242",
                gateway=gateway,
                gateway_reference=reference,
                verification={"gateway_idempotency_key": key or new_id("cl")},
            )
            db.add(payment)
            db.commit()
            return payment

    return _make


def reload(database: Database, payment_id: str) -> Payment:
    with database.session() as db:
        payment = db.get(Payment, payment_id)
        assert payment is not None
        return payment


# --- a merchant's receiver -----------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A local HTTP server in a thread that records POSTs and answers scripted statuses."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # consumed first; then 200

    def next_status(self) -> int:
        return self.statuses.pop(0) if self.statuses else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                state.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = state.next_status()
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


class Clock:
    """A clock tests move by hand, so backoff is checked without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow() + timedelta(seconds=10)  # past the collector's settle

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()
