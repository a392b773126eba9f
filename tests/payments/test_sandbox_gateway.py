from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from checkoutlab.errors import CardError, InvalidRequest, NotFound
from checkoutlab.payments.cards import CardInput, detect_brand
from checkoutlab.payments.gateways import Gateway, get_gateway
from checkoutlab.payments.gateways.base import ChargeRequest, GatewayResult, TokenizedCard
from checkoutlab.payments.gateways.sandbox import SANDBOX_TEST_CARDS, SandboxGateway

TODAY = date(2025, 6, 15)


@pytest.fixture
def gateway() -> SandboxGateway:
    return SandboxGateway(today=TODAY)


def card(number: str, *, cvc: str | None = None) -> CardInput:
    cvc = cvc or ("1234" if detect_brand(number) == "amex" else "123")
    return CardInput(number=number, exp_month=12, exp_year=2030, cvc=cvc)


def request(
    payment_method: str, *, key: str = "pay_test_1", three_ds: bool = False
) -> ChargeRequest:
    return ChargeRequest(
        amount=2500,
        currency="eur",
        payment_method=payment_method,
        idempotency_key=key,
        three_ds_required=three_ds,
        metadata={"session_id": "cs_1"},
    )


def pay(gateway: SandboxGateway, number: str, **kwargs: object) -> GatewayResult:
    token = gateway.tokenize_card(card(number))
    return gateway.charge(request(token.payment_method, **kwargs))  # type: ignore[arg-type]


# --- Registry ---------------------------------------------------------------------------


def test_registry_returns_the_sandbox() -> None:
    sandbox = get_gateway("sandbox")
    assert isinstance(sandbox, SandboxGateway)
    assert isinstance(sandbox, Gateway)
    assert sandbox.name == "sandbox"


def test_registry_refuses_unknown_names_with_the_choices() -> None:
    with pytest.raises(InvalidRequest) as info:
        get_gateway("paypal-classic")
    assert info.value.status_code == 400
    assert info.value.param == "gateway"
    assert "sandbox" in info.value.message


# --- Tokenization -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "payment_method"),
    [
        ("4242424242424242", "pm_card_visa"),
        ("4000000000000002", "pm_card_chargeDeclined"),
        ("4000000000009995", "pm_card_chargeDeclinedInsufficientFunds"),
        ("4000000000003220", "pm_card_threeDSecure2Required"),
        ("4000000000000119", "pm_card_chargeDeclinedProcessingError"),
    ],
)
def test_test_cards_tokenize_to_stripes_payment_method_ids(
    gateway: SandboxGateway, number: str, payment_method: str
) -> None:
    token = gateway.tokenize_card(card(number))
    assert token == TokenizedCard(
        payment_method=payment_method,
        brand="visa",
        last4=number[-4:],
        exp_month=12,
        exp_year=2030,
    )


@pytest.mark.parametrize(
    ("number", "payment_method", "brand"),
    [
        ("4111111111111111", "pm_card_visa", "visa"),
        ("5555555555554444", "pm_card_mastercard", "mastercard"),
        ("2223003122003222", "pm_card_mastercard", "mastercard"),
        ("5425233430109903", "pm_card_mastercard", "mastercard"),
        ("378282246310005", "pm_card_amex", "amex"),
        ("6011000990139424", "pm_card_discover", "discover"),
        ("3566002020360505", "pm_card_jcb", "jcb"),
        ("36227206271667", "pm_card_diners", "diners"),
        ("6200000000000005", "pm_card_unionpay", "unionpay"),
    ],
)
def test_other_valid_numbers_get_the_succeeding_token_of_their_brand(
    gateway: SandboxGateway, number: str, payment_method: str, brand: str
) -> None:
    token = gateway.tokenize_card(card(number))
    assert (token.payment_method, token.brand, token.last4) == (payment_method, brand, number[-4:])
    assert gateway.charge(request(token.payment_method)).status == "succeeded"


def test_token_carries_no_full_number(gateway: SandboxGateway) -> None:
    number = "4242424242424242"
    token = gateway.tokenize_card(card("4242 4242 4242 4242"))
    assert number not in repr(token)
    assert number not in token.model_dump_json()


def test_tokenize_validates_the_card(gateway: SandboxGateway) -> None:
    with pytest.raises(CardError) as info:
        gateway.tokenize_card(card("4242424242424241"))
    assert info.value.code == "incorrect_number"
    with pytest.raises(CardError) as info:
        gateway.tokenize_card(card("378282246310005", cvc="123"))
    assert info.value.code == "invalid_cvc"


