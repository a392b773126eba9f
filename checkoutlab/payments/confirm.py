"""Confirm: enforce the signed profile, then charge through the merchant's gateway route.

Order matters: the session row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL;
every writer of payments takes the session's lock before the payment's), then every check
that can refuse runs before any money moves.

**Durable before money moves.** The payment is committed as ``processing`` with the
``outcome_unknown`` and ``in_flight`` markers, its route and its gateway idempotency key
*before* the gateway is called. A crash, an OOM kill or a failed commit after the gateway
charged therefore leaves a row that later requests, provider webhooks and the reconciler
(:mod:`checkoutlab.payments.reconciler`) find and settle by retrieving under that key, and
that blocks a second payment of the session meanwhile. A later confirm with the same
Idempotency-Key derives the same gateway key and reconciles that payment instead of
charging; one with a new key reconciles it first once its request is over (or stale).

A unique partial index allows one succeeded payment per session, so even a race past the
lock cannot record a session paid twice. Which gateways are tried, failover and the time
budget are :mod:`checkoutlab.payments.routing`'s; writing outcomes is
:func:`checkoutlab.payments.settlement.settle_payment`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import CardError, CheckoutLabError, InvalidRequest, NotFound
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.models import Merchant
from checkoutlab.merchants.schemas import MethodType
from checkoutlab.payments import sessions
from checkoutlab.payments.cards import CardInput, validate_card
from checkoutlab.payments.gateways.base import ChargeRequest, Gateway, GatewayResult
from checkoutlab.payments.models import CheckoutSession, Payment
from checkoutlab.payments.routing import (
    Budget,
    GatewayPool,
    RouteOutcome,
    charge_with_failover,
    check_route,
    complete_action,
    reconcile,
    select_route,
)
from checkoutlab.payments.schemas import ChallengeRequest, ConfirmRequest
from checkoutlab.payments.settlement import (
    IN_FLIGHT,
    OUTCOME_UNKNOWN,
    lock_session_and_payment,
    log_refund_needed,
    settle_payment,
    unknown_outcome,
)
from checkoutlab.profile.signing import ProfileClaims, verify

log = logging.getLogger(__name__)

ADYEN_ENCRYPTED_CARD = "adyen_encrypted_card"
"""payment_method_ref of a payment made with Adyen Web's encrypted fields (never stored)."""

# Decline codes that are their own error code; every other decline is "card_declined".
_OWN_CODES = {
    "processing_error",
    "issuer_not_available",
    "try_again_later",
    "authentication_failed",
    "expired_card",
    "incorrect_cvc",
}


def _missing_steps(body: ConfirmRequest, claims: ProfileClaims) -> None:
    """Refuse, naming the first required step that the request does not satisfy."""
    method = body.payment_method.type
    verification = body.verification
    required = set(claims.required)
    if body.payment_method.token is not None and verification.cvv is not None:
        raise InvalidRequest(
            "Do not send verification.cvv with a payment method token: the CVC stays in the "
            "gateway's card field (Stripe.js), where the issuer checks it.",
            param="verification.cvv",
        )
    if "cvv" in required and method is MethodType.card and body.payment_method.token is None:
        # With a token the shopper typed the CVC into the gateway's card field for this very
        # payment and the issuer checks it; it must never reach the platform.
        if verification.cvv is None:
            raise InvalidRequest(
                "This payment requires CVC re-entry: send verification.cvv.",
                code="verification_required",
                param="verification.cvv",
            )
        card = body.payment_method.card
        if card is not None and not hmac.compare_digest(
            verification.cvv.get_secret_value().encode(), card.cvc.get_secret_value().encode()
        ):
            raise InvalidRequest(
                "The re-entered CVC does not match the card's CVC.",
                code="verification_failed",
                param="verification.cvv",
            )
    if "avs" in required and verification.billing_address is None:
        raise InvalidRequest(
            "This payment requires address verification: send verification.billing_address "
            "(line1, postal_code, country).",
            code="verification_required",
            param="verification.billing_address",
        )
    if "biometric" in required and not verification.biometric_assertion:
        raise InvalidRequest(
            "This payment requires biometric confirmation: send verification.biometric_assertion.",
            code="verification_required",
            param="verification.biometric_assertion",
        )


