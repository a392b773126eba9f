"""One way to write what a gateway said about a payment, whoever learnt it.

Confirm (the gateway's answer), the 3-D Secure challenge, provider webhooks and the
reconciler all learn outcomes of the same payments, in any order: a webhook can arrive
while confirm still waits for the gateway, the reconciler settles what a crashed confirm
left. They share :func:`settle_payment` so that the rules hold whatever the order:

- a success is applied over anything but a success (the money moved); a failure, an action
  or a still-unknown outcome only over a pending payment (``processing``,
  ``requires_action``), so a late or stale answer never downgrades a payment;
- one succeeded payment per session: when another payment already paid the session nothing
  is applied and an error asks for a refund (the partial unique index would refuse it);
- the gateway's reference is kept, so later refund and dispute webhooks find the payment;
- every change is written to the event log with one set of properties.

The caller holds the session's row lock (always taken before the payment's, so confirm,
webhooks and the reconciler cannot deadlock each other) and commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from checkoutlab.db import utcnow
from checkoutlab.events.service import add_server_event
from checkoutlab.payments import sessions
from checkoutlab.payments.gateways.base import GatewayResult
from checkoutlab.payments.models import CheckoutSession, Payment

__all__ = ["PENDING", "Settled", "log_refund_needed", "settle_payment", "unknown_outcome"]

log = logging.getLogger(__name__)

PENDING: Final = frozenset({"processing", "requires_action"})
_EVENT_TYPES: Final = {
    "succeeded": "payment_succeeded",
    "failed": "payment_failed",
    "requires_action": "payment_requires_action",
}
# Markers in Payment.verification: the outcome may have moved money and is not settled yet,
# and a request is (or was, if it crashed) calling the gateway for it.
OUTCOME_UNKNOWN: Final = "outcome_unknown"
IN_FLIGHT: Final = "in_flight"


@dataclass(frozen=True)
class Settled:
    """What :func:`settle_payment` did."""

    changed: bool
    paid_by: str | None = None  # another payment had paid the session: refund this one


def lock_session_and_payment(
    db: Session, *, merchant_id: str, session_id: str, payment_id: str
) -> tuple[CheckoutSession, Payment]:
    """The session, then the payment, locked in that order: the order every writer of
    payments (confirm, the 3-D Secure completion, webhooks, the reconciler) uses, so two of
    them working on one payment cannot deadlock on PostgreSQL.

    Rows added while a gateway was called stay pending until the locks are held: flushing
    an attempt first would take a key-share lock on the payment before the session's.
    """
    with db.no_autoflush:
        checkout = sessions.get(
            db=db, merchant_id=merchant_id, session_id=session_id, for_update=True
        )
        payment = db.scalar(
            select(Payment)
            .where(Payment.id == payment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    assert payment is not None  # payments are never deleted
    return checkout, payment


def unknown_outcome(payment: Payment) -> bool:
    return payment.status == "processing" and bool(payment.verification.get(OUTCOME_UNKNOWN))


def log_refund_needed(payment: Payment, *, paid_by: str | None, reference: str | None) -> None:
    """Money moved for a session that another payment had already paid: say so loudly.

    Only ids and the gateway's reference are logged, never card data.
    """
    log.error(
        "refund needed: payment %s succeeded at %s (reference %s) but session %s was "
        "already paid%s",
        payment.id,
        payment.gateway,
        reference or payment.gateway_reference,
        payment.session_id,
        f" by {paid_by}" if paid_by else "",
    )


def settle_payment(
    *,
    db: Session,
    checkout: CheckoutSession,
    payment: Payment,
    result: GatewayResult,
    gateway: str | None = None,
    unknown: bool = False,
    reconciled: bool = False,
    properties: dict[str, Any] | None = None,
) -> Settled:
    """Apply ``result`` to ``payment`` (and its session, stock, event log); no commit.

    ``unknown``: the gateway may have acted but did not say how (timeout, 5xx); the payment
    stays ``processing`` with the ``outcome_unknown`` marker, which blocks new payments of
    the session until a retrieve, a webhook or the reconciler settles it. ``reconciled``:
    the answer came from asking again after the outcome was left unknown (kept on the
    payment for audits). ``properties`` are added to the event's (e.g. the webhook's id).
    """
    if result.status == "succeeded":
        if payment.status in ("succeeded", "refunded"):
            _keep_reference(payment, result)
            return Settled(False)
        paid_by = next(
            (
                p.id
                for p in sessions.payments_of(db=db, checkout=checkout)
                if p.status == "succeeded" and p.id != payment.id
            ),
            None,
        )
        if paid_by is not None:
            log_refund_needed(payment, paid_by=paid_by, reference=result.reference)
            _keep_reference(payment, result)
            payment.verification = _without_markers(payment) | {"refund_needed": True}
            return Settled(False, paid_by=paid_by)
    elif payment.status not in PENDING:
        return Settled(False)
    if gateway is not None:
        payment.gateway = gateway
    _keep_reference(payment, result)
    payment.status = result.status
    payment.decline_code = result.decline_code
    payment.failure_message = result.message
    payment.next_action = result.next_action
    payment.updated_at = utcnow()
    if unknown:
        payment.verification = _without_markers(payment) | {OUTCOME_UNKNOWN: True}
        return Settled(True)
    markers = _without_markers(payment) | {"retryable": result.retryable}
    if reconciled:
        markers["reconciled"] = True
    payment.verification = markers
    if result.status == "succeeded":
        checkout.status = sessions.SUCCEEDED
        sessions.take_stock(db=db, checkout=checkout)
    event_type = _EVENT_TYPES.get(result.status)
    if event_type:
        add_server_event(
            db=db,
            merchant_id=checkout.merchant_id,
            type=event_type,
            session_id=checkout.id,
            decision_id=payment.decision_id,
            properties={
                "payment_id": payment.id,
                "amount": payment.amount,
                "currency": payment.currency,
                "method": payment.method_type,
                "gateway": payment.gateway,
                "decline_code": payment.decline_code,
                "card_brand": payment.card_brand,
                "card_last4": payment.card_last4,
            }
            | (properties or {}),
        )
    return Settled(True)


def _keep_reference(payment: Payment, result: GatewayResult) -> None:
    # Overwritten only by a real reference: a failed lookup must not erase the one known.
    if result.reference:
        payment.gateway_reference = result.reference


def _without_markers(payment: Payment) -> dict[str, Any]:
    return {
        k: v
        for k, v in payment.verification.items()
        if k not in (OUTCOME_UNKNOWN, IN_FLIGHT, "retryable")
    }
