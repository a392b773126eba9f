"""Provider webhooks (Stripe, Adyen): verified events applied to payments exactly once.

The gateway adapters verify the signature on the raw body and translate each provider
event into a :class:`~checkoutlab.payments.gateways.WebhookEvent`; this module decides what
the event means for the platform:

- ``payment_succeeded`` / ``payment_failed`` settle a payment that was still pending
  (``processing``, ``requires_action``; a late success also overrides a failure, because
  the money moved). A stale event never downgrades a succeeded payment. The change is
  written to the event log like confirm's, so learners see it and merchants are notified.
- ``dispute_created`` records a ``dispute`` outcome through the fraud outcomes service:
  the fraud label retraining uses.
- ``refund_succeeded`` records a ``refund`` outcome with the refunded amount; once the
  refunds cover the payment it is ``refunded``. Stripe reports the cumulative refunded
  amount on the charge, Adyen each refund's own amount; both become per-refund amounts.

Every event is stored in ``inbound_webhooks`` under ``(provider, event_id)``: a replay
answers 200 and changes nothing. The payment is found by the gateway's reference and the
gateway that took it (or the attempt key the provider echoes), and every change is scoped to
that payment's merchant. Payment outcomes are written by
:func:`checkoutlab.payments.settlement.settle_payment`, the same code confirm and the
reconciler use; locks are taken session first, then payment, as they do.

**Unmatched events are retried, not dropped.** An event can arrive before the platform
knows its payment: confirm commits the payment before it calls the gateway, but failover
records which gateway took it (and the reference) only when the call returns, and a
reconciler may store the reference later. Such an event is stored as ``unmatched`` and
answered **404**, so the provider redelivers it (Stripe for up to three days, Adyen for
days with backoff); a redelivery that now finds the payment is applied. An event still
unmatched :data:`UNMATCHED_GRACE` after it first arrived is stored as ``ignored`` and
answered 200, so a provider account shared with another system does not retry forever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkoutlab.config import Settings
from checkoutlab.db import utcnow
from checkoutlab.errors import InvalidRequest
from checkoutlab.fraud import outcomes
from checkoutlab.payments.gateways import Gateway, GatewayResult, WebhookEvent, get_gateway
from checkoutlab.payments.models import CheckoutSession, Payment
from checkoutlab.payments.settlement import lock_session_and_payment, settle_payment
from checkoutlab.webhooks.models import InboundWebhook
from checkoutlab.webhooks.outbound import emit

__all__ = [
    "PROVIDERS",
    "UNMATCHED_GRACE",
    "InboundResult",
    "handle",
    "handle_event",
    "webhook_gateway",
]

log = logging.getLogger(__name__)

PROVIDERS: Final = ("stripe", "adyen")
UNMATCHED: Final = "unmatched"  # inbound_webhooks.status of an event to apply on redelivery
# Adapters verify webhooks without calling the provider's API, so these stand in for API
# credentials when the platform receives a provider's webhooks but does not charge with it.
_UNUSED_STRIPE_KEY: Final = "sk_unused_webhook_verification_only"
_UNUSED: Final = "unused-webhook-verification-only"

Outcome = Literal["processed", "ignored", "duplicate", "unmatched"]

UNMATCHED_GRACE: Final = timedelta(hours=24)
"""How long an event whose payment is unknown is answered 404 (redelivered) before it is
acknowledged as ignored: far longer than any confirm or reconciliation takes."""


@dataclass(frozen=True)
class InboundResult:
    event_id: str
    outcome: Outcome
    note: str | None = None


def webhook_gateway(provider: str, settings: Settings) -> Gateway:
    """The provider's adapter configured with the platform's webhook secrets."""
    if provider == "stripe":
        return get_gateway(
            "stripe",
            api_key=settings.stripe_api_key or _UNUSED_STRIPE_KEY,
            webhook_secret=settings.stripe_webhook_secret,
            webhook_tolerance=settings.stripe_webhook_tolerance_seconds,
        )
    if provider == "adyen":
        # The platform decides whether live or test notifications are accepted.
        live = settings.adyen_platform == "live"
        return get_gateway(
            "adyen",
            api_key=settings.adyen_api_key or _UNUSED,
            merchant_account=settings.adyen_merchant_account or _UNUSED,
            return_url=settings.adyen_return_url or "https://unused.invalid/",
            platform=settings.adyen_platform,
            live_endpoint_prefix=settings.adyen_live_endpoint_prefix or (_UNUSED if live else None),
            hmac_key=settings.adyen_hmac_key,
        )
    raise InvalidRequest(f"Unknown webhook provider {provider!r}.", code="unknown_provider")


def handle(*, db: Session, events: list[WebhookEvent]) -> list[InboundResult]:
    """Apply a verified delivery's events in order (Adyen batches several in one)."""
    return [handle_event(db=db, event=event) for event in events]


