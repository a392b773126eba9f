"""Confirm: enforce the signed profile, then charge through the merchant's gateway route.

Order matters: the session row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL),
then every check that can refuse runs before any money moves, and the payment row with its
attempts and event commit together. A unique partial index allows one succeeded payment per
session, so even a race past the lock cannot charge a session twice. Which gateways are
tried, failover and the time budget are :mod:`checkoutlab.payments.routing`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import CardError, InvalidRequest, NotFound
from checkoutlab.events.service import add_server_event
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
    reconcile,
    select_route,
)
from checkoutlab.payments.schemas import ChallengeRequest, ConfirmRequest
from checkoutlab.profile.signing import ProfileClaims, verify

log = logging.getLogger(__name__)

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


def _apply(
    db: Session,
    checkout: CheckoutSession,
    payment: Payment,
    result: GatewayResult,
    outcome: RouteOutcome | None = None,
) -> tuple[int, dict[str, Any]]:
    if outcome is not None:
        payment.gateway = outcome.gateway
        if outcome.unknown:  # settled later (retrieve, provider webhook); blocks new payments
            payment.verification = payment.verification | {"outcome_unknown": True}
    _record_result(db, checkout, payment, result)
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise InvalidRequest(
            f"Checkout session {checkout.id} is already paid.", code="session_already_succeeded"
        ) from exc
    return _answer(payment, result, outcome)


def _record_result(
    db: Session, checkout: CheckoutSession, payment: Payment, result: GatewayResult
) -> None:
    """Write a gateway's answer on the payment (and session, stock, event); no commit."""
    payment.status = result.status
    payment.gateway_reference = result.reference
    payment.decline_code = result.decline_code
    payment.failure_message = result.message
    payment.next_action = result.next_action
    payment.updated_at = utcnow()
    if result.status == "succeeded":
        checkout.status = sessions.SUCCEEDED
        sessions.take_stock(db=db, checkout=checkout)
    event_type = {
        "succeeded": "payment_succeeded",
        "failed": "payment_failed",
        "requires_action": "payment_requires_action",
    }.get(result.status)
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
            },
        )


def _answer(
    payment: Payment, result: GatewayResult, outcome: RouteOutcome | None
) -> tuple[int, dict[str, Any]]:
    body = payment_body(payment)
    if outcome is not None and (outcome.unavailable or outcome.unknown):
        # Not a decline: the card was not refused, the providers did not answer.
        message = result.message if outcome.unknown else _UNAVAILABLE_MESSAGE
        return 503, {
            "error": {
                "type": "api_error",
                "code": "gateway_timeout" if outcome.unknown else "gateway_unavailable",
                "message": message,
                "param": None,
                "retryable": True,
                "decline_code": result.decline_code,
                "payment": body,
            }
        }
    if result.status == "failed":
        code = result.decline_code if result.decline_code in _OWN_CODES else "card_declined"
        error = CardError(result.message or "The payment was declined.", code=code)
        return 402, {
            "error": error.to_dict()["error"]
            | {"decline_code": result.decline_code, "retryable": result.retryable, "payment": body}
        }
    return 200, body


_UNAVAILABLE_MESSAGE = (
    "No payment provider could process this payment right now and nothing was charged. "
    "Try again in a moment."
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
    checkout = sessions.get(db=db, merchant_id=merchant.id, session_id=session_id, for_update=True)
    sessions.check_client_secret(checkout, body.client_secret)
    sessions.ensure_open(checkout)
    if _settle_unknown(db=db, checkout=checkout, gateways=gateways, budget=budget):
        checkout = sessions.get(
            db=db, merchant_id=merchant.id, session_id=session_id, for_update=True
        )
        sessions.ensure_open(checkout)
    if any(p.status == "processing" for p in sessions.payments_of(db=db, checkout=checkout)):
        raise InvalidRequest(
            f"Checkout session {checkout.id} has a payment in progress (e.g. a bank transfer "
            "awaiting funds); it cannot be paid again.",
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
    if method is MethodType.card and details is None and token is None:
        raise InvalidRequest(
            "payment_method.token (from the gateway's browser SDK, e.g. Stripe.js) or "
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
    route = _usable_route(names, gateways, token=token, card=card is not None)

    brand = last4 = None
    if token is not None:
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
            "gateway_idempotency_key": gateway_idempotency_key(
                secret=secret, merchant_id=merchant.id, idempotency_key=idempotency_key
            ),
            "avs_country": billing.country.upper() if billing else None,
            "route": [g.name for g in route],
            "route_rule": rule,
        },
    )
    db.add(payment)
    db.flush()  # attempts reference the payment row
    outcome = charge_with_failover(
        db=db,
        payment=payment,
        request=_charge_request(payment, claims.required),
        route=route,
        pool=gateways,
        budget=budget,
    )
    return _apply(db, checkout, payment, outcome.result, outcome)


def _settle_unknown(
    *, db: Session, checkout: CheckoutSession, gateways: GatewayPool, budget: Budget
) -> bool:
    """Reconcile the session's payments whose outcome was left unknown; True if any settled.

    Such a payment blocks new ones (it may have charged); each new confirm asks its gateway
    again first, so the shopper is unblocked as soon as the provider answers.
    """
    settled = False
    for payment in sessions.payments_of(db=db, checkout=checkout):
        if payment.status != "processing" or not payment.verification.get("outcome_unknown"):
            continue
        gateway = gateways.get(payment.gateway)
        if gateway is None:
            continue
        request = _charge_request(payment, payment.verification.get("required", []))
        result = reconcile(
            db=db, payment=payment, request=request, gateway=gateway, pool=gateways, budget=budget
        )
        if result is None:
            continue
        payment.verification = {
            k: v for k, v in payment.verification.items() if k != "outcome_unknown"
        } | {"reconciled": True}
        _record_result(db, checkout, payment, result)
        settled = True
    if settled:
        try:
            db.commit()
        except IntegrityError as exc:
            db.rollback()
            raise InvalidRequest(
                f"Checkout session {checkout.id} is already paid.",
                code="session_already_succeeded",
            ) from exc
    return settled


def _usable_route(
    names: list[str], gateways: GatewayPool, *, token: str | None, card: bool
) -> list[Gateway]:
    """The route's gateways that are set up and can take this payment method, in order."""
    configured = [g for g in (gateways.get(name) for name in names) if g is not None]
    if not configured:
        raise InvalidRequest(
            f"This merchant's payments go to {', '.join(names)}, which the platform has no "
            "credentials for. Ask the platform operator to set them up.",
            code="gateway_not_configured",
        )
    listed = ", ".join(g.name for g in configured)
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


def _charge_request(payment: Payment, required: list[str]) -> ChargeRequest:
    """The gateway request of an attempt; its key is stored on the payment for later steps."""
    three_ds = payment.method_type == MethodType.card.value and "three_ds" in required
    return ChargeRequest(
        amount=payment.amount,
        currency=payment.currency,
        payment_method=payment.payment_method_ref or "",
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
) -> tuple[int, dict[str, Any]]:
    checkout = sessions.get(db=db, merchant_id=merchant.id, session_id=session_id, for_update=True)
    sessions.check_client_secret(checkout, body.client_secret)
    payment = db.get(Payment, payment_id)
    if payment is None or payment.merchant_id != merchant.id or payment.session_id != checkout.id:
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
    request = _charge_request(payment, payment.verification.get("required", []))
    result = gateway.complete_action(
        reference=payment.gateway_reference, request=request, outcome=body.outcome
    )
    return _apply(db, checkout, payment, result)