def test_tokenize_checks_expiry_against_the_injected_date() -> None:
    expiring = CardInput(number="4242424242424242", exp_month=6, exp_year=2025, cvc="123")
    assert SandboxGateway(today=TODAY).tokenize_card(expiring).payment_method == "pm_card_visa"
    with pytest.raises(CardError) as info:
        SandboxGateway(today=date(2025, 7, 1)).tokenize_card(expiring)
    assert info.value.code == "expired_card"


def test_unknown_network_is_not_supported(gateway: SandboxGateway) -> None:
    with pytest.raises(CardError) as info:
        gateway.tokenize_card(card("9999999999999995"))
    assert info.value.code == "card_not_supported"
    assert "9999999999999995" not in info.value.message


def test_every_documented_test_card_tokenizes_to_its_listed_id(gateway: SandboxGateway) -> None:
    for number, (payment_method, description) in SANDBOX_TEST_CARDS.items():
        assert gateway.tokenize_card(card(number)).payment_method == payment_method
        assert description


# --- Charges: each test card's outcome --------------------------------------------------


def test_visa_succeeds(gateway: SandboxGateway) -> None:
    result = pay(gateway, "4242424242424242")
    assert result.status == "succeeded"
    assert result.reference is not None
    assert result.reference.startswith("pi_sandbox_")
    assert (result.decline_code, result.next_action, result.retryable) == (None, None, False)


@pytest.mark.parametrize(
    ("number", "decline_code", "message_part"),
    [
        ("4000000000000002", "card_declined", "declined"),
        ("4000000000009995", "insufficient_funds", "insufficient funds"),
        ("4000000000000069", "expired_card", "expired"),
        ("4000000000000127", "incorrect_cvc", "security code"),
        ("4000000000009987", "lost_card", "declined"),
    ],
)
def test_declining_cards_fail_and_are_not_retryable(
    gateway: SandboxGateway, number: str, decline_code: str, message_part: str
) -> None:
    result = pay(gateway, number)
    assert result.status == "failed"
    assert result.decline_code == decline_code
    assert result.retryable is False
    assert result.message is not None
    assert message_part in result.message
    assert result.reference is not None


def test_lost_card_is_not_revealed_to_the_shopper(gateway: SandboxGateway) -> None:
    assert "lost" not in (pay(gateway, "4000000000009987").message or "").lower()


def test_processing_error_is_retryable(gateway: SandboxGateway) -> None:
    result = pay(gateway, "4000000000000119")
    assert result.status == "failed"
    assert result.decline_code == "processing_error"
    assert result.retryable is True


def test_declines_come_before_any_challenge(gateway: SandboxGateway) -> None:
    result = pay(gateway, "4000000000000002", three_ds=True)
    assert (result.status, result.decline_code) == ("failed", "card_declined")


# --- 3-D Secure -------------------------------------------------------------------------


def test_three_ds_card_asks_for_a_challenge(gateway: SandboxGateway) -> None:
    result = pay(gateway, "4000000000003220")
    assert result.status == "requires_action"
    assert result.next_action is not None
    assert result.next_action["type"] == "three_ds_challenge"
    assert result.next_action["challenge_id"].startswith("tds_sandbox_")
    assert result.decline_code is None


@pytest.mark.parametrize("three_ds", [False, True])
def test_completed_challenge_succeeds(gateway: SandboxGateway, three_ds: bool) -> None:
    charge = request("pm_card_threeDSecure2Required", three_ds=three_ds)
    first = gateway.charge(charge)
    assert first.reference is not None
    done = gateway.complete_action(reference=first.reference, request=charge, outcome="succeeded")
    assert done.status == "succeeded"
    assert done.reference == first.reference
    assert done.next_action is None


def test_failed_challenge_is_authentication_failed(gateway: SandboxGateway) -> None:
    charge = request("pm_card_threeDSecure2Required")
    first = gateway.charge(charge)
    assert first.reference is not None
    done = gateway.complete_action(reference=first.reference, request=charge, outcome="failed")
    assert done.status == "failed"
    assert done.decline_code == "authentication_failed"
    assert done.retryable is False
    assert done.message is not None


def test_profile_demanding_3ds_challenges_a_succeeding_card(gateway: SandboxGateway) -> None:
    charge = request("pm_card_visa", three_ds=True)
    first = gateway.charge(charge)
    assert first.status == "requires_action"
    assert first.reference is not None
    done = gateway.complete_action(reference=first.reference, request=charge, outcome="succeeded")
    assert done.status == "succeeded"


