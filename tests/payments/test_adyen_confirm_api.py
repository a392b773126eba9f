"""Confirm over HTTP through Adyen: Adyen Web's encrypted card fields as the payment method,
3-D Secure 2 finished through /payments/details, against the local Adyen test double."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from checkoutlab.api.app import create_app
from checkoutlab.payments.models import Payment

from .doubles import AdyenDouble
from .doubles.adyen_double import THREE_DS2_CARD
from .test_sessions_api import assert_error


@pytest.fixture
def double() -> Iterator[AdyenDouble]:
    with AdyenDouble(hang_seconds=3) as server:
        yield server


@pytest.fixture
def api(settings: Any, database: Any, double: AdyenDouble) -> Iterator[TestClient]:
    adyen = settings.model_copy(
        update={
            "adyen_api_key": SecretStr(double.api_key),
            "adyen_merchant_account": double.merchant_account,
            "adyen_return_url": "https://shop.example/return",
            "adyen_api_base": double.url,
            "gateway_timeout_seconds": 2.0,
            "confirm_budget_seconds": 8.0,
        }
    )
    with TestClient(create_app(adyen, database=database)) as client:
        yield client


def encrypted(number: str = "4111111111111111", holder: str | None = None) -> dict[str, str]:
    """Adyen Web's card fields; the double takes Adyen's documented test_ (clear) values."""
    fields = {
        "encryptedCardNumber": f"test_{number}",
        "encryptedExpiryMonth": "test_03",
        "encryptedExpiryYear": "test_2030",
        "encryptedSecurityCode": "test_737",
    }
    return fields | ({"holderName": holder} if holder else {})


class Shop:
    def __init__(self, client: TestClient, keys: Any) -> None:
        self.client, self.keys = client, keys

    def session(self) -> dict[str, Any]:
        created = self.client.post(
            "/v1/checkout_sessions",
            json={"amount": 2599, "currency": "EUR"},
            headers=self.keys.secret_headers,
        ).json()
        profile = self.client.post(
            "/v1/payment_profile",
            json={"client_secret": created["client_secret"], "context": {}},
            headers=self.keys.public_headers,
        )
        return created | {"token": profile.json()["token"]}

    def confirm(self, session: dict[str, Any], method: dict[str, Any]) -> Any:
        return self.client.post(
            f"/v1/checkout_sessions/{session['id']}/confirm",
            json={
                "client_secret": session["client_secret"],
                "profile_token": session["token"],
                "payment_method": method,
            },
            headers=self.keys.public_headers | {"Idempotency-Key": uuid.uuid4().hex},
        )

    def challenge(self, session: dict[str, Any], payment_id: str, **body: Any) -> Any:
        return self.client.post(
            f"/v1/checkout_sessions/{session['id']}/payments/{payment_id}/challenge",
            json={"client_secret": session["client_secret"]} | body,
            headers=self.keys.public_headers,
        )


@pytest.fixture
def shop(api: TestClient, make_merchant: Callable[..., Any]) -> Callable[..., Shop]:
    def _shop(gateways: list[str]) -> Shop:
        return Shop(api, make_merchant("Adyen shop", config={"gateways": gateways}))

    return _shop


def test_encrypted_card_fields_are_charged_through_adyen(shop, double, database, caplog) -> None:
    merchant = shop(["adyen"])
    session = merchant.session()
    paid = merchant.confirm(session, {"type": "card", "adyen": encrypted()})
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded" and paid.json()["gateway"] == "adyen"
    [sent] = double.requests_to("POST", "/v71/payments")
    method = sent.json()["paymentMethod"]
    assert method["type"] == "scheme" and method["encryptedCardNumber"].startswith("test_41")
    with database.session() as db:
        row = db.scalar(select(Payment).where(Payment.session_id == session["id"]))
        assert row is not None and row.payment_method_ref == "adyen_encrypted_card"
        assert row.gateway_reference and row.gateway_reference.startswith("DBL")
    assert "test_4111" not in caplog.text and "test_737" not in caplog.text  # never logged


def test_a_refusal_is_a_402_with_the_mapped_decline(shop) -> None:
    merchant = shop(["adyen"])
    refused = merchant.confirm(
        merchant.session(), {"type": "card", "adyen": encrypted(holder="NOT_ENOUGH_BALANCE")}
    )
    error = assert_error(refused, 402, type_="card_error")
    assert error["decline_code"] == "insufficient_funds"


def test_3ds2_is_finished_through_payments_details(shop, double) -> None:
    merchant = shop(["adyen"])
    session = merchant.session()
    first = merchant.confirm(session, {"type": "card", "adyen": encrypted(THREE_DS2_CARD)})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "requires_action"
    fingerprint = double.shopper_result(body["next_action"]["adyen_action"])  # Adyen Web

    second = merchant.challenge(session, body["id"], details={"details": fingerprint})
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "requires_action"  # now the challenge itself
    challenge = double.shopper_result(second.json()["next_action"]["adyen_action"])

    done = merchant.challenge(session, body["id"], details={"details": challenge})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded"
    assert len(double.requests_to("POST", "/v71/payments/details")) == 2


def test_encrypted_fields_need_adyen_in_the_route(shop) -> None:
    merchant = shop(["sandbox"])
    refused = merchant.confirm(merchant.session(), {"type": "card", "adyen": encrypted()})
    error = assert_error(refused, 400, code="payment_method_not_accepted")
    assert error["param"] == "payment_method.adyen"


@pytest.mark.parametrize(
    "method",
    [
        {"type": "card", "adyen": encrypted() | {"encryptedCardNumber": "x" * 5001}},
        {"type": "card", "adyen": encrypted() | {"number": "4111111111111111"}},
        {"type": "card", "adyen": {"encryptedCardNumber": "test_4111111111111111"}},
        {"type": "card", "adyen": encrypted(), "token": "pm_card_visa"},
        {"type": "paypal", "adyen": encrypted()},
    ],
    ids=["oversized", "raw-number", "incomplete", "with-token", "not-card"],
)
def test_malformed_encrypted_fields_are_a_400_that_echoes_nothing(shop, method) -> None:
    merchant = shop(["adyen"])
    response = merchant.confirm(merchant.session(), method)
    assert response.status_code == 400, response.text
    assert "test_4111" not in response.text and "4111111111111111" not in response.text


def test_details_for_a_non_adyen_payment_are_refused(new_checkout) -> None:
    checkout = new_checkout()
    pending = checkout.confirm(checkout.profile()["token"], key="3ds", card="4000000000003220")
    response = checkout.client.post(
        f"/v1/checkout_sessions/{checkout.id}/payments/{pending.json()['id']}/challenge",
        json={
            "client_secret": checkout.session["client_secret"],
            "details": {"details": {"threeDSResult": "abc"}},
        },
        headers=checkout.merchant.public_headers,
    )
    assert_error(response, 400, code="invalid_details")
