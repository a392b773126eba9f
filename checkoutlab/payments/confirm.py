"""Confirm: enforce the signed profile, then charge through a gateway.

Order matters: the session row is locked first (``SELECT ... FOR UPDATE`` on PostgreSQL),
then every check that can refuse runs before any money moves, and the payment row with its
event commit together. A unique partial index allows one succeeded payment per session, so
even a race past the lock cannot charge a session twice.
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
from checkoutlab.payments.schemas import ChallengeRequest, ConfirmRequest
from checkoutlab.profile.signing import ProfileClaims, verify

log = logging.getLogger(__name__)

# Decline codes that are their own error code; every other decline is "card_declined".
_OWN_CODES = {"processing_error", "authentication_failed", "expired_card", "incorrect_cvc"}


def _missing_steps(body: ConfirmRequest, claims: ProfileClaims) -> None:
    """Refuse, naming the first required step that the request does not satisfy."""
    method = body.payment_method.type
    verification = body.verification
    required = set(claims.required)
    if "cvv" in required and method is MethodType.card:
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
    db: Session, checkout: CheckoutSession, payment: Payment, result: GatewayResult
) -> tuple[int, dict[str, Any]]:
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
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise InvalidRequest(
            f"Checkout session {checkout.id} is already paid.", code="session_already_succeeded"
        ) from exc
    body = payment_body(payment)
    if result.status == "failed":
        code = result.decline_code if result.decline_code in _OWN_CODES else "card_declined"
        error = CardError(result.message or "The payment was declined.", code=code)
        return 402, {
            "error": error.to_dict()["error"]
            | {"decline_code": result.decline_code, "payment": body}
        }
    return 200, body


def confirm(
    *,
    db: Session,
    merchant: Merchant,
    session_id: str,
    body: ConfirmRequest,
    secret: str,
    gateway: Gateway,
    idempotency_key: str,
) -> tuple[int, dict[str, Any]]:
    checkout = sessions.get(db=db, merchant_id=merchant.id, session_id=session_id, for_update=True)
    sessions.check_client_secret(checkout, body.client_secret)
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

    brand = last4 = None
    if method is MethodType.card:
        details = body.payment_method.card
        if details is None:
            raise InvalidRequest(
                "payment_method.card is required for card payments.", param="payment_method.card"
            )
        card = CardInput(
            number=details.number.get_secret_value(),
            exp_month=details.exp_month,
            exp_year=details.exp_year,
            cvc=details.cvc.get_secret_value(),
        )
        validate_card(card)
        token = gateway.tokenize_card(card)
        del card  # the full number goes no further than the tokenizer
        payment_method, brand, last4 = token.payment_method, token.brand, token.last4
    else:
        payment_method = f"pm_{gateway.name}_{method.value}"

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
        gateway=gateway.name,
        payment_method_ref=payment_method,
        verification={
            "required": claims.required,
            "loyalty_discount": discount,
            "gateway_idempotency_key": gateway_idempotency_key(
                secret=secret, merchant_id=merchant.id, idempotency_key=idempotency_key
            ),
            "avs_country": body.verification.billing_address.country.upper()
            if body.verification.billing_address
            else None,
        },
    )
    db.add(payment)
    return _apply(db, checkout, payment, gateway.charge(_charge_request(payment, claims.required)))


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
    gateway: Gateway,
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
    request = _charge_request(payment, payment.verification.get("required", []))
    result = gateway.complete_action(
        reference=payment.gateway_reference, request=request, outcome=body.outcome
    )
    return _apply(db, checkout, payment, result)
