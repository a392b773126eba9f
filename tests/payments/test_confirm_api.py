"""Confirm through the sandbox gateway over HTTP: test cards, 3-D Secure, idempotency,
double charges, profile enforcement and loyalty (issue 2, "Confirm through the sandbox
gateway")."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from checkoutlab.payments.models import IdempotencyRecord, Payment

from .test_sessions_api import assert_error

CVV_AVS_RULE = {"when": "amount.value > 0", "then": {"require": ["cvv", "avs"]}}
MOBILE = {"device": {"type": "mobile", "biometric": True, "apple_pay": True}}
ADDRESS = {"line1": "1 Main St", "postal_code": "10115", "country": "DE"}


def card_body(
    checkout: Any,
    token: str,
    *,
    number: str = "4242424242424242",
    exp_month: int = 12,
    exp_year: int = 2034,
    cvc: str = "123",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_secret": checkout.session["client_secret"],
        "profile_token": token,
        "payment_method": {
            "type": "card",
            "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc},
        },
    }
    return body | extra


def post_confirm(checkout: Any, body: dict[str, Any], key: str | None, merchant: Any = None):
    headers = (merchant or checkout.merchant).public_headers
    if key is not None:
        headers = headers | {"Idempotency-Key": key}
    return checkout.client.post(
        f"/v1/checkout_sessions/{checkout.id}/confirm", json=body, headers=headers
    )


def challenge(checkout: Any, payment_id: str, outcome: str, *, merchant: Any = None, **body: Any):
    return checkout.client.post(
        f"/v1/checkout_sessions/{checkout.id}/payments/{payment_id}/challenge",
        json={"client_secret": checkout.session["client_secret"], "outcome": outcome} | body,
        headers=(merchant or checkout.merchant).public_headers,
    )


def shown(checkout: Any) -> dict[str, Any]:
    response = checkout.client.get(
        f"/v1/checkout_sessions/{checkout.id}", headers=checkout.merchant.secret_headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def payment_rows(database: Any, session_id: str) -> list[Payment]:
    with database.session() as db:
        return list(db.scalars(select(Payment).where(Payment.session_id == session_id)))


# --- the sandbox test cards, profile → confirm ----------------------------------------------


def test_4242_succeeds(new_checkout, database):
    checkout = new_checkout()
    profile = checkout.profile()
    response = checkout.confirm(profile["token"], key="visa")
    assert response.status_code == 200, response.text
    paid = response.json()
    assert paid["status"] == "succeeded"
    assert paid["id"].startswith("pay_")
    assert paid["amount"] == 2599 and paid["currency"] == "EUR"
    assert paid["card"] == {"brand": "visa", "last4": "4242"}
    assert paid["gateway"] == "sandbox" and paid["decline_code"] is None
    session = shown(checkout)
    assert session["status"] == "succeeded"
    assert [(p["id"], p["status"]) for p in session["payments"]] == [(paid["id"], "succeeded")]
    (row,) = payment_rows(database, checkout.id)
    assert row.decision_id == profile["id"]  # joined to the decision that served the profile


@pytest.mark.parametrize(
    ("number", "code", "decline_code"),
    [
        ("4000000000000002", "card_declined", "card_declined"),
        ("4000000000009995", "card_declined", "insufficient_funds"),
        ("4000000000000119", "processing_error", "processing_error"),
    ],
    ids=["declined", "insufficient-funds", "processing-error"],
)
def test_declining_cards_are_402(new_checkout, number, code, decline_code):
    checkout = new_checkout()
    token = checkout.profile()["token"]
    response = checkout.confirm(token, key="decline", card=number)
    error = assert_error(response, 402, code=code, type_="card_error")
    assert error["decline_code"] == decline_code
    assert error["payment"]["status"] == "failed"
    assert error["payment"]["card"] == {"brand": "visa", "last4": number[-4:]}
    assert error["payment"]["decline_code"] == decline_code
    session = shown(checkout)
    assert session["status"] == "open"  # a decline leaves the session payable
    assert [p["status"] for p in session["payments"]] == ["failed"]
    assert session["payments"][0]["decline_code"] == decline_code


def test_3ds_card_requires_action_then_challenge_succeeds(new_checkout):
    checkout = new_checkout()
    response = checkout.confirm(checkout.profile()["token"], key="3ds", card="4000000000003220")
    assert response.status_code == 200, response.text
    pending = response.json()
    assert pending["status"] == "requires_action"
    assert pending["next_action"]["type"] == "three_ds_challenge"
    assert pending["next_action"]["challenge_id"]
    assert shown(checkout)["status"] == "open"

    done = challenge(checkout, pending["id"], "succeeded")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded"
    assert done.json()["id"] == pending["id"]
    assert done.json()["next_action"] is None
    session = shown(checkout)
    assert session["status"] == "succeeded"
    assert [p["status"] for p in session["payments"]] == ["succeeded"]

    # the challenge cannot be completed twice
    again = challenge(checkout, pending["id"], "succeeded")
    assert 400 <= again.status_code < 500
    assert_error(again, again.status_code)


def test_3ds_challenge_failed_is_402_and_session_stays_open(new_checkout):
    checkout = new_checkout()
    pending = checkout.confirm(
        checkout.profile()["token"], key="3ds", card="4000000000003220"
    ).json()
    assert pending["status"] == "requires_action"
    failed = challenge(checkout, pending["id"], "failed")
    error = assert_error(failed, 402, type_="card_error")
    assert error["decline_code"] == "authentication_failed"
    assert error["payment"]["status"] == "failed"
    session = shown(checkout)
    assert session["status"] == "open"
    assert [p["status"] for p in session["payments"]] == ["failed"]


def test_three_ds_required_by_the_profile(make_merchant, new_checkout):
    shop = make_merchant(
        "3DS always", config={"rules": [{"when": "true", "then": {"require": ["three_ds"]}}]}
    )
    checkout = new_checkout(shop)
    profile = checkout.profile()
    assert profile["verification"]["three_ds"] is True
    pending = checkout.confirm(profile["token"], key="visa-3ds")
    assert pending.status_code == 200, pending.text
    assert pending.json()["status"] == "requires_action"  # even 4242 must authenticate
    done = challenge(checkout, pending.json()["id"], "succeeded")
    assert done.json()["status"] == "succeeded", done.text

    other = new_checkout(shop)
    declined = other.confirm(other.profile()["token"], key="decl-3ds", card="4000000000000002")
    assert_error(declined, 402, code="card_declined")


def test_challenge_refusals(new_checkout, make_merchant):
    checkout = new_checkout()
    pending = checkout.confirm(
        checkout.profile()["token"], key="3ds", card="4000000000003220"
    ).json()
    pid = pending["id"]
    assert_error(challenge(checkout, pid, "maybe"), 400, param="outcome")
    wrong = challenge(checkout, pid, "succeeded", client_secret="cs_x_secret_y")
    assert_error(wrong, 400, code="invalid_client_secret")
    assert_error(challenge(checkout, "pay_000000000000000000000000", "succeeded"), 404)
    stranger = make_merchant("Stranger")
    assert_error(challenge(checkout, pid, "succeeded", merchant=stranger), 404)
    assert shown(checkout)["payments"][0]["status"] == "requires_action"


@pytest.mark.parametrize(
    ("card", "code", "param", "words"),
    [
        (
            {"number": "4242424242424241"},
            "incorrect_number",
            "payment_method.card.number",
            "incorrect",
        ),
        ({"number": "424242424242"}, "incorrect_number", "payment_method.card.number", "digits"),
        (
            {"exp_month": 1, "exp_year": 2020},
            "expired_card",
            "payment_method.card.exp_year",
            "01/2020",
        ),
        ({"exp_month": 13}, "invalid_expiry_month", "payment_method.card.exp_month", "month"),
        ({"cvc": "12"}, "invalid_cvc", "payment_method.card.cvc", "3-digit"),
        ({"cvc": "12a"}, "invalid_cvc", "payment_method.card.cvc", "security code"),
    ],
    ids=["luhn", "short", "expired", "month", "cvc-short", "cvc-letters"],
)
def test_invalid_card_is_402_card_error(new_checkout, card, code, param, words):
    checkout = new_checkout()
    body = card_body(checkout, checkout.profile()["token"], **card)
    error = assert_error(post_confirm(checkout, body, "bad-card"), 402, code=code, param=param)
    assert error["type"] == "card_error"
    assert words in error["message"]
    session = shown(checkout)
    assert session["status"] == "open" and session["payments"] == []


def test_card_number_with_spaces_is_accepted(new_checkout):
    checkout = new_checkout()
    body = card_body(checkout, checkout.profile()["token"], number="4242 4242 4242 4242")
    response = post_confirm(checkout, body, "spaces")
    assert response.status_code == 200, response.text
    assert response.json()["card"] == {"brand": "visa", "last4": "4242"}


# --- idempotency ----------------------------------------------------------------------------


def test_missing_idempotency_key_is_400(new_checkout, database):
    checkout = new_checkout()
    body = card_body(checkout, checkout.profile()["token"])
    for key in (None, ""):
        response = post_confirm(checkout, body, key)
        error = assert_error(response, 400, code="idempotency_key_missing")
        assert error["param"] == "Idempotency-Key"
    too_long = post_confirm(checkout, body, "k" * 256)
    assert_error(too_long, 400, param="Idempotency-Key")
    assert payment_rows(database, checkout.id) == []


@pytest.mark.parametrize("number", ["4242424242424242", "4000000000000002"])
def test_same_key_same_body_replays_the_stored_response(new_checkout, database, number):
    checkout = new_checkout()
    body = card_body(checkout, checkout.profile()["token"], number=number)
    first = post_confirm(checkout, body, "same")
    assert first.status_code in (200, 402), first.text
    assert "Idempotent-Replayed" not in first.headers
    for _ in range(2):
        again = post_confirm(checkout, body, "same")
        assert again.status_code == first.status_code
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
    assert len(payment_rows(database, checkout.id)) == 1
    assert len(shown(checkout)["payments"]) == 1


def test_same_key_different_body_is_409(new_checkout, make_merchant, database):
    checkout = new_checkout()
    token = checkout.profile()["token"]
    first = post_confirm(checkout, card_body(checkout, token), "reused")
    assert first.status_code == 200, first.text
    for changed in (
        card_body(checkout, token, number="5555555555554444"),
        card_body(checkout, token, cvc="999"),
        card_body(checkout, token, redeem_points=True),
    ):
        response = post_confirm(checkout, changed, "reused")
        assert_error(response, 409, code="idempotency_key_reused", param="Idempotency-Key")
    # the same key on another session of the same merchant is another request, too
    other = new_checkout()
    response = post_confirm(other, card_body(other, other.profile()["token"]), "reused")
    assert_error(response, 409, code="idempotency_key_reused")
    assert len(payment_rows(database, checkout.id)) == 1
    assert payment_rows(database, other.id) == []

    # keys are scoped per merchant: another merchant may use the same value
    stranger = make_merchant("Stranger")
    theirs = new_checkout(stranger)
    response = post_confirm(theirs, card_body(theirs, theirs.profile()["token"]), "reused")
    assert response.status_code == 200, response.text


def test_decline_then_retry_with_new_key_succeeds_once(new_checkout, database):
    checkout = new_checkout()
    token = checkout.profile()["token"]
    declined = checkout.confirm(token, key="attempt-1", card="4000000000000002")
    assert declined.status_code == 402
    paid = checkout.confirm(token, key="attempt-2")
    assert paid.status_code == 200, paid.text
    session = shown(checkout)
    assert session["status"] == "succeeded"
    assert sorted(p["status"] for p in session["payments"]) == ["failed", "succeeded"]
    assert [p["id"] for p in session["payments"] if p["status"] == "succeeded"] == [
        paid.json()["id"]
    ]
    # and the first key still answers with its own (declined) result
    replay = checkout.confirm(token, key="attempt-1", card="4000000000000002")
    assert replay.status_code == 402 and replay.json() == declined.json()


def test_succeeded_session_cannot_be_charged_again(new_checkout, database):
    checkout = new_checkout()
    token = checkout.profile()["token"]
    assert checkout.confirm(token, key="one").status_code == 200
    for key, card in (("two", "4242424242424242"), ("three", "5555555555554444")):
        again = checkout.confirm(token, key=key, card=card)
        assert_error(again, 400, code="session_already_succeeded")
    profile = checkout.client.post(
        "/v1/payment_profile",
        json={"client_secret": checkout.session["client_secret"], "context": {}},
        headers=checkout.merchant.public_headers,
    )
    assert_error(profile, 400, code="session_already_succeeded")
    session = shown(checkout)
    assert [p["status"] for p in session["payments"]] == ["succeeded"]
    assert [r.status for r in payment_rows(database, checkout.id)] == ["succeeded"]


def test_concurrent_confirms_charge_once(new_checkout, database):
    """Two tabs paying at once with different keys, and a double click with the same key."""
    checkout = new_checkout()
    token = checkout.profile()["token"]
    responses: list[Any] = []

    def pay(key: str) -> None:
        responses.append(checkout.confirm(token, key=key))

    threads = [threading.Thread(target=pay, args=(k,)) for k in ("tab-1", "tab-2", "tab-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    statuses = sorted(r.status_code for r in responses)
    assert len(responses) == 3
    assert statuses.count(500) == 0, [r.text for r in responses]
    assert 200 in statuses
    for response in responses:
        if response.status_code != 200:
            assert response.json()["error"]["code"] in (
                "session_already_succeeded",
                "idempotency_request_in_progress",
                "payment_in_progress",  # the other tab's payment is being charged
            ), response.text
    rows = payment_rows(database, checkout.id)
    assert [r.status for r in rows].count("succeeded") == 1
    with database.session() as db:
        keys = db.scalar(
            select(func.count())
            .select_from(IdempotencyRecord)
            .where(IdempotencyRecord.merchant_id == checkout.merchant.id)
        )
    assert keys == 2


def test_concurrent_confirms_reach_the_gateway_once(client, new_checkout, monkeypatch):
    """The session lock holds on every backend: one charge, not one per racing request."""
    gateway = client.app.state.gateway
    charged: list[str] = []
    real_charge = gateway.charge

    def slow_charge(request: Any) -> Any:
        charged.append(request.idempotency_key)
        time.sleep(0.05)  # widen the window in which a second confirm could slip past
        return real_charge(request)

    monkeypatch.setattr(gateway, "charge", slow_charge)
    checkout = new_checkout()
    token = checkout.profile()["token"]
    responses: list[Any] = []
    threads = [
        threading.Thread(target=lambda k=k: responses.append(checkout.confirm(token, key=k)))
        for k in ("a", "b", "c", "d")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(r.status_code for r in responses) == [200, 400, 400, 400]
    assert len(charged) == 1, f"the gateway was asked to charge {len(charged)} times"


# --- the profile is enforced ----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _tampered_tokens(token: str) -> dict[str, str]:
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = (
        signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    )
    claims = json.loads(_unb64(payload))
    cheaper = _b64(json.dumps(claims | {"amt": 1}).encode())
    no_steps = _b64(json.dumps(claims | {"req": [], "mth": ["card", "apple_pay"]}).encode())
    unsigned_header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return {
        "flipped-signature": f"{header}.{payload}.{flipped}",
        "changed-amount": f"{header}.{cheaper}.{signature}",
        "dropped-steps": f"{header}.{no_steps}.{signature}",
        "alg-none": f"{unsigned_header}.{payload}.",
        "other-secret": jwt.encode(claims, "another-secret-of-sufficient-length-012345", "HS256"),
        "no-signature": f"{header}.{payload}",
        "garbage": "not-a-token",
    }


def test_tampered_token_is_refused(new_checkout, database):
    checkout = new_checkout()
    token = checkout.profile()["token"]
    for name, bad in _tampered_tokens(token).items():
        response = checkout.confirm(bad, key=f"tampered-{name}")
        error = assert_error(response, 400, code="profile_token_invalid")
        assert "profile" in error["message"], name
    assert payment_rows(database, checkout.id) == []
    assert checkout.confirm(token, key="genuine").status_code == 200


def test_token_from_another_session_is_refused(new_checkout, make_merchant, database):
    mine = new_checkout()
    other = new_checkout()
    foreign_token = other.profile()["token"]
    assert_error(mine.confirm(foreign_token, key="x"), 400, code="profile_token_mismatch")

    stranger = make_merchant("Stranger")
    theirs = new_checkout(stranger)
    assert_error(
        theirs.confirm(mine.profile()["token"], key="y"), 400, code="profile_token_mismatch"
    )
    assert payment_rows(database, mine.id) == payment_rows(database, theirs.id) == []


def test_confirm_with_another_merchants_key_is_404(new_checkout, make_merchant):
    checkout = new_checkout()
    stranger = make_merchant("Stranger")
    body = card_body(checkout, checkout.profile()["token"])
    response = post_confirm(checkout, body, "k", merchant=stranger)
    assert_error(response, 404)
    assert shown(checkout)["payments"] == []


def test_wrong_client_secret_on_confirm(new_checkout):
    checkout = new_checkout()
    body = card_body(checkout, checkout.profile()["token"])
    body["client_secret"] = new_checkout().session["client_secret"]
    assert_error(post_confirm(checkout, body, "k"), 400, code="invalid_client_secret")


def test_required_cvv_and_avs_steps(make_merchant, new_checkout):
    shop = make_merchant("Careful", config={"rules": [CVV_AVS_RULE]})
    checkout = new_checkout(shop)
    profile = checkout.profile()
    assert profile["verification"]["cvv"] is True and profile["verification"]["avs"] is True
    token = profile["token"]

    error = assert_error(checkout.confirm(token, key="none"), 400, param="verification.cvv")
    assert error["code"] == "verification_required" and "cvv" in error["message"]

    wrong_cvv = checkout.confirm(token, key="wrong-cvv", verification={"cvv": "999"})
    assert_error(wrong_cvv, 400, param="verification.cvv", code="verification_failed")

    no_address = checkout.confirm(token, key="cvv-only", verification={"cvv": "123"})
    error = assert_error(no_address, 400, param="verification.billing_address")
    assert error["code"] == "verification_required"

    bad_address = checkout.confirm(
        token, key="bad-addr", verification={"cvv": "123", "billing_address": {"line1": "x"}}
    )
    assert_error(bad_address, 400, param="verification.billing_address.postal_code")

    assert shown(checkout)["payments"] == []
    paid = checkout.confirm(
        token, key="both", verification={"cvv": "123", "billing_address": ADDRESS}
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"


def test_mobile_biometric_step(new_checkout):
    checkout = new_checkout()
    profile = checkout.profile(MOBILE)
    assert profile["verification"]["biometric"] is True
    assert profile["methods"][0]["type"] in ("apple_pay", "google_pay")
    token = profile["token"]
    missing = checkout.confirm(token, key="no-bio")
    assert_error(
        missing, 400, code="verification_required", param="verification.biometric_assertion"
    )
    paid = checkout.confirm(
        token, key="bio", verification={"biometric_assertion": "webauthn-assertion"}
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"


def test_method_not_in_profile_is_refused(new_checkout, make_merchant):
    checkout = new_checkout()
    profile = checkout.profile({"device": {"type": "desktop"}})
    offered = {m["type"] for m in profile["methods"]}
    assert "apple_pay" not in offered  # this device reported no Apple Pay
    response = checkout.confirm(profile["token"], key="ap", method="apple_pay")
    error = assert_error(response, 400, code="payment_method_unavailable")
    assert error["param"] == "payment_method.type" and "apple_pay" in error["message"]

    cards_only = make_merchant("Cards only", config={"enabled_methods": ["card"]})
    checkout = new_checkout(cards_only)
    token = checkout.profile()["token"]
    for method in ("ideal", "klarna", "sepa_debit"):
        response = checkout.confirm(token, key=method, method=method)
        assert_error(response, 400, code="payment_method_unavailable")
    unknown = checkout.confirm(token, key="crypto", method="crypto")
    assert_error(unknown, 400, param="payment_method.type")
    assert shown(checkout)["payments"] == []


def test_card_method_without_card_details(new_checkout):
    checkout = new_checkout()
    body = card_body(checkout, checkout.profile()["token"])
    del body["payment_method"]["card"]
    assert_error(post_confirm(checkout, body, "k"), 400, param="payment_method.card")


def test_non_card_method_offered_in_profile(new_checkout):
    checkout = new_checkout()
    profile = checkout.profile({"device": {"type": "desktop"}, "country": "NL"})
    assert "ideal" in {m["type"] for m in profile["methods"]}
    paid = checkout.confirm(profile["token"], key="ideal", method="ideal")
    assert paid.status_code == 200, paid.text
    assert paid.json()["method_type"] == "ideal"
    assert paid.json()["card"] is None
    assert paid.json()["amount"] == 2599


@pytest.mark.parametrize(
    "extra",
    [{"amount": 1}, {"currency": "JPY"}, {"amount": 1, "currency": "JPY"}],
    ids=["amount", "currency", "both"],
)
def test_amount_always_comes_from_the_session(new_checkout, database, extra):
    checkout = new_checkout(amount=4200, currency="USD")
    token = checkout.profile()["token"]
    response = checkout.confirm(token, key="cheap", **extra)
    error = assert_error(response, 400, code="parameter_invalid")
    assert error["param"] in extra
    assert payment_rows(database, checkout.id) == []

    paid = checkout.confirm(token, key="honest")
    assert paid.status_code == 200, paid.text
    assert paid.json()["amount"] == 4200 and paid.json()["currency"] == "USD"
    (row,) = payment_rows(database, checkout.id)
    assert row.amount == 4200 and row.currency == "USD"


# --- loyalty --------------------------------------------------------------------------------


def test_loyalty_redemption_reduces_the_charge(make_merchant, new_checkout, database):
    shop = make_merchant("Loyal", config={"loyalty": {"enabled": True, "redemption_value": 1}})
    checkout = new_checkout(shop, loyalty_balance=500)
    profile = checkout.profile()
    assert profile["loyalty"]["enabled"] is True
    assert profile["loyalty"]["balance_points"] == 500
    assert profile["loyalty"]["balance_value"] == 500
    assert profile["loyalty"]["can_redeem"] is True

    paid = checkout.confirm(profile["token"], key="redeem", redeem_points=True)
    assert paid.status_code == 200, paid.text
    assert paid.json()["amount"] == 2599 - 500
    (row,) = payment_rows(database, checkout.id)
    assert row.amount == 2099 and row.verification["loyalty_discount"] == 500


def test_loyalty_without_redeem_or_program_charges_full_amount(make_merchant, new_checkout):
    shop = make_merchant("Loyal", config={"loyalty": {"enabled": True, "redemption_value": 1}})
    checkout = new_checkout(shop, loyalty_balance=500)
    paid = checkout.confirm(checkout.profile()["token"], key="keep-points")
    assert paid.json()["amount"] == 2599

    # no loyalty program: redeem_points cannot discount anything
    checkout = new_checkout(loyalty_balance=500)
    assert checkout.profile()["loyalty"]["enabled"] is False
    paid = checkout.confirm(checkout.profile()["token"], key="no-program", redeem_points=True)
    assert paid.status_code == 200, paid.text
    assert paid.json()["amount"] == 2599


def test_retry_after_a_crash_past_the_charge_reuses_the_gateway_key(app, merchant, monkeypatch):
    """A 500 after the gateway charged must not lead to a second, different charge."""
    from fastapi.testclient import TestClient

    from checkoutlab.payments import sessions as sessions_module

    seen: list[str] = []
    gateway = app.state.gateway
    original_charge = gateway.charge

    def counting_charge(request):
        seen.append(request.idempotency_key)
        return original_charge(request)

    monkeypatch.setattr(gateway, "charge", counting_charge)
    original_take = sessions_module.take_stock
    calls = {"n": 0}

    def flaky_take_stock(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database hiccup after the charge")
        return original_take(**kwargs)

    monkeypatch.setattr(sessions_module, "take_stock", flaky_take_stock)
    with TestClient(app, raise_server_exceptions=False) as client:
        created = client.post(
            "/v1/checkout_sessions",
            json={"amount": 1500, "currency": "EUR"},
            headers=merchant.secret_headers,
        ).json()
        token = client.post(
            "/v1/payment_profile",
            json={"client_secret": created["client_secret"]},
            headers=merchant.public_headers,
        ).json()["token"]
        body = {
            "client_secret": created["client_secret"],
            "profile_token": token,
            "payment_method": {
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "cvc": "123",
                },
            },
        }
        headers = merchant.public_headers | {"Idempotency-Key": "attempt-1"}
        first = client.post(
            f"/v1/checkout_sessions/{created['id']}/confirm", json=body, headers=headers
        )
        assert first.status_code == 500
        retry = client.post(
            f"/v1/checkout_sessions/{created['id']}/confirm", json=body, headers=headers
        )
        assert retry.status_code == 200, retry.text
    assert len(seen) == 2 and len(set(seen)) == 1  # same gateway key: the gateway dedupes


def test_no_second_payment_while_one_is_processing(new_checkout):
    checkout = new_checkout(amount=5000)
    token = checkout.profile()["token"]
    pending = checkout.confirm(token, key="bank", method="bank_transfer")
    assert pending.status_code == 200 and pending.json()["status"] == "processing"
    again = checkout.confirm(token, key="card")
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "payment_in_progress"