def _check_stock(db: Session, checkout: CheckoutSession) -> None:
    lines = sessions.stock_lines(db=db, checkout=checkout)
    short = [
        sku for sku, wanted, available in lines if available is not None and available < wanted
    ]
    if short:
        raise InvalidRequest(
            f"Out of stock: {', '.join(sorted(short))}. The session cannot be paid.",
            code="out_of_stock",
        )


def _charge_amount(merchant: Merchant, checkout: CheckoutSession, redeem: bool) -> tuple[int, int]:
    """(amount to charge, loyalty discount) — both from the session and merchant config only."""
    loyalty = merchants.config_of(merchant).loyalty
    if not (redeem and loyalty.enabled):
        return checkout.amount, 0
    discount = min(checkout.loyalty_balance * loyalty.redemption_value, checkout.amount)
    return checkout.amount - discount, discount


def payment_body(payment: Payment) -> dict[str, Any]:
    return sessions.payment_read(payment).model_dump(mode="json") | {
        "session_id": payment.session_id
    }


# A confirm that crashed while calling the gateway left its payment ``in_flight``; after its
# budget plus this grace the request is surely over, and the payment is reconciled.
IN_FLIGHT_GRACE_SECONDS = 5.0


def _record(
    db: Session,
    checkout: CheckoutSession,
    payment: Payment,
    outcome: RouteOutcome,
) -> tuple[int, dict[str, Any]]:
    """Settle ``payment`` with the route's outcome, commit, and answer."""
    settled = settle_payment(
        db=db,
        checkout=checkout,
        payment=payment,
        result=outcome.result,
        gateway=outcome.gateway,
        unknown=outcome.unknown,
    )
    if outcome.unavailable and payment.status == "failed":
        # Nothing was charged anywhere (no gateway was reached): a retry with the same
        # Idempotency-Key may use this gateway key again, for a new payment.
        verification = dict(payment.verification)
        verification["unused_gateway_idempotency_key"] = verification.pop(
            "gateway_idempotency_key", None
        )
        payment.verification = verification
    _commit(db, checkout, payment)
    if settled.paid_by is not None:
        raise _already_paid(checkout)
    return _answer(payment, unavailable=outcome.unavailable)


def _commit(db: Session, checkout: CheckoutSession, payment: Payment) -> None:
    """Commit; a success refused by the one-success-per-session index needs a refund."""
    reference = payment.gateway_reference
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        log_refund_needed(payment, paid_by=None, reference=reference)
        raise _already_paid(checkout) from exc


def _already_paid(checkout: CheckoutSession) -> InvalidRequest:
    return InvalidRequest(
        f"Checkout session {checkout.id} is already paid.", code="session_already_succeeded"
    )


def _answer(payment: Payment, *, unavailable: bool = False) -> tuple[int, dict[str, Any]]:
    """The HTTP answer for the payment as it now stands (also for replays)."""
    body = payment_body(payment)
    if unknown_outcome(payment) or (unavailable and payment.status == "failed"):
        # Not a decline: the card was not refused, the providers did not answer.
        unknown = unknown_outcome(payment)
        return 503, {
            "error": {
                "type": "api_error",
                "code": "gateway_timeout" if unknown else "gateway_unavailable",
                "message": (payment.failure_message or _UNKNOWN_MESSAGE)
                if unknown
                else _UNAVAILABLE_MESSAGE,
                "param": None,
                "retryable": True,
                "decline_code": payment.decline_code,
                "payment": body,
            }
        }
    if payment.status == "failed":
        decline = payment.decline_code
        code = decline if decline in _OWN_CODES else "card_declined"
        error = CardError(payment.failure_message or "The payment was declined.", code=code)
        retryable = bool(payment.verification.get("retryable"))
        return 402, {
            "error": error.to_dict()["error"]
            | {"decline_code": decline, "retryable": retryable, "payment": body}
        }
    return 200, body


