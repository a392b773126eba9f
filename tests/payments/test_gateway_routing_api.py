"""Confirm over HTTP through the merchant's gateway route: Stripe (the real SDK against the
local Stripe test double) and the sandbox, with tokens, failover, reconciliation, the time
budget, circuit breakers and ``/v1/gateways/health`` (issue 7)."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from checkoutlab.api.app import create_app
from checkoutlab.payments.models import Payment, PaymentAttempt

from .doubles import StripeDouble
from .doubles.stripe_double import decode_form
from .test_sessions_api import assert_error

STRIPE_AND_SANDBOX = {"gateways": ["stripe", "sandbox"]}
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


@pytest.fixture
def double() -> Iterator[StripeDouble]:
    with StripeDouble(hang_seconds=8) as server:
        yield server


@pytest.fixture
def stripe_settings(settings: Any, double: StripeDouble) -> Any:
    return settings.model_copy(
        update={
            "stripe_api_key": SecretStr(double.api_key),
            "stripe_api_base": double.url,
            "gateway_timeout_seconds": 1.5,
            "confirm_budget_seconds": 6.0,
            "breaker_failure_threshold": 3,
        }
    )


@pytest.fixture
def api(stripe_settings: Any, database: Any) -> Iterator[TestClient]:
    with TestClient(create_app(stripe_settings, database=database)) as client:
        yield client


def _closed_port() -> int:
    """A local port nothing listens on: a connection there is refused, so never sent."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def down_api(stripe_settings: Any, database: Any) -> Iterator[TestClient]:
    """The app with Stripe unreachable (connection refused): requests provably never sent."""
    down = stripe_settings.model_copy(
        update={"stripe_api_base": f"http://127.0.0.1:{_closed_port()}"}
    )
    with TestClient(create_app(down, database=database)) as client:
        yield client


@pytest.fixture
def down_shop(down_api: TestClient, make_merchant: Callable[..., Any]) -> Callable[..., Shop]:
    def _shop(config: dict[str, Any] | None = None) -> Shop:
        return Shop(down_api, make_merchant("Routed", config=config))

    return _shop