def test_completing_a_charge_without_pending_action_is_refused(gateway: SandboxGateway) -> None:
    charge = request("pm_card_visa")
    result = gateway.charge(charge)
    assert result.status == "succeeded"
    assert result.reference is not None
    with pytest.raises(InvalidRequest) as info:
        gateway.complete_action(reference=result.reference, request=charge, outcome="succeeded")
    assert info.value.code == "payment_intent_unexpected_state"


def test_completing_with_a_foreign_reference_is_not_found(gateway: SandboxGateway) -> None:
    charge = request("pm_card_threeDSecure2Required", key="pay_a")
    other = gateway.charge(request("pm_card_threeDSecure2Required", key="pay_b"))
    assert other.reference is not None
    with pytest.raises(NotFound) as info:
        gateway.complete_action(reference=other.reference, request=charge, outcome="succeeded")
    assert info.value.param == "reference"


def test_unknown_outcome_is_refused(gateway: SandboxGateway) -> None:
    charge = request("pm_card_threeDSecure2Required")
    reference = gateway.charge(charge).reference
    assert reference is not None
    with pytest.raises(InvalidRequest) as info:
        gateway.complete_action(reference=reference, request=charge, outcome="maybe")  # type: ignore[arg-type]
    assert info.value.param == "outcome"


# --- Idempotent references --------------------------------------------------------------


def test_same_idempotency_key_gives_same_reference(gateway: SandboxGateway) -> None:
    first = gateway.charge(request("pm_card_visa", key="pay_retry"))
    again = SandboxGateway().charge(request("pm_card_visa", key="pay_retry"))
    assert first == again
    assert first.reference == again.reference


def test_different_keys_give_different_references(gateway: SandboxGateway) -> None:
    references = {
        gateway.charge(request("pm_card_visa", key=f"pay_{i}")).reference for i in range(50)
    }
    assert len(references) == 50


def test_challenge_is_stable_across_retries(gateway: SandboxGateway) -> None:
    charge = request("pm_card_threeDSecure2Required", key="pay_3ds")
    assert gateway.charge(charge).next_action == gateway.charge(charge).next_action


def test_reference_fits_the_payments_column(gateway: SandboxGateway) -> None:
    reference = gateway.charge(request("pm_card_visa", key="k" * 255)).reference
    assert reference is not None
    assert len(reference) <= 100


# --- Non-card methods and unknown payment methods ---------------------------------------


@pytest.mark.parametrize(
    ("payment_method", "status"),
    [
        ("pm_sandbox_sepa_debit", "succeeded"),
        ("pm_sandbox_ideal", "succeeded"),
        ("pm_sandbox_klarna", "succeeded"),
        ("pm_sandbox_apple_pay", "succeeded"),
        ("pm_sandbox_google_pay", "succeeded"),
        ("pm_sandbox_bank_transfer", "processing"),
    ],
)
@pytest.mark.parametrize("three_ds", [False, True])
def test_non_card_methods(
    gateway: SandboxGateway, payment_method: str, status: str, three_ds: bool
) -> None:
    result = gateway.charge(request(payment_method, three_ds=three_ds))
    assert result.status == status
    assert result.reference is not None
    assert result.reference.startswith("pi_sandbox_")
    assert result.decline_code is None


@pytest.mark.parametrize(
    "payment_method", ["pm_card_nope", "pm_sandbox_card", "pm_sandbox_cash", "tok_visa", "x"]
)
def test_unknown_payment_method_fails_without_raising(
    gateway: SandboxGateway, payment_method: str
) -> None:
    result = gateway.charge(request(payment_method))
    assert result.status == "failed"
    assert result.decline_code == "invalid_payment_method"
    assert result.retryable is False
    assert result.message is not None


# --- Data contracts ---------------------------------------------------------------------


def test_charge_request_normalizes_currency_and_refuses_bad_amounts() -> None:
    assert request("pm_card_visa").currency == "EUR"
    with pytest.raises(ValidationError):
        ChargeRequest(amount=-1, currency="EUR", payment_method="pm_card_visa", idempotency_key="k")
    with pytest.raises(ValidationError):
        ChargeRequest(amount=1, currency="EURO", payment_method="pm_card_visa", idempotency_key="k")


def test_requires_action_and_next_action_go_together() -> None:
    with pytest.raises(ValidationError):
        GatewayResult(status="requires_action", reference="pi_1")
    with pytest.raises(ValidationError):
        GatewayResult(status="succeeded", next_action={"type": "three_ds_challenge"})


def test_gateway_interface_is_abstract() -> None:
    with pytest.raises(TypeError):
        Gateway()  # type: ignore[abstract]