def _find_payment(db: Session, event: WebhookEvent) -> Payment | None:
    """The payment the event is about: by the gateway's reference, else by the attempt key.

    Always within the gateway that reported it, so one provider's event cannot touch a
    payment another provider took. The attempt key (what the gateway echoes as its merchant
    reference) finds a payment whose reference was never recorded, e.g. after a timeout.
    Not locked: see :func:`_lock`.
    """
    base = select(Payment).where(Payment.gateway == event.gateway)
    if event.reference:
        rows = list(db.scalars(base.where(Payment.gateway_reference == event.reference).limit(2)))
        if len(rows) == 1:
            return rows[0]
        if rows:
            log.error("webhook %s: reference matches several payments", event.id)
            return None
    if event.merchant_reference and event.type in ("payment_succeeded", "payment_failed"):
        key = Payment.verification["gateway_idempotency_key"].as_string()
        rows = list(db.scalars(base.where(key == event.merchant_reference).limit(2)))
        if len(rows) == 1:
            return rows[0]
    return None


def handle_event(*, db: Session, event: WebhookEvent) -> InboundResult:
    """Apply one verified event once; a repeat of its id is a no-op."""
    if _seen(db, event):
        return InboundResult(event.id, "duplicate")
    payment = _find_payment(db, event)
    if payment is None:
        if event.type == "other":
            return _store(db, event, None, "ignored", f"unhandled type {event.provider_type}")
        return _unmatched(db, event)
    if event.type == "other":
        return _store(db, event, payment, "ignored", f"unhandled type {event.provider_type}")

    # Outcome labels commit on their own (the outcomes service owns its transaction) and are
    # idempotent by external id, so they go first: a crash after this point makes the
    # provider retry, and the retry records nothing twice.
    note: str | None = None
    merchant_event: tuple[str, dict[str, object], str] | None = None
    if event.type == "dispute_created":
        merchant_event = _dispute(db, event, payment)
    elif event.type == "refund_succeeded":
        merchant_event, note = _refund(db, event, payment)
    checkout, payment = lock_session_and_payment(  # re-read after the outcome's commit
        db=db,
        merchant_id=payment.merchant_id,
        session_id=payment.session_id,
        payment_id=payment.id,
    )

    claim = _take_claim(db, event, payment)
    if claim is None:
        return InboundResult(event.id, "duplicate")

    if (
        event.type == "refund_succeeded"
        and payment.status == "succeeded"
        and _refunded_total(db, payment) >= payment.amount
    ):
        payment.status = "refunded"
        payment.updated_at = utcnow()
    if event.type == "payment_succeeded":
        note = _succeed(db, event, checkout, payment)
    elif event.type == "payment_failed":
        note = _fail(db, event, checkout, payment)
    elif event.type == "refund_failed":
        merchant_event = (
            "refund.failed",
            _refund_object(event, payment, status="failed"),
            f"refund_failed:{event.gateway}:{event.id}",
        )
    if merchant_event is not None:
        type_, data, dedupe_key = merchant_event
        emit(db=db, merchant_id=payment.merchant_id, type=type_, data=data, dedupe_key=dedupe_key)
    claim.note = note
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        if _seen(db, event):
            return InboundResult(event.id, "duplicate")
        raise  # not a replay: answer 5xx so the provider retries
    return InboundResult(event.id, "processed", note)


# --- the effects --------------------------------------------------------------------------


