"""The Adyen adapter, through the real ``Adyen`` SDK, against a local test double.

The double (``tests/payments/doubles/adyen_double.py``) answers as Adyen's Checkout API
reference and testing guides document; these tests show the adapter handles that.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from checkoutlab.errors import InvalidRequest
from checkoutlab.payments.cards import CardInput
from checkoutlab.payments.gateways import get_gateway
from checkoutlab.payments.gateways.adyen_gateway import (
    AdyenGateway,
    AdyenSettings,
    refusal_decline_code,
)
from checkoutlab.payments.gateways.base import ChargeRequest

from .doubles import THREE_DS2_CARD, AdyenDouble

HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
RETURN_URL = "https://shop.example/return"


@pytest.fixture
def double() -> Iterator[AdyenDouble]:
    with AdyenDouble(hang_seconds=3) as server:
        yield server


def make_gateway(double: AdyenDouble, **overrides: object) -> AdyenGateway:
    options: dict[str, object] = {
        "api_key": double.api_key,
        "merchant_account": double.merchant_account,
        "return_url": RETURN_URL,
        "base_url": double.url,
        "timeout": 2.0,
        "hmac_key": HMAC_KEY,
    }
    return AdyenGateway(**(options | overrides))


@pytest.fixture
def gateway(double: AdyenDouble) -> AdyenGateway:
    return make_gateway(double)


def card_state(holder: str = "APPROVED", number: str = "4111111111111111") -> str:
    """What Adyen Web's card component produces, with Adyen's test_ (unencrypted) prefix."""
    return json.dumps(
        {
            "paymentMethod": {
                "type": "scheme",
                "encryptedCardNumber": f"test_{number}",
                "encryptedExpiryMonth": "test_03",
                "encryptedExpiryYear": "test_2030",
                "encryptedSecurityCode": "test_737",
                "holderName": holder,
            },
            "browserInfo": {"userAgent": "Mozilla/5.0", "acceptHeader": "*/*"},
        }
    )


def charge_request(
    payment_method: str | None = None, *, key: str | None = None, **fields: object
) -> ChargeRequest:
    key = key or f"pay_{uuid.uuid4().hex[:12]}"
    values: dict[str, object] = {
        "amount": 2500,
        "currency": "EUR",
        "payment_method": payment_method or card_state(),
        "idempotency_key": key,
        "metadata": {"payment_id": key},
    }
    return ChargeRequest.model_validate(values | fields)


def payment_bodies(double: AdyenDouble) -> list[dict[str, Any]]:
    return [r.json() for r in double.requests_to("POST", "/v71/payments")]


# --- construction -------------------------------------------------------------------------


def test_registry_builds_the_adapter_from_explicit_settings(double: AdyenDouble) -> None:
    gateway = get_gateway(
        "adyen",
        api_key="AQE_key",
        merchant_account="ShopECOM",
        return_url=RETURN_URL,
        base_url=double.url,
        timeout=3,
    )
    assert isinstance(gateway, AdyenGateway)
    assert gateway.settings.timeout == 3.0
    assert "AQE_key" not in repr(gateway.settings)


def test_live_platform_needs_the_endpoint_prefix() -> None:
    with pytest.raises(ValidationError, match="live_endpoint_prefix"):
        AdyenSettings(api_key="k", merchant_account="m", return_url=RETURN_URL, platform="live")


def test_no_raw_card_data(gateway: AdyenGateway) -> None:
    card = CardInput(number="4111111111111111", exp_month=3, exp_year=2030, cvc="737")
    with pytest.raises(InvalidRequest) as info:
        gateway.tokenize_card(card)
    assert info.value.code == "card_details_not_accepted"

    raw = json.dumps({"type": "scheme", "number": "4111111111111111", "cvc": "737"})
    with pytest.raises(InvalidRequest) as info:
        gateway.charge(charge_request(raw))
    assert info.value.code == "card_details_not_accepted"

    with pytest.raises(InvalidRequest) as info:
        gateway.charge(charge_request("pm_card_visa"))
    assert info.value.code == "invalid_payment_method"


# --- charge -------------------------------------------------------------------------------


def test_authorised_payment(gateway: AdyenGateway, double: AdyenDouble) -> None:
    request = charge_request()
    result = gateway.charge(request)

    assert (result.status, result.decline_code) == ("succeeded", None)
    assert result.reference and result.reference in double.payments
    [sent] = double.requests_to("POST", "/v71/payments")
    assert sent.header("X-API-Key") == double.api_key
    assert sent.header("Idempotency-Key") == request.idempotency_key
    body = sent.json()
    assert body["merchantAccount"] == double.merchant_account
    assert body["amount"] == {"value": 2500, "currency": "EUR"}
    assert body["reference"] == request.idempotency_key
    assert body["returnUrl"] == RETURN_URL
    assert body["paymentMethod"]["encryptedCardNumber"] == "test_4111111111111111"
    assert body["browserInfo"]["userAgent"] == "Mozilla/5.0"
    assert body["authenticationData"] == {"threeDSRequestData": {"nativeThreeDS": "preferred"}}


@pytest.mark.parametrize(
    ("holder_name", "decline_code", "retryable"),
    [
        ("DECLINED", "card_declined", False),
        ("NOT_ENOUGH_BALANCE", "insufficient_funds", False),
        ("CARD_EXPIRED", "expired_card", False),
        ("CVC_DECLINED", "incorrect_cvc", False),
        ("BLOCK_CARD", "pickup_card", False),
        ("BLOCK_CARD : 43 : STOLEN CARD", "stolen_card", False),
        ("BLOCK_CARD : 41 : LOST CARD", "lost_card", False),
        ("FRAUD", "fraudulent", False),
        ("ISSUER_SUSPECTED_FRAUD", "fraudulent", False),
        ("NOT_3D_AUTHENTICATED", "authentication_failed", False),
        ("ERROR", "processing_error", True),  # resultCode Error, "Acquirer Error"
        ("ISSUER_UNAVAILABLE", "issuer_not_available", True),
    ],
)
def test_refusal_reasons_map_to_decline_codes(
    gateway: AdyenGateway, holder_name: str, decline_code: str, retryable: bool
) -> None:
    result = gateway.charge(charge_request(card_state(holder_name)))

    assert result.status == "failed"
    assert (result.decline_code, result.retryable) == (decline_code, retryable)
    assert result.reference  # the refused payment's pspReference
    # The shopper never sees Adyen's refusal reason (Adyen asks for that).
    assert result.message and "Blocked" not in result.message and "FRAUD" not in result.message


def test_received_is_processing(gateway: AdyenGateway) -> None:
    assert gateway.charge(charge_request(card_state("PENDING"))).status == "processing"


def test_invalid_card_number_is_a_decline(gateway: AdyenGateway) -> None:
    result = gateway.charge(charge_request(card_state(number="4111111111111112")))
    assert (result.status, result.decline_code, result.retryable) == (
        "failed",
        "incorrect_number",
        False,
    )


def test_refusal_decline_code_defaults() -> None:
    assert refusal_decline_code("Some future reason") == "card_declined"
    assert refusal_decline_code(None, result_code="Error") == "processing_error"
    assert refusal_decline_code("not enough balance") == "insufficient_funds"


# --- 3-D Secure ---------------------------------------------------------------------------


def test_native_three_ds_fingerprint_then_challenge_then_authorised(
    gateway: AdyenGateway, double: AdyenDouble
) -> None:
    request = charge_request(card_state(number=THREE_DS2_CARD))
    first = gateway.charge(request)

    assert first.status == "requires_action"
    assert first.next_action is not None and first.reference
    assert first.next_action["type"] == "three_ds_challenge"
    assert first.next_action["result_code"] == "IdentifyShopper"
    assert first.next_action["adyen_action"]["type"] == "threeDS2"

    fingerprint = double.shopper_result(first.next_action["adyen_action"])  # Adyen Web
    second = gateway.submit_action_details(
        reference=first.reference, request=request, details={"details": fingerprint}
    )
    assert second.status == "requires_action" and second.next_action is not None
    assert second.next_action["result_code"] == "ChallengeShopper"

    challenge = double.shopper_result(second.next_action["adyen_action"], authenticated=True)
    done = gateway.submit_action_details(
        reference=first.reference, request=request, details=challenge
    )

    assert (done.status, done.reference) == ("succeeded", first.reference)
    sent = double.requests_to("POST", "/v71/payments/details")
    assert [r.json()["details"] for r in sent] == [fingerprint, challenge]
    keys = [r.header("Idempotency-Key") for r in sent]
    assert len(set(keys)) == 2 and all(k and len(k) <= 64 for k in keys)


def test_redirect_three_ds_required_by_the_profile(double: AdyenDouble) -> None:
    gateway = make_gateway(double, native_three_ds=False)
    request = charge_request(three_ds_required=True)  # a card that needs no 3DS by itself
    first = gateway.charge(request)

    assert first.status == "requires_action" and first.next_action is not None
    assert first.next_action["result_code"] == "RedirectShopper"
    assert first.next_action["redirect_url"].startswith(double.url)
    assert payment_bodies(double)[0]["authenticationData"] == {"attemptAuthentication": "always"}

    details = double.shopper_result(first.next_action["adyen_action"])
    assert "redirectResult" in details
    assert first.reference
    done = gateway.submit_action_details(
        reference=first.reference, request=request, details=details
    )
    assert done.status == "succeeded"


def test_failed_challenge_is_a_decline(gateway: AdyenGateway, double: AdyenDouble) -> None:
    request = charge_request(card_state(number=THREE_DS2_CARD))
    first = gateway.charge(request)
    assert first.reference and first.next_action
    second = gateway.submit_action_details(
        reference=first.reference,
        request=request,
        details=double.shopper_result(first.next_action["adyen_action"]),
    )
    assert second.next_action
    result = gateway.submit_action_details(
        reference=first.reference,
        request=request,
        details=double.shopper_result(second.next_action["adyen_action"], authenticated=False),
    )
    assert (result.status, result.decline_code) == ("failed", "authentication_failed")


def test_complete_action_without_details(gateway: AdyenGateway, double: AdyenDouble) -> None:
    request = charge_request(card_state(number=THREE_DS2_CARD))
    first = gateway.charge(request)
    assert first.reference

    with pytest.raises(InvalidRequest) as info:
        gateway.complete_action(reference=first.reference, request=request, outcome="succeeded")
    assert info.value.code == "action_details_required"

    failed = gateway.complete_action(reference=first.reference, request=request, outcome="failed")
    assert (failed.status, failed.decline_code) == ("failed", "authentication_failed")
    assert not double.requests_to("POST", "/v71/payments/details")


# --- transport failures -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_a_retryable_failure(
    gateway: AdyenGateway, double: AdyenDouble, status: int
) -> None:
    double.inject(status)
    result = gateway.charge(charge_request())

    assert (result.status, result.decline_code, result.retryable) == (
        "failed",
        "gateway_unavailable",
        True,
    )
    assert double.payments_created == 0
    # every 5xx leaves open whether the provider acted (a front end can fail after the
    # back end charged), so routing reconciles before it fails over
    assert result.outcome_unknown is True


def test_hang_times_out_within_the_timeout_then_reconciles(double: AdyenDouble) -> None:
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
    reconciled = gateway.retrieve(request=request)
    assert reconciled.status == "succeeded"
    assert double.payments_created == 1  # Adyen answered the repeat from its key store
    assert reconciled.reference in double.payments


def test_malformed_body_is_a_retryable_failure_then_reconciles(
    gateway: AdyenGateway, double: AdyenDouble
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
    assert gateway.retrieve(request=request).status == "succeeded"
    assert double.payments_created == 1


def test_rejected_credentials_are_a_retryable_failure(double: AdyenDouble) -> None:
    for gateway in (
        make_gateway(double, api_key="AQE_wrong"),
        make_gateway(double, merchant_account="SomeoneElseECOM"),
    ):
        result = gateway.charge(charge_request())
        assert (result.decline_code, result.retryable) == ("gateway_unavailable", True)
        assert result.outcome_unknown is False


# --- idempotency --------------------------------------------------------------------------


def test_same_idempotency_key_twice_is_one_payment(
    gateway: AdyenGateway, double: AdyenDouble
) -> None:
    request = charge_request()
    first = gateway.charge(request)
    second = gateway.charge(request)

    assert first == second
    assert double.payments_created == 1
    sent = double.requests_to("POST", "/v71/payments")
    assert [r.header("Idempotency-Key") for r in sent] == [request.idempotency_key] * 2


def test_long_keys_fit_adyens_limits(gateway: AdyenGateway, double: AdyenDouble) -> None:
    request = charge_request(key="pay_" + "x" * 200)
    assert gateway.charge(request).status == "succeeded"
    [sent] = double.requests_to("POST", "/v71/payments")
    assert len(sent.header("Idempotency-Key") or "") == 64
    assert len(sent.json()["reference"]) <= 80


# --- refunds ------------------------------------------------------------------------------


def test_refund_is_pending_until_the_webhook(gateway: AdyenGateway, double: AdyenDouble) -> None:
    paid = gateway.charge(charge_request())
    assert paid.reference

    refund = gateway.refund(
        reference=paid.reference, amount=1000, currency="eur", idempotency_key="rf_1"
    )
    again = gateway.refund(
        reference=paid.reference, amount=1000, currency="eur", idempotency_key="rf_1"
    )

    assert (refund.status, refund.payment_reference, refund.amount) == (
        "pending",
        paid.reference,
        1000,
    )
    assert refund.reference in double.refunds
    assert again == refund and len(double.refunds) == 1
    [sent, _] = double.requests_to("POST", f"/v71/payments/{paid.reference}/refunds")
    assert sent.header("Idempotency-Key") == "rf_1"
    assert sent.json()["amount"] == {"value": 1000, "currency": "EUR"}


def test_refund_errors(gateway: AdyenGateway, double: AdyenDouble) -> None:
    with pytest.raises(InvalidRequest):
        gateway.refund(reference="DBL0000000000999", amount=1, currency="EUR", idempotency_key="a")
    with pytest.raises(InvalidRequest):
        gateway.refund(reference="../payments", amount=1, currency="EUR", idempotency_key="b")

    paid = gateway.charge(charge_request())
    assert paid.reference
    double.inject("hang", path=f"/v71/payments/{paid.reference}/refunds")
    slow = make_gateway(double, timeout=0.5)
    result = slow.refund(reference=paid.reference, amount=1, currency="EUR", idempotency_key="c")
    assert (result.status, result.failure_code, result.retryable) == (
        "failed",
        "gateway_timeout",
        True,
    )


# --- webhooks -----------------------------------------------------------------------------


def test_webhooks_are_verified_and_translated(gateway: AdyenGateway, double: AdyenDouble) -> None:
    authorised = double.notification(
        event_code="AUTHORISATION",
        psp_reference="DBL0000000000001",
        merchant_reference="pay_1",
        value=2500,
        currency="EUR",
        success=True,
        hmac_key_hex=HMAC_KEY,
    )
    refused = double.notification(
        event_code="AUTHORISATION",
        psp_reference="DBL0000000000002",
        merchant_reference="pay_2",
        value=2500,
        currency="EUR",
        success=False,
        reason="Not enough balance",
        hmac_key_hex=HMAC_KEY,
    )
    refunded = double.notification(
        event_code="REFUND",
        psp_reference="DBR0000000000003",
        original_reference="DBL0000000000001",
        merchant_reference="rf_1",
        value=1000,
        currency="EUR",
        success=True,
        hmac_key_hex=HMAC_KEY,
    )

    [ok] = gateway.parse_webhook(authorised, {})
    [declined] = gateway.parse_webhook(refused, {})
    [refund] = gateway.parse_webhook(refunded, {})

    assert (ok.type, ok.reference, ok.merchant_reference, ok.amount) == (
        "payment_succeeded",
        "DBL0000000000001",
        "pay_1",
        2500,
    )
    assert ok.id == "AUTHORISATION:DBL0000000000001:true"
    assert (declined.type, declined.reason) == ("payment_failed", "insufficient_funds")
    assert (refund.type, refund.reference) == ("refund_succeeded", "DBL0000000000001")


def test_webhook_with_a_bad_signature_is_refused(
    gateway: AdyenGateway, double: AdyenDouble
) -> None:
    payload = double.notification(
        event_code="AUTHORISATION",
        psp_reference="DBL0000000000001",
        merchant_reference="pay_1",
        value=2500,
        currency="EUR",
        success=True,
        hmac_key_hex=HMAC_KEY,
    )
    body = json.loads(payload)
    body["notificationItems"][0]["NotificationRequestItem"]["amount"]["value"] = 1
    with pytest.raises(InvalidRequest) as info:
        gateway.parse_webhook(json.dumps(body).encode(), {})
    assert info.value.code == "invalid_signature"

    other_key = "00" * 32
    forged = double.notification(
        event_code="AUTHORISATION",
        psp_reference="DBL0000000000001",
        merchant_reference="pay_1",
        value=2500,
        currency="EUR",
        success=True,
        hmac_key_hex=other_key,
    )
    with pytest.raises(InvalidRequest):
        gateway.parse_webhook(forged, {})

    with pytest.raises(InvalidRequest) as info:
        gateway.parse_webhook(b"not json", {})
    assert info.value.code == "invalid_payload"


@pytest.mark.parametrize("additional", [[], "hmacSignature", 7, None])
def test_webhook_with_a_malformed_additional_data_is_a_400(
    gateway: AdyenGateway, double: AdyenDouble, additional: Any
) -> None:
    """A non-object additionalData is refused as unsigned, not an AttributeError (500)."""
    payload = double.notification(
        event_code="AUTHORISATION",
        psp_reference="DBL0000000000001",
        merchant_reference="pay_1",
        value=2500,
        currency="EUR",
        success=True,
        hmac_key_hex=HMAC_KEY,
    )
    body = json.loads(payload)
    body["notificationItems"][0]["NotificationRequestItem"]["additionalData"] = additional
    with pytest.raises(InvalidRequest) as info:
        gateway.parse_webhook(json.dumps(body).encode(), {})
    assert info.value.code == "invalid_signature"


def test_with_timeout_lowers_only_the_timeout(gateway: AdyenGateway) -> None:
    from checkoutlab.payments.gateways.base import Gateway

    assert type(gateway).with_timeout is Gateway.with_timeout  # one implementation
    assert gateway.with_timeout(60) is gateway  # never longer than configured
    short = gateway.with_timeout(0.3)
    assert isinstance(short, AdyenGateway) and short.settings.timeout == 0.3
    assert short.settings.merchant_account == gateway.settings.merchant_account