_UNAVAILABLE_MESSAGE = (
    "No payment provider could process this payment right now and nothing was charged. "
    "Try again in a moment."
)
_UNKNOWN_MESSAGE = (
    "The payment provider did not confirm this payment in time. Do not pay again yet: "
    "the payment's outcome is being reconciled with the provider."
)


def confirm(
    *,
    db: Session,
    merchant: Merchant,
    session_id: str,
    body: ConfirmRequest,
    secret: str,
    gateways: GatewayPool,
    idempotency_key: str,
    budget: Budget | None = None,
) -> tuple[int, dict[str, Any]]:
    """Charge the session through the merchant's gateway route within ``budget``."""
    budget = budget or Budget(15.0)
    gateway_key = gateway_idempotency_key(
        secret=secret, merchant_id=merchant.id, idempotency_key=idempotency_key
    )
    checkout = sessions.get(db=db, merchant_id=merchant.id, session_id=session_id, for_update=True)
    sessions.check_client_secret(checkout, body.client_secret)
    earlier = _payment_by_key(db, checkout, gateway_key)
    if earlier is not None:
        # This Idempotency-Key already started a payment (its request crashed, or answered a
        # 503 that is not replayed): settle and answer that one, never charge again.
        return _resume(db, checkout, earlier, gateways=gateways, budget=budget)
    sessions.ensure_open(checkout)
    if _settle_unknown(db=db, checkout=checkout, gateways=gateways, budget=budget):
        checkout = sessions.get(
            db=db, merchant_id=merchant.id, session_id=session_id, for_update=True
        )
        sessions.ensure_open(checkout)
    if any(p.status == "processing" for p in sessions.payments_of(db=db, checkout=checkout)):
        raise InvalidRequest(
            f"Checkout session {checkout.id} has a payment in progress (being charged, or "
            "e.g. a bank transfer awaiting funds); it cannot be paid again.",
            code="payment_in_progress",
        )
    claims = verify(
        body.profile_token, secret=secret, merchant_id=merchant.id, session_id=checkout.id
    )
    if claims.amount != checkout.amount or claims.currency != checkout.currency:
        raise InvalidRequest(
            "The payment profile is stale; request a new one.", code="profile_stale"
        )
    _check_stock(db, checkout)
    method = body.payment_method.type
    if method.value not in claims.methods:
        raise InvalidRequest(
            f"Payment method '{method.value}' is not offered in this payment profile.",
            code="payment_method_unavailable",
            param="payment_method.type",
        )
    _missing_steps(body, claims)
    amount, discount = _charge_amount(merchant, checkout, body.redeem_points)

    details, token = body.payment_method.card, body.payment_method.token
    encrypted = body.payment_method.adyen
    if method is MethodType.card and details is None and token is None and encrypted is None:
        raise InvalidRequest(
            "payment_method.token (from the gateway's browser SDK, e.g. Stripe.js), "
            "payment_method.adyen (Adyen Web's encrypted card fields) or "
            "payment_method.card is required for card payments.",
            param="payment_method.card",
        )
    card = None
    if details is not None:
        card = CardInput(
            number=details.number.get_secret_value(),
            exp_month=details.exp_month,
            exp_year=details.exp_year,
            cvc=details.cvc.get_secret_value(),
        )
    billing = body.verification.billing_address
    activation: dict[str, Any] = {
        "amount": {"value": amount, "currency": checkout.currency},
        "method": method.value,
    }
    if billing is not None:
        activation["country"] = billing.country.upper()
    if card is not None:
        activation["card"] = {"brand": card.brand}
    names, rule = select_route(
        config=merchants.config_of(merchant), default=gateways.default, activation=activation
    )
    route = _usable_route(
        names, gateways, token=token, card=card is not None, encrypted=encrypted is not None
    )

    brand = last4 = None
    charge_method: str | None = None  # what the gateway gets, when it must not be stored
    if encrypted is not None:
        # Adyen Web's encrypted fields go to Adyen in this request only: the payment keeps
        # a marker (a later retrieve cannot re-send them; Adyen's webhook settles it then).
        charge_method = json.dumps({"paymentMethod": encrypted.state_data()})
        payment_method = ADYEN_ENCRYPTED_CARD
    elif token is not None:
        payment_method = token
    elif card is not None:
        validate_card(card)
        tokenized = route[0].tokenize_card(card)
        del card  # the full number goes no further than the tokenizer
        payment_method, brand, last4 = tokenized.payment_method, tokenized.brand, tokenized.last4
        # the token belongs to the gateway that made it; others take it only if they can
        route = route[:1] + [g for g in route[1:] if g.accepts_token(payment_method)]
    else:
        payment_method = f"pm_{route[0].name}_{method.value}"

    payment = Payment(
        id=new_id("pay"),
        merchant_id=merchant.id,
        session_id=checkout.id,
        decision_id=claims.decision_id,
        customer_ref=checkout.customer_ref,
        status="processing",
        amount=amount,
        currency=checkout.currency,
        method_type=method.value,
        card_brand=brand,
        card_last4=last4,
        gateway=route[0].name,
        payment_method_ref=payment_method,
        verification={
            "required": claims.required,
            "loyalty_discount": discount,
            "gateway_idempotency_key": gateway_key,
            "avs_country": billing.country.upper() if billing else None,
            "route": [g.name for g in route],
            "route_rule": rule,
            OUTCOME_UNKNOWN: True,
            IN_FLIGHT: True,
        },
    )
    db.add(payment)
    db.commit()  # durable before any money moves (module doc); releases the session lock
    outcome = charge_with_failover(
        db=db,
        payment=payment,
        request=_charge_request(payment, claims.required, payment_method=charge_method),
        route=route,
        pool=gateways,
        budget=budget,
    )
    checkout, payment = lock_session_and_payment(
        db, merchant_id=merchant.id, session_id=checkout.id, payment_id=payment.id
    )
    return _record(db, checkout, payment, outcome)


