"""The Stripe adapter, through the real ``stripe`` SDK, against a local test double.

The double (``tests/payments/doubles/stripe_double.py``) answers as Stripe's API reference
documents; these tests show the adapter handles that documented behaviour.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from checkoutlab.errors import InvalidRequest, NotFound
from checkoutlab.payments.cards import CardInput
from checkoutlab.payments.gateways import get_gateway
from checkoutlab.payments.gateways.base import ChargeRequest, GatewayResult
from checkoutlab.payments.gateways.stripe_gateway import StripeGateway, StripeSettings

from .doubles import StripeDouble
from .doubles.stripe_double import decode_form

WEBHOOK_SECRET = "whsec_test_double"


@pytest.fixture
def double() -> Iterator[StripeDouble]:
    with StripeDouble(hang_seconds=3) as server:
        yield server


def make_gateway(double: StripeDouble, **overrides: object) -> StripeGateway:
    options: dict[str, object] = {
        "api_key": double.api_key,
        "base_url": double.url,
        "timeout": 2.0,
        "webhook_secret": WEBHOOK_SECRET,
    }
    return StripeGateway(**(options | overrides))


@pytest.fixture
def gateway(double: StripeDouble) -> StripeGateway:
    return make_gateway(double)


def charge_request(
    payment_method: str = "pm_card_visa", *, key: str | None = None, **fields: object
) -> ChargeRequest:
    key = key or f"pay_{uuid.uuid4().hex[:12]}"
    values: dict[str, object] = {
        "amount": 2500,
        "currency": "eur",
        "payment_method": payment_method,
        "idempotency_key": key,
        "metadata": {"payment_id": key, "session_id": "cs_1"},
    }
    return ChargeRequest.model_validate(values | fields)


def creates(double: StripeDouble) -> list[dict[str, object]]:
    return [decode_form(r.body) for r in double.requests_to("POST", "/v1/payment_intents")]


# --- construction -------------------------------------------------------------------------


def test_registry_builds_the_adapter_from_explicit_settings(double: StripeDouble) -> None:
    gateway = get_gateway("stripe", api_key="sk_test_x", base_url=double.url, timeout=3)
    assert isinstance(gateway, StripeGateway)
    assert gateway.settings.timeout == 3.0
    assert "sk_test_x" not in repr(gateway.settings)  # the key stays out of logs

    settings = StripeSettings(api_key="sk_test_y", base_url=double.url)
    assert get_gateway("stripe", settings=settings).settings is settings


def test_settings_refuse_a_publishable_key() -> None:
    with pytest.raises(ValidationError, match="publishable"):
        StripeSettings(api_key="pk_test_123")


def test_tokenize_card_refuses_raw_card_numbers(gateway: StripeGateway) -> None:
    card = CardInput(number="4242424242424242", exp_month=12, exp_year=2030, cvc="123")
    with pytest.raises(InvalidRequest) as info:
        gateway.tokenize_card(card)
    assert info.value.code == "card_details_not_accepted"
    assert "Stripe.js" in info.value.message and "SAQ-A" in info.value.message


# --- charge -------------------------------------------------------------------------------


def test_success_creates_a_confirmed_payment_intent(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    request = charge_request()
    result = gateway.charge(request)

    assert result == GatewayResult(status="succeeded", reference=result.reference)
    assert result.reference and result.reference.startswith("pi_")
    [sent] = double.requests_to("POST", "/v1/payment_intents")
    assert sent.header("Idempotency-Key") == request.idempotency_key
    assert sent.header("Authorization") == f"Bearer {double.api_key}"
    params = decode_form(sent.body)
    assert params["confirm"] == "true"
    assert params["amount"] == "2500" and params["currency"] == "eur"
    assert params["payment_method"] == "pm_card_visa"
    assert params["metadata"] == {
        "payment_id": request.idempotency_key,
        "session_id": "cs_1",
        "idempotency_key": request.idempotency_key,
    }


@pytest.mark.parametrize(
    ("payment_method", "decline_code", "retryable"),
    [
        ("pm_card_chargeDeclined", "card_declined", False),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", False),
        ("pm_card_chargeDeclinedLostCard", "lost_card", False),
        ("pm_card_chargeDeclinedStolenCard", "stolen_card", False),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", False),
        ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", False),
        ("pm_card_chargeDeclinedProcessingError", "processing_error", True),
    ],
)
def test_card_errors_are_declines_with_stripes_decline_code(
    gateway: StripeGateway, payment_method: str, decline_code: str, retryable: bool
) -> None:
    result = gateway.charge(charge_request(payment_method))

    assert result.status == "failed"
    assert result.decline_code == decline_code
    assert result.retryable is retryable
    assert result.reference and result.reference.startswith("pi_")  # the declined intent
    assert result.message


def test_unknown_payment_method_is_a_decline_without_reference(gateway: StripeGateway) -> None:
    result = gateway.charge(charge_request("pm_does_not_exist"))
    assert (result.status, result.decline_code, result.reference) == (
        "failed",
        "invalid_payment_method",
        None,
    )


# --- 3-D Secure ---------------------------------------------------------------------------


def test_three_ds_challenge_in_page_then_server_confirm(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    request = charge_request("pm_card_threeDSecure2Required")
    first = gateway.charge(request)

    assert first.status == "requires_action"
    assert first.next_action is not None
    assert first.next_action["type"] == "three_ds_challenge"
    assert first.next_action["stripe_type"] == "use_stripe_sdk"
    assert first.next_action["challenge_id"] == first.reference
    assert first.next_action["client_secret"].startswith(f"{first.reference}_secret")
    assert creates(double)[0]["confirmation_method"] == "manual"

    double.complete_challenge(first.reference, authenticated=True)  # Stripe.js + issuer
    done = gateway.complete_action(reference=first.reference, request=request, outcome="succeeded")

    assert (done.status, done.reference) == ("succeeded", first.reference)
    [confirm] = double.requests_to("POST", f"/v1/payment_intents/{first.reference}/confirm")
    assert confirm.header("Idempotency-Key") == f"{request.idempotency_key}:confirm"


def test_profile_required_three_ds_with_redirect(double: StripeDouble) -> None:
    gateway = make_gateway(double, return_url="https://shop.example/return")
    request = charge_request("pm_card_visa", three_ds_required=True)
    result = gateway.charge(request)

    assert result.status == "requires_action"
    assert result.next_action is not None
    assert result.next_action["stripe_type"] == "redirect_to_url"
    assert result.next_action["redirect_url"].startswith(double.url)
    params = creates(double)[0]
    assert params["payment_method_options"] == {"card": {"request_three_d_secure": "any"}}
    assert params["return_url"] == "https://shop.example/return"


def test_failed_authentication_is_a_decline(gateway: StripeGateway, double: StripeDouble) -> None:
    request = charge_request("pm_card_threeDSecure2Required")
    first = gateway.charge(request)
    assert first.reference
    double.complete_challenge(first.reference, authenticated=False)

    result = gateway.complete_action(reference=first.reference, request=request, outcome="failed")
    assert (result.status, result.decline_code, result.retryable) == (
        "failed",
        "authentication_failed",
        False,
    )


def test_abandoned_challenge_cancels_the_intent(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    request = charge_request("pm_card_threeDSecure2Required")
    first = gateway.charge(request)
    assert first.reference

    result = gateway.complete_action(reference=first.reference, request=request, outcome="failed")

    assert (result.status, result.decline_code) == ("failed", "authentication_failed")
    assert double.intents[first.reference]["status"] == "canceled"  # no late charge possible


def test_challenge_not_finished_yet_still_requires_action(gateway: StripeGateway) -> None:
    request = charge_request("pm_card_threeDSecure2Required")
    first = gateway.charge(request)
    assert first.reference

    again = gateway.complete_action(reference=first.reference, request=request, outcome="succeeded")
    assert again.status == "requires_action"
    assert again.next_action == first.next_action


def test_complete_action_refuses_another_attempts_intent(gateway: StripeGateway) -> None:
    first = gateway.charge(charge_request("pm_card_threeDSecure2Required"))
    assert first.reference
    with pytest.raises(NotFound):
        gateway.complete_action(
            reference=first.reference, request=charge_request(), outcome="succeeded"
        )
    with pytest.raises(NotFound):
        gateway.complete_action(
            reference="pi_unknown", request=charge_request(), outcome="succeeded"
        )


# --- transport failures -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_a_retryable_failure(
    gateway: StripeGateway, double: StripeDouble, status: int
) -> None:
    double.inject(status)
    result = gateway.charge(charge_request())

    assert (result.status, result.decline_code, result.retryable) == (
        "failed",
        "gateway_unavailable",
        True,
    )
    assert double.charges_created == 0
    # every 5xx leaves open whether the provider acted (a front end can fail after the
    # back end charged), so routing reconciles before it fails over
    assert result.outcome_unknown is True


def test_hang_times_out_within_the_timeout_then_reconciles(double: StripeDouble) -> None:
    gateway = make_gateway(double, timeout=0.5)
    request = charge_request()
    double.inject("hang")

    started = time.monotonic()
    result = gateway.charge(request)
    elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert (result.status, result.decline_code, result.retryable) == (
        "failed",
        "gateway_timeout",
        True,
    )
    assert result.outcome_unknown  # sent, answer lost: the provider may have acted
    # Stripe acted although the answer was lost; reconciliation finds that, no second charge.
    reconciled = gateway.retrieve(request=request)
    assert reconciled.status == "succeeded"
    assert double.charges_created == 1
    assert reconciled.reference in double.intents
    keys = {r.header("Idempotency-Key") for r in double.requests_to("POST", "/v1/payment_intents")}
    assert keys == {request.idempotency_key}


def test_malformed_body_is_a_retryable_failure_then_reconciles(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    request = charge_request()
    double.inject("malformed")

    result = gateway.charge(request)

    assert (result.status, result.decline_code, result.retryable) == (
        "failed",
        "gateway_invalid_response",
        True,
    )
    assert result.outcome_unknown
    assert result.message and "unreadable" in result.message
    assert gateway.retrieve(request=request).status == "succeeded"
    assert double.charges_created == 1


def test_connection_refused_is_a_retryable_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gateway = StripeGateway(api_key="sk_test_x", base_url=f"http://127.0.0.1:{port}", timeout=1)

    result = gateway.charge(charge_request())
    assert (result.decline_code, result.retryable) == ("gateway_unavailable", True)
    assert result.outcome_unknown is False  # never sent: failover needs no reconciliation


def test_rejected_api_key_is_a_retryable_failure(double: StripeDouble) -> None:
    result = make_gateway(double, api_key="sk_test_wrong").charge(charge_request())
    assert (result.status, result.decline_code, result.retryable) == (
        "failed",
        "gateway_unavailable",
        True,
    )
    assert result.outcome_unknown is False


def test_with_timeout_bounds_the_next_call(double: StripeDouble, gateway: StripeGateway) -> None:
    assert gateway.with_timeout(60) is gateway  # never longer than configured
    short = gateway.with_timeout(0.3)
    assert short.settings.timeout == 0.3 and gateway.settings.timeout == 2.0
    double.inject("hang")
    started = time.monotonic()
    assert short.charge(charge_request()).decline_code == "gateway_timeout"
    assert time.monotonic() - started < 1.5


# --- idempotency and reconciliation -------------------------------------------------------


def test_same_idempotency_key_twice_is_one_payment_intent(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    request = charge_request()
    first = gateway.charge(request)
    second = gateway.charge(request)

    assert first == second
    assert double.charges_created == 1
    sent = double.requests_to("POST", "/v1/payment_intents")
    assert [r.header("Idempotency-Key") for r in sent] == [request.idempotency_key] * 2


def test_same_key_for_a_different_request_is_the_callers_mistake(gateway: StripeGateway) -> None:
    request = charge_request()
    gateway.charge(request)
    with pytest.raises(InvalidRequest) as info:
        gateway.charge(request.model_copy(update={"amount": 9999}))
    assert info.value.code == "idempotency_key_reused"


def test_retrieve_by_reference_reads_the_intent(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    request = charge_request("pm_card_threeDSecure2Required")
    first = gateway.charge(request)
    assert first.reference
    double.complete_challenge(first.reference)

    pending = gateway.retrieve(request=request, reference=first.reference)

    # Authenticated, waiting for the server's confirm: still the platform's move.
    assert pending.status == "requires_action"
    assert pending.next_action is not None and pending.next_action["stripe_type"] is None
    assert double.requests_to("GET", f"/v1/payment_intents/{first.reference}")
    assert double.charges_created == 1


# --- refunds ------------------------------------------------------------------------------


def test_refund_partial_then_rest_then_nothing_left(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    paid = gateway.charge(charge_request())
    assert paid.reference

    part = gateway.refund(
        reference=paid.reference, amount=1000, currency="eur", idempotency_key="rf_a"
    )
    again = gateway.refund(
        reference=paid.reference, amount=1000, currency="eur", idempotency_key="rf_a"
    )
    rest = gateway.refund(
        reference=paid.reference, amount=1500, currency="EUR", idempotency_key="rf_b"
    )

    assert (part.status, part.amount, part.currency) == ("succeeded", 1000, "EUR")
    assert part.reference and part.reference.startswith("re_")
    assert again == part  # same key: the same refund, not a second one
    assert rest.status == "succeeded"
    assert len(double.refunds) == 2
    sent = double.requests_to("POST", "/v1/refunds")
    assert decode_form(sent[0].body) == {"payment_intent": paid.reference, "amount": "1000"}
    with pytest.raises(InvalidRequest) as info:
        gateway.refund(reference=paid.reference, amount=1, currency="EUR", idempotency_key="rf_c")
    assert info.value.code == "charge_already_refunded"


def test_refund_transport_failure_is_retryable(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    paid = gateway.charge(charge_request())
    assert paid.reference
    double.inject(503, path="/v1/refunds")

    result = gateway.refund(
        reference=paid.reference, amount=500, currency="EUR", idempotency_key="rf_1"
    )
    assert (result.status, result.failure_code, result.retryable) == (
        "failed",
        "gateway_unavailable",
        True,
    )


# --- webhooks -----------------------------------------------------------------------------


def test_webhook_with_a_valid_signature_is_translated(
    gateway: StripeGateway, double: StripeDouble
) -> None:
    request = charge_request()
    paid = gateway.charge(request)
    assert paid.reference
    payload = double.event(
        "payment_intent.succeeded", double.intents[paid.reference], event_id="evt_42"
    )
    signature = double.sign_webhook(payload, WEBHOOK_SECRET)

    [event] = gateway.parse_webhook(payload, {"stripe-signature": signature})

    assert event.id == "evt_42"
    assert (event.type, event.provider_type) == ("payment_succeeded", "payment_intent.succeeded")
    assert (event.reference, event.merchant_reference) == (paid.reference, request.idempotency_key)
    assert (event.amount, event.currency) == (2500, "EUR")


def test_webhook_dispute_carries_its_reason(double: StripeDouble, gateway: StripeGateway) -> None:
    dispute = {"id": "dp_1", "object": "dispute", "payment_intent": "pi_1", "reason": "fraudulent"}
    payload = double.event("charge.dispute.created", dispute)
    [event] = gateway.parse_webhook(
        payload, {"Stripe-Signature": double.sign_webhook(payload, WEBHOOK_SECRET)}
    )
    assert (event.type, event.reference, event.reason) == ("dispute_created", "pi_1", "fraudulent")


@pytest.mark.parametrize("problem", ["wrong_secret", "tampered", "too_old", "missing"])
def test_webhook_with_a_bad_signature_is_refused(
    gateway: StripeGateway, double: StripeDouble, problem: str
) -> None:
    payload = double.event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    headers = {
        "wrong_secret": {"Stripe-Signature": double.sign_webhook(payload, "whsec_other")},
        "tampered": {"Stripe-Signature": double.sign_webhook(payload, WEBHOOK_SECRET)},
        "too_old": {
            "Stripe-Signature": double.sign_webhook(
                payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600
            )
        },
        "missing": {},
    }[problem]
    if problem == "tampered":
        body = json.loads(payload)
        body["data"]["object"]["id"] = "pi_2"
        payload = json.dumps(body).encode()

    with pytest.raises(InvalidRequest) as info:
        gateway.parse_webhook(payload, headers)
    assert info.value.code == "invalid_signature"