def _succeed(
    db: Session, event: WebhookEvent, checkout: CheckoutSession, payment: Payment
) -> str | None:
    if payment.status == "failed":
        log.warning("payment %s: success reported after a failure; applying it", payment.id)
    result = GatewayResult(status="succeeded", reference=event.reference)
    settled = settle_payment(
        db=db, checkout=checkout, payment=payment, result=result, properties=_source(event)
    )
    if settled.paid_by is not None:
        # The database allows one success per session; the money moved anyway, so
        # settle_payment logged it loudly instead of failing the webhook forever.
        return f"session already paid by {settled.paid_by}; refund needed"
    return None if settled.changed else "already succeeded"


def _fail(
    db: Session, event: WebhookEvent, checkout: CheckoutSession, payment: Payment
) -> str | None:
    result = GatewayResult(
        status="failed",
        reference=event.reference,
        decline_code=event.reason or "card_declined",
        message="The payment was declined.",
    )
    settled = settle_payment(
        db=db, checkout=checkout, payment=payment, result=result, properties=_source(event)
    )
    return None if settled.changed else f"payment already {payment.status}"


def _source(event: WebhookEvent) -> dict[str, object]:
    return {"source": "webhook", "provider_event_id": event.id}


def _label_amount(event: WebhookEvent, payment: Payment) -> int | None:
    if event.amount is None or event.amount <= 0 or event.currency != payment.currency:
        return None
    return min(event.amount, payment.amount)


def _record_outcome(
    db: Session,
    payment: Payment,
    *,
    type_: Literal["dispute", "refund"],
    reason: str | None,
    amount: int | None,
    external_id: str,
) -> bool:
    data = outcomes.OutcomeCreate(
        payment_id=payment.id,
        type=type_,
        reason=reason[:200] if reason else None,
        amount=amount,
        external_id=external_id[:100],
    )
    _, created = outcomes.record(db=db, merchant_id=payment.merchant_id, data=data)
    return created


def _dispute(
    db: Session, event: WebhookEvent, payment: Payment
) -> tuple[str, dict[str, object], str]:
    # One dispute can be reported by several events (Adyen: NOTIFICATION_OF_CHARGEBACK, then
    # CHARGEBACK), all carrying the dispute's own id: label and notify once per dispute.
    dispute_id = str(event.data.get("id") or event.data.get("pspReference") or event.id)
    external_id = f"{event.gateway}:{dispute_id}"
    amount = _label_amount(event, payment)
    _record_outcome(
        db, payment, type_="dispute", reason=event.reason, amount=amount, external_id=external_id
    )
    data: dict[str, object] = {
        "id": dispute_id,
        "object": "dispute",
        "payment_id": payment.id,
        "amount": amount,
        "currency": payment.currency,
        "reason": event.reason,
        "gateway": event.gateway,
    }
    return "dispute.created", data, f"dispute:{external_id}"


def _refunded_total(db: Session, payment: Payment) -> int:
    return sum(
        o.amount or 0
        for o in outcomes.list_for_payment(
            db=db, merchant_id=payment.merchant_id, payment_id=payment.id
        )
        if o.type == "refund"
    )


def _refund(
    db: Session, event: WebhookEvent, payment: Payment
) -> tuple[tuple[str, dict[str, object], str] | None, str | None]:
    amount = _label_amount(event, payment)
    if amount is None:
        return None, "refund without a usable amount"
    refund_id = str(event.data.get("pspReference") or event.data.get("id") or event.id)
    if event.provider_type == "charge.refunded":
        # Stripe: amount_refunded is the charge's running total; record what is new.
        amount -= _refunded_total(db, payment)
        refund_id = f"{refund_id}:{event.amount}"
        if amount <= 0:
            return None, "refund already recorded"
    external_id = f"{event.gateway}:{refund_id}"
    created = _record_outcome(
        db, payment, type_="refund", reason=event.reason, amount=amount, external_id=external_id
    )
    total = _refunded_total(db, payment)
    # Notified even when the label already existed (a retry after a crash between the two
    # commits): the outbox's dedupe key keeps it to one merchant event per refund.
    note = None if created else "refund already recorded"
    data = _refund_object(event, payment, status="succeeded") | {
        "id": refund_id,
        "amount": amount,
        "amount_refunded": total,
    }
    return ("refund.succeeded", data, f"refund:{external_id}"), note