def _payment_by_key(db: Session, checkout: CheckoutSession, gateway_key: str) -> Payment | None:
    """The session's payment charged under ``gateway_key`` (one client Idempotency-Key)."""
    return next(
        (
            p
            for p in sessions.payments_of(db=db, checkout=checkout)
            if p.verification.get("gateway_idempotency_key") == gateway_key
        ),
        None,
    )


def _stale(payment: Payment, budget_seconds: float) -> bool:
    """Whether the request that called the gateway for ``payment`` is surely over."""
    if not payment.verification.get(IN_FLIGHT):
        return True
    age = (utcnow() - payment.updated_at).total_seconds()
    return age > budget_seconds + IN_FLIGHT_GRACE_SECONDS


def _resume(
    db: Session,
    checkout: CheckoutSession,
    payment: Payment,
    *,
    gateways: GatewayPool,
    budget: Budget,
) -> tuple[int, dict[str, Any]]:
    """Answer a retried Idempotency-Key from its payment, reconciling it if still unknown.

    No staleness check is needed here: this request holds the key's idempotency claim, so
    the request that started the payment is over (it released the claim, or crashed and
    its claim went stale).
    """
    if unknown_outcome(payment):
        settle_unknown_payment(
            db=db, checkout=checkout, payment=payment, gateways=gateways, budget=budget
        )
    return _answer(payment)


def settle_unknown_payment(
    *,
    db: Session,
    checkout: CheckoutSession,
    payment: Payment,
    gateways: GatewayPool,
    budget: Budget,
) -> bool:
    """Reconcile one payment left with an unknown outcome and commit; True if settled.

    The caller holds the session's lock (then the payment's). Used by confirm (before a
    new payment of the session, and for a retried key) and by the reconciler.
    """
    gateway = gateways.get(payment.gateway)
    if gateway is None:
        log.warning(
            "payment %s: gateway %s is not set up here; cannot reconcile",
            payment.id,
            payment.gateway,
        )
        return False
    request = _charge_request(payment, payment.verification.get("required", []))
    result = reconcile(
        db=db, payment=payment, request=request, gateway=gateway, pool=gateways, budget=budget
    )
    if result is None:
        # Still unknown. The request that asked is over, so the marker of a live call goes.
        pending = GatewayResult(
            status="processing",
            reference=payment.gateway_reference,
            decline_code="gateway_timeout",
            message=_UNKNOWN_MESSAGE,
            retryable=True,
        )
        settle_payment(db=db, checkout=checkout, payment=payment, result=pending, unknown=True)
        _commit(db, checkout, payment)
        return False
    settled = settle_payment(
        db=db, checkout=checkout, payment=payment, result=result, reconciled=True
    )
    _commit(db, checkout, payment)
    return settled.changed