@pytest.fixture
def sandbox_charges(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Idempotency keys the sandbox gateway was asked to charge."""
    gateway = api.app.state.gateway  # type: ignore[attr-defined]
    seen: list[str] = []
    real = gateway.charge

    def counting(request: Any) -> Any:
        seen.append(request.idempotency_key)
        return real(request)

    monkeypatch.setattr(gateway, "charge", counting)
    return seen


class Shop:
    def __init__(self, client: TestClient, keys: Any) -> None:
        self.client, self.keys = client, keys

    def session(self, **fields: Any) -> dict[str, Any]:
        body = {"amount": 2599, "currency": "EUR"} | fields
        response = self.client.post(
            "/v1/checkout_sessions", json=body, headers=self.keys.secret_headers
        )
        assert response.status_code == 201, response.text
        created = response.json()
        profile = self.client.post(
            "/v1/payment_profile",
            json={"client_secret": created["client_secret"], "context": {}},
            headers=self.keys.public_headers,
        )
        assert profile.status_code == 200, profile.text
        return created | {"token": profile.json()["token"]}

    def confirm(
        self, session: dict[str, Any], payment_method: dict[str, Any], key: str | None = None
    ) -> Any:
        return self.client.post(
            f"/v1/checkout_sessions/{session['id']}/confirm",
            json={
                "client_secret": session["client_secret"],
                "profile_token": session["token"],
                "payment_method": payment_method,
            },
            headers=self.keys.public_headers | {"Idempotency-Key": key or uuid.uuid4().hex},
        )

    def pay_token(self, token: str = "pm_card_visa", **fields: Any) -> Any:
        return self.confirm(self.session(**fields), {"type": "card", "token": token})


@pytest.fixture
def shop(api: TestClient, make_merchant: Callable[..., Any]) -> Callable[..., Shop]:
    def _shop(config: dict[str, Any] | None = None) -> Shop:
        return Shop(api, make_merchant("Routed", config=config))

    return _shop


def attempts_of(database: Any, payment_id: str) -> list[tuple[Any, ...]]:
    with database.session() as db:
        rows = db.scalars(
            select(PaymentAttempt)
            .where(PaymentAttempt.payment_id == payment_id)
            .order_by(PaymentAttempt.attempt_number)
        )
        return [(a.gateway, a.operation, a.result, a.decline_code, a.reconciled) for a in rows]


def payment_row(database: Any, payment_id: str) -> Payment:
    with database.session() as db:
        payment = db.get(Payment, payment_id)
        assert payment is not None
        return payment


# --- tokens ---------------------------------------------------------------------------------


def test_token_is_charged_through_stripe(shop, double, database) -> None:
    paid = shop({"gateways": ["stripe"]}).pay_token()
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert body["status"] == "succeeded" and body["gateway"] == "stripe"
    assert body["card"] is None  # the platform never saw the card
    [sent] = double.requests_to("POST", "/v1/payment_intents")
    params = decode_form(sent.body)
    assert params["payment_method"] == "pm_card_visa" and params["amount"] == "2599"
    assert sent.header(
        "Idempotency-Key",
    ).startswith("cl_")
    assert attempts_of(database, body["id"]) == [("stripe", "charge", "succeeded", None, False)]
    row = payment_row(database, body["id"])
    assert row.gateway_reference and row.gateway_reference.startswith("pi_")
    assert row.payment_method_ref == "pm_card_visa"


def test_raw_card_for_a_stripe_only_merchant_is_a_clear_400(shop, double, database) -> None:
    merchant = shop({"gateways": ["stripe"]})
    session = merchant.session()
    response = merchant.confirm(session, {"type": "card", "card": CARD})
    error = assert_error(response, 400, code="card_details_not_accepted")
    assert error["param"] == "payment_method.card"
    assert "payment_method.token" in error["message"] and "Stripe.js" in error["message"]
    assert double.requests == []
    with database.session() as db:
        assert list(db.scalars(select(Payment).where(Payment.session_id == session["id"]))) == []


@pytest.mark.parametrize(
    ("payment_method", "param"),
    [
        ({"type": "card", "token": "pm_card_visa", "card": CARD}, "payment_method"),
        ({"type": "card", "token": "tok_visa"}, "payment_method.token"),
        ({"type": "card", "token": "pm_"}, "payment_method.token"),
        ({"type": "card", "token": "pm_x'; DROP TABLE payments;--"}, "payment_method.token"),
        ({"type": "card", "token": "pm_" + "a" * 251}, "payment_method.token"),
        ({"type": "card"}, "payment_method.card"),
    ],
    ids=["both", "not-pm", "empty", "injection", "too-long", "neither"],
)
def test_token_format_and_exclusivity(shop, double, payment_method, param) -> None:
    merchant = shop(STRIPE_AND_SANDBOX)
    response = merchant.confirm(merchant.session(), payment_method)
    error = assert_error(response, 400, param=param)
    assert "card" in error["message"] or "token" in error["message"] or "match" in error["message"]
    assert double.requests == []


def test_sandbox_takes_stripe_test_tokens_but_not_real_ones(shop, double) -> None:
    merchant = shop()  # the platform default: sandbox
    paid = merchant.pay_token("pm_card_visa")
    assert paid.status_code == 200 and paid.json()["gateway"] == "sandbox", paid.text
    refused = merchant.pay_token("pm_1QabcDEFghiJKL")
    error = assert_error(refused, 400, code="payment_method_token_not_accepted")
    assert error["param"] == "payment_method.token"
    assert double.requests == []


# --- routing and failover -------------------------------------------------------------------


def test_cel_rule_routes_by_currency(shop, double) -> None:
    merchant = shop(
        {
            "gateways": ["sandbox"],
            "gateway_rules": [{"when": "amount.currency == 'USD'", "gateways": ["stripe"]}],
        }
    )
    usd = merchant.pay_token(currency="USD")
    eur = merchant.pay_token(currency="EUR")
    assert (usd.json()["gateway"], eur.json()["gateway"]) == ("stripe", "sandbox")
    assert len(double.requests_to("POST", "/v1/payment_intents")) == 1


def test_stripe_unreachable_fails_over_to_the_sandbox(down_shop, database) -> None:
    # connection refused: the request provably never reached Stripe, so no reconciling
    paid = down_shop(STRIPE_AND_SANDBOX).pay_token()
    assert paid.status_code == 200, paid.text
    assert paid.json()["gateway"] == "sandbox" and paid.json()["status"] == "succeeded"
    assert attempts_of(database, paid.json()["id"]) == [
        ("stripe", "charge", "failed", "gateway_unavailable", False),
        ("sandbox", "charge", "succeeded", None, False),
    ]


@pytest.mark.parametrize("status", [502, 503])
def test_a_stripe_5xx_is_reconciled_before_any_failover(
    shop, double, database, sandbox_charges, status
) -> None:
    # Stripe documents that any 5xx may have been processed: ask again under the same key
    double.inject(status)
    paid = shop(STRIPE_AND_SANDBOX).pay_token()
    assert paid.status_code == 200, paid.text
    assert paid.json()["gateway"] == "stripe" and paid.json()["status"] == "succeeded"
    assert sandbox_charges == [], "failed over while Stripe may have charged"
    assert double.charges_created == 1
    assert attempts_of(database, paid.json()["id"]) == [
        ("stripe", "charge", "unknown", "gateway_unavailable", False),
        ("stripe", "retrieve", "succeeded", None, True),
    ]


def test_hard_decline_does_not_fail_over(shop, double, database, sandbox_charges) -> None:
    declined = shop(STRIPE_AND_SANDBOX).pay_token("pm_card_chargeDeclinedStolenCard")
    error = assert_error(declined, 402, type_="card_error")
    assert error["decline_code"] == "stolen_card" and error["retryable"] is False
    assert sandbox_charges == []
    assert attempts_of(database, error["payment"]["id"]) == [
        ("stripe", "charge", "failed", "stolen_card", False)
    ]


def test_hanging_gateway_that_charged_is_reconciled_not_charged_twice(
    shop, double, database, sandbox_charges
) -> None:
    double.inject("hang", path="/v1/payment_intents")  # charges, then the answer is lost
    started = time.monotonic()
    paid = shop(STRIPE_AND_SANDBOX).pay_token()
    assert time.monotonic() - started < 6
    assert paid.status_code == 200, paid.text
    assert paid.json()["gateway"] == "stripe" and paid.json()["status"] == "succeeded"
    assert double.charges_created == 1
    assert sandbox_charges == [], "failover charged a second gateway"
    assert attempts_of(database, paid.json()["id"]) == [
        ("stripe", "charge", "unknown", "gateway_timeout", False),
        ("stripe", "retrieve", "succeeded", None, True),
    ]


def test_all_gateways_unavailable_is_503_not_a_decline(down_shop, database) -> None:
    merchant = down_shop({"gateways": ["stripe"]})
    session = merchant.session()
    response = merchant.confirm(session, {"type": "card", "token": "pm_card_visa"}, key="k1")
    error = assert_error(response, 503, code="gateway_unavailable", type_="api_error")
    assert error["retryable"] is True and "nothing was charged" in error["message"]
    assert response.headers["Retry-After"]
    assert error["payment"]["status"] == "failed"
    # nothing was charged, so the shopper may simply try again, with the same key too: the
    # 503 is not stored as the key's answer
    again = merchant.confirm(session, {"type": "card", "token": "pm_card_visa"}, key="k1")
    assert_error(again, 503, code="gateway_unavailable")
    assert "Idempotent-Replayed" not in again.headers
    assert again.json()["error"]["payment"]["id"] != error["payment"]["id"]


def test_stripe_5xx_twice_is_unknown_not_a_failover(shop, double, database, sandbox_charges):
    merchant = shop(STRIPE_AND_SANDBOX)
    double.inject(503, times=2)  # the charge and its reconciliation both answer 503
    response = merchant.pay_token()
    error = assert_error(response, 503, code="gateway_timeout")
    assert error["payment"]["status"] == "processing"
    assert sandbox_charges == []


def test_confirm_answers_within_the_budget_when_every_gateway_hangs(
    shop, double, database, sandbox_charges
) -> None:
    merchant = shop(STRIPE_AND_SANDBOX)
    session = merchant.session()
    double.inject("hang", times=20)
    started = time.monotonic()
    response = merchant.confirm(session, {"type": "card", "token": "pm_card_visa"})
    elapsed = time.monotonic() - started
    assert elapsed < 6.5, elapsed  # confirm_budget_seconds=6 plus HTTP overhead
    error = assert_error(response, 503, code="gateway_timeout")
    assert "Do not pay again" in error["message"]
    assert error["payment"]["status"] == "processing"
    assert sandbox_charges == []  # stripe may have charged: no second gateway
    # the session refuses another payment until the outcome is known
    retry = merchant.confirm(session, {"type": "card", "token": "pm_card_visa"})
    assert_error(retry, 400, code="payment_in_progress")
    row = payment_row(database, error["payment"]["id"])
    assert row.verification["outcome_unknown"] is True


# --- circuit breaker and health -------------------------------------------------------------


def test_breaker_opens_skips_stripe_and_shows_in_health(down_shop, database) -> None:
    merchant = down_shop(STRIPE_AND_SANDBOX)
    for _ in range(3):
        assert merchant.pay_token().json()["gateway"] == "sandbox"
    health = merchant.client.get("/v1/gateways/health", headers=merchant.keys.secret_headers)
    assert health.status_code == 200, health.text
    states = {row["gateway"]: row for row in health.json()["data"]}
    assert states["stripe"]["state"] == "open"
    assert states["stripe"]["consecutive_failures"] == 3
    assert 0 < states["stripe"]["retry_in_seconds"] <= 30
    assert states["sandbox"]["state"] == "closed" and states["sandbox"]["default"] is True
    assert health.json()["route"] == ["stripe", "sandbox"]

    paid = merchant.pay_token()
    assert paid.json()["gateway"] == "sandbox"
    assert attempts_of(database, paid.json()["id"])[0] == (
        "stripe",
        "charge",
        "skipped",
        "circuit_open",
        False,
    )


def test_health_needs_the_secret_key(shop) -> None:
    merchant = shop()
    response = merchant.client.get("/v1/gateways/health", headers=merchant.keys.public_headers)
    assert_error(response, 403)
    assert_error(merchant.client.get("/v1/gateways/health"), 401)


def test_unknown_outcome_is_settled_by_the_next_confirm(shop, double, database) -> None:
    merchant = shop({"gateways": ["stripe"]})
    session = merchant.session()
    double.inject("hang", times=2)  # the charge goes through; both answers are lost
    first = merchant.confirm(session, {"type": "card", "token": "pm_card_visa"})
    error = assert_error(first, 503, code="gateway_timeout")
    payment_id = error["payment"]["id"]
    assert double.charges_created == 1

    # the provider answers again: the next confirm reconciles instead of charging
    second = merchant.confirm(session, {"type": "card", "token": "pm_card_visa"})
    assert_error(second, 400, code="session_already_succeeded")
    row = payment_row(database, payment_id)
    assert row.status == "succeeded" and row.verification.get("reconciled") is True
    assert "outcome_unknown" not in row.verification
    assert double.charges_created == 1
    assert attempts_of(database, payment_id) == [
        ("stripe", "charge", "unknown", "gateway_timeout", False),
        ("stripe", "retrieve", "unknown", "gateway_timeout", False),
        ("stripe", "retrieve", "succeeded", None, True),
    ]
    shown = merchant.client.get(
        f"/v1/checkout_sessions/{session['id']}", headers=merchant.keys.secret_headers
    ).json()
    assert shown["status"] == "succeeded"


def test_cvv_step_with_a_token_is_the_gateways_card_field(shop, double) -> None:
    merchant = shop(
        {"gateways": ["stripe"], "rules": [{"when": "true", "then": {"require": ["cvv"]}}]}
    )
    session = merchant.session()
    with_cvc = merchant.client.post(
        f"/v1/checkout_sessions/{session['id']}/confirm",
        json={
            "client_secret": session["client_secret"],
            "profile_token": session["token"],
            "payment_method": {"type": "card", "token": "pm_card_visa"},
            "verification": {"cvv": "123"},
        },
        headers=merchant.keys.public_headers | {"Idempotency-Key": "cvc"},
    )
    assert_error(with_cvc, 400, param="verification.cvv")  # never to the platform
    assert double.requests == []
    paid = merchant.confirm(session, {"type": "card", "token": "pm_card_visa"})
    assert paid.status_code == 200, paid.text