def _refund_object(event: WebhookEvent, payment: Payment, *, status: str) -> dict[str, object]:
    return {
        "id": str(event.data.get("pspReference") or event.data.get("id") or event.id),
        "object": "refund",
        "payment_id": payment.id,
        "status": status,
        "amount": event.amount,
        "currency": payment.currency,
        "reason": event.reason,
        "gateway": event.gateway,
    }


# --- bookkeeping --------------------------------------------------------------------------


def _seen(db: Session, event: WebhookEvent) -> bool:
    """Whether the event was handled already; an ``unmatched`` one still has to be."""
    return (
        db.scalar(
            select(InboundWebhook.id).where(
                InboundWebhook.provider == event.gateway,
                InboundWebhook.event_id == event.id[:255],
                InboundWebhook.status != UNMATCHED,
            )
        )
        is not None
    )


def _take_claim(db: Session, event: WebhookEvent, payment: Payment) -> InboundWebhook | None:
    """This delivery's right to apply the event, or None when another delivery has it.

    An ``unmatched`` row left by an earlier delivery is taken over by one conditional
    UPDATE; otherwise a new row's unique (provider, event_id) decides: a concurrent
    delivery of the event waits on it, then fails.
    """
    taken = db.execute(
        update(InboundWebhook)
        .where(
            InboundWebhook.provider == event.gateway,
            InboundWebhook.event_id == event.id[:255],
            InboundWebhook.status == UNMATCHED,
        )
        .values(
            status="processed",
            merchant_id=payment.merchant_id,
            payment_id=payment.id,
            note=None,
        )
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount == 1:
        return db.scalar(
            select(InboundWebhook).where(
                InboundWebhook.provider == event.gateway,
                InboundWebhook.event_id == event.id[:255],
            )
        )
    claim = _claim(event, payment, "processed")
    db.add(claim)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        return None
    return claim


def _unmatched(db: Session, event: WebhookEvent) -> InboundResult:
    """Record an event whose payment is unknown; answered 404 until its grace has passed."""
    existing = db.scalar(
        select(InboundWebhook).where(
            InboundWebhook.provider == event.gateway,
            InboundWebhook.event_id == event.id[:255],
        )
    )
    if existing is None:
        log.warning(
            "%s webhook %s (%s) matches no payment (reference %s) yet; asking for redelivery",
            event.gateway,
            event.id,
            event.provider_type,
            event.reference,
        )
        result = _store(db, event, None, UNMATCHED, "unknown payment")
        if result.outcome == "duplicate":  # a concurrent delivery stored it first
            return _unmatched(db, event)
        return result
    if existing.status != UNMATCHED:
        return InboundResult(event.id, "duplicate")
    if utcnow() - existing.received_at < UNMATCHED_GRACE:
        return InboundResult(event.id, "unmatched", "unknown payment")
    existing.status = "ignored"
    existing.note = "unknown payment (redelivery window over)"
    db.commit()
    log.warning("%s webhook %s never matched a payment; ignored", event.gateway, event.id)
    return InboundResult(event.id, "ignored", existing.note)


def _claim(event: WebhookEvent, payment: Payment | None, status: str) -> InboundWebhook:
    return InboundWebhook(
        provider=event.gateway,
        event_id=event.id[:255],
        provider_type=event.provider_type[:100],
        type=event.type,
        reference=(event.reference or None) and event.reference[:100],
        merchant_id=payment.merchant_id if payment else None,
        payment_id=payment.id if payment else None,
        status=status,
        received_at=utcnow(),
    )


def _store(
    db: Session, event: WebhookEvent, payment: Payment | None, status: str, note: str
) -> InboundResult:
    claim = _claim(event, payment, status)
    claim.note = note
    db.add(claim)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return InboundResult(event.id, "duplicate")
    outcome: Outcome = "unmatched" if status == UNMATCHED else "ignored"
    return InboundResult(event.id, outcome, note)