def _settle_unknown(
    *, db: Session, checkout: CheckoutSession, gateways: GatewayPool, budget: Budget
) -> bool:
    """Reconcile the session's payments whose outcome was left unknown; True if any settled.

    Such a payment blocks new ones (it may have charged); each new confirm asks its gateway
    again first, so the shopper is unblocked as soon as the provider answers. A payment
    whose request is still calling the gateway is left alone (it blocks as in progress).
    """
    settled = False
    for payment in sessions.payments_of(db=db, checkout=checkout):
        if unknown_outcome(payment) and _stale(payment, budget.seconds):
            settled |= settle_unknown_payment(
                db=db, checkout=checkout, payment=payment, gateways=gateways, budget=budget
            )
    return settled


def _usable_route(
    names: list[str],
    gateways: GatewayPool,
    *,
    token: str | None,
    card: bool,
    encrypted: bool = False,
) -> list[Gateway]:
    """The route's gateways that are set up and can take this payment method, in order."""
    check_route(names, gateways)
    configured = [g for g in (gateways.get(name) for name in names) if g is not None]
    if not configured:
        raise InvalidRequest(
            f"This merchant's payments go to {', '.join(names)}, which the platform has no "
            "credentials for. Ask the platform operator to set them up.",
            code="gateway_not_configured",
        )
    listed = ", ".join(g.name for g in configured)
    if encrypted:
        # encrypted with one Adyen account's client key: only Adyen can use them
        route = [g for g in configured if g.encrypted_card_fields]
        if not route:
            raise InvalidRequest(
                f"Adyen Web's encrypted card fields can only be charged by Adyen; this "
                f"merchant's payments go to {listed}. Collect the card with that gateway's "
                "browser SDK instead.",
                code="payment_method_not_accepted",
                param="payment_method.adyen",
            )
        return route
    if token is not None:
        route = [g for g in configured if g.accepts_token(token)]
        if not route:
            raise InvalidRequest(
                f"This payment method token cannot be charged by this merchant's gateways "
                f"({listed}); create it with the browser SDK of one of them.",
                code="payment_method_token_not_accepted",
                param="payment_method.token",
            )
        return route
    route = [g for g in configured if g.server_side_methods]
    if not route:
        if card:
            raise InvalidRequest(
                f"Card details cannot be sent to the server for this merchant: its payments "
                f"go through {listed}. Collect the card with the gateway's browser SDK "
                "(Stripe.js Elements) and send payment_method.token (pm_...) instead.",
                code="card_details_not_accepted",
                param="payment_method.card",
            )
        raise InvalidRequest(
            f"This payment method needs a token from the browser SDK of {listed}: send "
            "payment_method.token.",
            code="payment_method_token_required",
            param="payment_method.token",
        )
    return route


def gateway_idempotency_key(*, secret: str, merchant_id: str, idempotency_key: str) -> str:
    """The key sent to the gateway: the same for every replay of one client attempt.

    Derived from the merchant's Idempotency-Key (keyed HMAC, so it reveals nothing), not from
    the payment row: if the platform fails after the gateway charged, the client's retry
    re-sends the same gateway key and the gateway answers with the original charge instead
    of charging again.
    """
    message = f"{merchant_id}:{idempotency_key}".encode()
    return "cl_" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def _charge_request(
    payment: Payment, required: list[str], *, payment_method: str | None = None
) -> ChargeRequest:
    """The gateway request of an attempt; its key is stored on the payment for later steps.

    ``payment_method`` overrides the stored reference for data that is never stored
    (Adyen Web's encrypted card fields).
    """
    three_ds = payment.method_type == MethodType.card.value and "three_ds" in required
    return ChargeRequest(
        amount=payment.amount,
        currency=payment.currency,
        payment_method=payment_method or payment.payment_method_ref or "",
        idempotency_key=payment.verification["gateway_idempotency_key"],
        three_ds_required=three_ds,
        metadata={"session_id": payment.session_id},
    )


def complete_challenge(
    *,
    db: Session,
    merchant: Merchant,
    session_id: str,
    payment_id: str,
    body: ChallengeRequest,
    gateways: GatewayPool,
    budget: Budget | None = None,
) -> tuple[int, dict[str, Any]]:
    """Finish a payment that answered ``requires_action`` (the 3-D Secure challenge).

    The completion can move money, so it follows the charge's path: the payment is
    committed as ``processing`` with the ``outcome_unknown`` marker before the gateway is
    called (a crash leaves it for the reconciler, and a concurrent completion is refused),
    and an answer that leaves open whether the gateway acted is reconciled, never recorded
    as a decline: that would invite the shopper to pay again for a payment that went
    through. Still unknown, the payment stays ``processing`` and the answer is 503.
    """
    budget = budget or Budget(15.0)
    checkout = sessions.get(db=db, merchant_id=merchant.id, session_id=session_id, for_update=True)
    sessions.check_client_secret(checkout, body.client_secret)
    payment = db.scalar(
        select(Payment)
        .where(
            Payment.id == payment_id,
            Payment.merchant_id == merchant.id,
            Payment.session_id == checkout.id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if payment is None:
        raise NotFound(f"No such payment: '{payment_id}'", param="payment_id")
    if payment.status != "requires_action" or not payment.gateway_reference:
        raise InvalidRequest(
            f"Payment {payment.id} has no pending action (status {payment.status}).",
            code="payment_unexpected_state",
        )
    sessions.ensure_open(checkout)
    gateway = gateways.get(payment.gateway)
    if gateway is None:  # its credentials were removed since; nothing can finish it here
        raise InvalidRequest(
            f"Payment {payment.id} was made through {payment.gateway}, which is no longer "
            "set up on the platform.",
            code="gateway_not_configured",
        )
    if body.details is not None and not gateway.encrypted_card_fields:
        raise InvalidRequest(
            f"Payment {payment.id} was made through {payment.gateway}: send outcome, not "
            "details (those are Adyen Web's).",
            code="invalid_details",
            param="details",
        )
    request = _charge_request(payment, payment.verification.get("required", []))
    pending_action = payment.next_action
    payment.status = "processing"
    payment.next_action = None
    payment.verification = payment.verification | {OUTCOME_UNKNOWN: True, IN_FLIGHT: True}
    payment.updated_at = utcnow()
    db.commit()  # durable before the gateway may move money
    try:
        outcome = complete_action(
            db=db,
            payment=payment,
            request=request,
            gateway=gateway,
            pool=gateways,
            budget=budget,
            outcome=body.outcome,
            details=body.details,
        )
    except CheckoutLabError:
        db.rollback()  # the gateway refused the request itself: the challenge is still open
        checkout, payment = lock_session_and_payment(
            db, merchant_id=merchant.id, session_id=checkout.id, payment_id=payment.id
        )
        _reopen(payment, pending_action)
        db.commit()
        raise
    checkout, payment = lock_session_and_payment(
        db, merchant_id=merchant.id, session_id=checkout.id, payment_id=payment.id
    )
    if outcome.unavailable:
        # Nothing was sent (breaker open, no time left): the challenge is still pending.
        if payment.status == "processing":
            _reopen(payment, pending_action)
        db.commit()
        return 503, {
            "error": {
                "type": "api_error",
                "code": "gateway_unavailable",
                "message": _UNAVAILABLE_MESSAGE,
                "param": None,
                "retryable": True,
                "decline_code": outcome.result.decline_code,
                "payment": payment_body(payment),
            }
        }
    return _record(db, checkout, payment, outcome)


def _reopen(payment: Payment, next_action: dict[str, Any] | None) -> None:
    """Put a payment whose completion was never sent back to ``requires_action``."""
    payment.status = "requires_action"
    payment.next_action = next_action
    payment.verification = {
        k: v for k, v in payment.verification.items() if k not in (OUTCOME_UNKNOWN, IN_FLIGHT)
    }
    payment.updated_at = utcnow()
