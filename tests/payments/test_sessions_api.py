"""Checkout sessions, validation, keys and inventory through HTTP (issue 2, "Merchants and
sessions" and "Errors and security")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from checkoutlab.db import utcnow
from checkoutlab.payments.models import CheckoutSession

SESSIONS = "/v1/checkout_sessions"


def assert_error(
    response: Any,
    status: int,
    *,
    code: str | None = None,
    param: Any = ...,
    type_: str | None = None,
) -> dict[str, Any]:
    """The one error shape: exactly type, code, message, param; a message that says something."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"type", "code", "message", "param"} <= set(error), error
    assert isinstance(error["message"], str) and len(error["message"]) > 10, error
    if code is not None:
        assert error["code"] == code, error
    if param is not ...:
        assert error["param"] == param, error
    if type_ is not None:
        assert error["type"] == type_, error
    return error


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _expire(database: Any, session_id: str) -> None:
    with database.session() as db:
        db.execute(
            update(CheckoutSession)
            .where(CheckoutSession.id == session_id)
            .values(expires_at=utcnow() - timedelta(seconds=5))
        )
        db.commit()


# --- create and read ------------------------------------------------------------------------


def test_create_returns_201_with_id_and_client_secret(client, merchant):
    response = client.post(
        SESSIONS,
        json={
            "amount": 2599,
            "currency": "EUR",
            "line_items": [{"sku": "SKU-1", "quantity": 2}],
            "customer": "cus_42",
            "loyalty_balance": 120,
        },
        headers=merchant.secret_headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"].startswith("cs_")
    assert created["client_secret"].startswith(created["id"] + "_secret_")
    assert created["status"] == "open"
    assert created["amount"] == 2599 and created["currency"] == "EUR"
    assert created["line_items"] == [
        {"sku": "SKU-1", "quantity": 2, "name": None, "unit_amount": None}
    ]
    assert created["customer"] == "cus_42" and created["loyalty_balance"] == 120
    # default lifetime: 30 minutes
    lifetime = _parse(created["expires_at"]) - _parse(created["created_at"])
    assert lifetime == timedelta(minutes=30)

    shown = client.get(f"{SESSIONS}/{created['id']}", headers=merchant.secret_headers)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["id"] == created["id"]
    assert body["status"] == "open"
    assert body["payments"] == []
    assert body["client_secret"] is None  # shown once, at creation


def test_lowercase_currency_is_normalized(client, merchant):
    response = client.post(
        SESSIONS, json={"amount": 500, "currency": "eur"}, headers=merchant.secret_headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["currency"] == "EUR"
    shown = client.get(f"{SESSIONS}/{response.json()['id']}", headers=merchant.secret_headers)
    assert shown.json()["currency"] == "EUR"


def test_session_expires(client, merchant, new_checkout, database):
    checkout = new_checkout(expires_in=60)
    created = checkout.session
    assert _parse(created["expires_at"]) - _parse(created["created_at"]) == timedelta(seconds=60)
    token = checkout.profile()["token"]  # obtained while the session was still open

    _expire(database, checkout.id)

    shown = client.get(f"{SESSIONS}/{checkout.id}", headers=merchant.secret_headers)
    assert shown.status_code == 200
    assert shown.json()["status"] == "expired"
    assert shown.json()["payments"] == []

    profile = client.post(
        "/v1/payment_profile",
        json={"client_secret": created["client_secret"], "context": {}},
        headers=merchant.public_headers,
    )
    assert_error(profile, 400, code="session_expired")
    assert "token" not in profile.text

    paid = checkout.confirm(token, key="after-expiry")
    assert_error(paid, 400, code="session_expired")
    shown = client.get(f"{SESSIONS}/{checkout.id}", headers=merchant.secret_headers)
    assert shown.json()["payments"] == []


# --- validation -----------------------------------------------------------------------------

_GOOD: dict[str, Any] = {"amount": 2599, "currency": "EUR"}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        pytest.param(_GOOD | {"currency": "XYZ"}, "currency", "parameter_invalid", id="currency"),
        pytest.param(_GOOD | {"currency": "EURO"}, "currency", "parameter_invalid", id="cur-len"),
        pytest.param(_GOOD | {"currency": 978}, "currency", "parameter_invalid", id="cur-int"),
        pytest.param(_GOOD | {"amount": -100}, "amount", "parameter_invalid", id="negative"),
        pytest.param(_GOOD | {"amount": 0}, "amount", "parameter_invalid", id="zero"),
        pytest.param(_GOOD | {"amount": "abc"}, "amount", "parameter_invalid", id="amount-str"),
        pytest.param(_GOOD | {"amount": 25.99}, "amount", "parameter_invalid", id="amount-float"),
        pytest.param(_GOOD | {"amount": True}, "amount", "parameter_invalid", id="amount-bool"),
        pytest.param(_GOOD | {"amount": None}, "amount", "parameter_invalid", id="amount-null"),
        pytest.param({"currency": "EUR"}, "amount", "parameter_missing", id="missing-amount"),
        pytest.param({"amount": 100}, "currency", "parameter_missing", id="missing-currency"),
        pytest.param(_GOOD | {"amout": 1}, "amout", "parameter_invalid", id="unknown-field"),
        pytest.param(_GOOD | {"line_items": "SKU-1"}, "line_items", "parameter_invalid", id="li"),
        pytest.param(
            _GOOD | {"line_items": [{"sku": "bad sku!", "quantity": 1}]},
            "line_items.0.sku",
            "parameter_invalid",
            id="bad-sku",
        ),
        pytest.param(
            _GOOD | {"line_items": [{"sku": "SKU-1", "quantity": 0}]},
            "line_items.0.quantity",
            "parameter_invalid",
            id="quantity-0",
        ),
        pytest.param(
            _GOOD | {"line_items": [{"sku": "SKU-1"}]},
            "line_items.0.quantity",
            "parameter_missing",
            id="quantity-missing",
        ),
        pytest.param(
            _GOOD | {"loyalty_balance": -1}, "loyalty_balance", "parameter_invalid", id="loyalty"
        ),
        pytest.param(  # past a 32-bit column: was a 500 on PostgreSQL (found by schemathesis)
            _GOOD | {"loyalty_balance": 2**31},
            "loyalty_balance",
            "parameter_invalid",
            id="loyalty-int32",
        ),
        pytest.param(_GOOD | {"expires_in": 5}, "expires_in", "parameter_invalid", id="ttl"),
        pytest.param(_GOOD | {"metadata": {"a": 1}}, "metadata.a", "parameter_invalid", id="meta"),
    ],
)
def test_create_validation(client, merchant, body, param, code):
    response = client.post(SESSIONS, json=body, headers=merchant.secret_headers)
    error = assert_error(response, 400, code=code, param=param, type_="invalid_request_error")
    assert param.split(".")[0] in error["message"]


def test_unknown_currency_message_says_what_to_send(client, merchant):
    response = client.post(
        SESSIONS, json={"amount": 100, "currency": "XYZ"}, headers=merchant.secret_headers
    )
    error = assert_error(response, 400, param="currency")
    assert "XYZ" in error["message"] and "ISO 4217" in error["message"]


@pytest.mark.parametrize(
    "raw",
    [b'{"amount": 2599, "currency": "EUR"', b"{amount: 1}", b"\xff\xfe", b"[1, 2"],
    ids=["truncated", "unquoted", "not-utf8", "array"],
)
def test_bad_json_is_400_invalid_json(client, merchant, raw):
    response = client.post(
        SESSIONS,
        content=raw,
        headers=merchant.secret_headers | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    error = assert_error(response, 400, type_="invalid_request_error")
    assert error["code"] in ("invalid_json", "parameter_invalid")


def test_bad_json_names_no_param(client, merchant):
    response = client.post(
        SESSIONS,
        content=b'{"amount": 1,',
        headers=merchant.secret_headers | {"Content-Type": "application/json"},
    )
    error = assert_error(response, 400, code="invalid_json", param=None)
    assert "JSON" in error["message"]


def test_empty_body_message_says_what_to_send(client, merchant):
    response = client.post(
        SESSIONS,
        content=b"",
        headers=merchant.secret_headers | {"Content-Type": "application/json"},
    )
    error = assert_error(response, 400)
    assert "None" not in error["message"]


@pytest.mark.parametrize("body", [[], "x", 42, None])
def test_body_that_is_not_an_object(client, merchant, body):
    response = client.post(SESSIONS, json=body, headers=merchant.secret_headers)
    assert_error(response, 400, type_="invalid_request_error")


# --- keys -----------------------------------------------------------------------------------


def test_no_key_is_401(client):
    response = client.post(SESSIONS, json=_GOOD)
    assert_error(response, 401, code="missing_api_key", type_="authentication_error")
    response = client.get(f"{SESSIONS}/cs_whatever")
    assert_error(response, 401, code="missing_api_key")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer sk_not_a_real_key", "Bearer garbage", "Basic abc", "Bearer ", ""],
)
def test_invalid_key_is_401(client, authorization):
    response = client.post(SESSIONS, json=_GOOD, headers={"Authorization": authorization})
    error = assert_error(response, 401, type_="authentication_error")
    assert error["code"] in ("invalid_api_key", "missing_api_key")


def test_invalid_key_on_browser_route_is_401(client, new_checkout):
    checkout = new_checkout()
    for key in ("pk_not_a_real_key", "nonsense"):
        response = client.post(
            "/v1/payment_profile",
            json={"client_secret": checkout.session["client_secret"], "context": {}},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert_error(response, 401, code="invalid_api_key")


def test_invalid_publishable_key_on_secret_route_is_401(client):
    response = client.post(SESSIONS, json=_GOOD, headers={"Authorization": "Bearer pk_nope"})
    assert_error(response, 401, code="invalid_api_key")


def test_publishable_key_on_secret_routes_is_403(client, merchant, new_checkout):
    checkout = new_checkout()
    pk = merchant.public_headers
    assert_error(client.post(SESSIONS, json=_GOOD, headers=pk), 403, code="secret_key_required")
    assert_error(client.get(f"{SESSIONS}/{checkout.id}", headers=pk), 403)
    assert_error(client.get("/v1/inventory", headers=pk), 403)
    inventory = {"items": [{"sku": "SKU-1", "quantity": 1}]}
    assert_error(client.put("/v1/inventory", json=inventory, headers=pk), 403)


def test_secret_key_on_browser_routes_is_403(client, merchant, new_checkout):
    checkout = new_checkout()
    response = client.post(
        "/v1/payment_profile",
        json={"client_secret": checkout.session["client_secret"], "context": {}},
        headers=merchant.secret_headers,
    )
    assert_error(response, 403, code="publishable_key_required", type_="permission_error")
    response = client.post(
        f"{SESSIONS}/{checkout.id}/confirm",
        json={"client_secret": checkout.session["client_secret"]},
        headers=merchant.secret_headers | {"Idempotency-Key": "k"},
    )
    assert_error(response, 403, code="publishable_key_required")


def test_other_merchants_session_is_404(client, make_merchant, new_checkout):
    owner = make_merchant("Owner")
    stranger = make_merchant("Stranger")
    checkout = new_checkout(owner)
    response = client.get(f"{SESSIONS}/{checkout.id}", headers=stranger.secret_headers)
    error = assert_error(response, 404, code="resource_missing")
    assert "client_secret" not in response.text and str(checkout.session["amount"]) not in str(
        error
    )
    # and the owner still sees it
    assert client.get(f"{SESSIONS}/{checkout.id}", headers=owner.secret_headers).status_code == 200
    # an id that exists nowhere answers exactly the same way
    unknown = client.get(f"{SESSIONS}/cs_000000000000000000000000", headers=stranger.secret_headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == error["code"]


def test_other_merchants_client_secret_gets_no_profile(client, make_merchant, new_checkout):
    owner = make_merchant("Owner")
    stranger = make_merchant("Stranger")
    checkout = new_checkout(owner, customer="cus_secret_owner", loyalty_balance=77)
    response = client.post(
        "/v1/payment_profile",
        json={"client_secret": checkout.session["client_secret"], "context": {}},
        headers=stranger.public_headers,
    )
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code, param="client_secret")
    body = response.text
    for leaked in ("token", "risk", "methods", "2599", "cus_secret_owner", checkout.id):
        assert leaked not in body, leaked


def test_wrong_client_secret_gets_no_profile(client, merchant, new_checkout):
    checkout = new_checkout()
    secret = checkout.session["client_secret"]
    for wrong in (secret[:-1] + ("A" if secret[-1] != "A" else "B"), checkout.id, "", "nonsense"):
        response = client.post(
            "/v1/payment_profile",
            json={"client_secret": wrong, "context": {}},
            headers=merchant.public_headers,
        )
        assert_error(response, 400, code="invalid_client_secret", param="client_secret")


# --- inventory ------------------------------------------------------------------------------


def test_inventory_put_and_get(client, merchant, make_merchant):
    response = client.put(
        "/v1/inventory",
        json={"items": [{"sku": "MUG", "quantity": 5}, {"sku": "TEE", "quantity": 0}]},
        headers=merchant.secret_headers,
    )
    assert response.status_code == 200, response.text
    expected = [{"sku": "MUG", "quantity": 5}, {"sku": "TEE", "quantity": 0}]
    assert response.json()["items"] == expected
    assert client.get("/v1/inventory", headers=merchant.secret_headers).json()["items"] == expected

    # an update changes one level and keeps the other
    client.put(
        "/v1/inventory",
        json={"items": [{"sku": "MUG", "quantity": 2}]},
        headers=merchant.secret_headers,
    )
    items = client.get("/v1/inventory", headers=merchant.secret_headers).json()["items"]
    assert items == [{"sku": "MUG", "quantity": 2}, {"sku": "TEE", "quantity": 0}]

    # stock is per merchant
    other = make_merchant("Other")
    assert client.get("/v1/inventory", headers=other.secret_headers).json()["items"] == []


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([{"sku": "MUG", "quantity": 1}, {"sku": "MUG", "quantity": 2}], "items"),
        ([{"sku": "MUG", "quantity": -1}], "items.0.quantity"),
        ([{"sku": "bad sku", "quantity": 1}], "items.0.sku"),
        ([], "items"),
    ],
    ids=["duplicate", "negative", "bad-sku", "empty"],
)
def test_inventory_put_validation(client, merchant, items, param):
    response = client.put("/v1/inventory", json={"items": items}, headers=merchant.secret_headers)
    assert_error(response, 400, param=param)
    assert client.get("/v1/inventory", headers=merchant.secret_headers).json()["items"] == []


def test_out_of_stock_session_cannot_be_confirmed(client, merchant, new_checkout):
    client.put(
        "/v1/inventory",
        json={"items": [{"sku": "LAMP", "quantity": 1}, {"sku": "MUG", "quantity": 10}]},
        headers=merchant.secret_headers,
    )
    checkout = new_checkout(
        line_items=[
            {"sku": "LAMP", "quantity": 2},
            {"sku": "MUG", "quantity": 1},
            {"sku": "UNTRACKED", "quantity": 3},
        ]
    )
    profile = checkout.profile()
    assert profile["inventory"]["in_stock"] is False
    lines = {line["sku"]: line for line in profile["inventory"]["lines"]}
    assert lines["LAMP"]["requested"] == 2 and lines["LAMP"]["available"] == 1
    assert lines["MUG"]["available"] == 10
    assert lines["UNTRACKED"]["available"] is None

    paid = checkout.confirm(profile["token"], key="oos-1")
    error = assert_error(paid, 400, code="out_of_stock")
    assert "LAMP" in error["message"] and "MUG" not in error["message"]
    shown = client.get(f"{SESSIONS}/{checkout.id}", headers=merchant.secret_headers).json()
    assert shown["status"] == "open" and shown["payments"] == []


def test_same_sku_twice_counts_the_total(client, merchant, new_checkout):
    client.put(
        "/v1/inventory",
        json={"items": [{"sku": "MUG", "quantity": 3}]},
        headers=merchant.secret_headers,
    )
    checkout = new_checkout(
        line_items=[{"sku": "MUG", "quantity": 2}, {"sku": "MUG", "quantity": 2}]
    )
    profile = checkout.profile()
    assert profile["inventory"]["in_stock"] is False
    assert_error(checkout.confirm(profile["token"], key="oos-2"), 400, code="out_of_stock")


def test_restocked_session_can_be_confirmed(client, merchant, new_checkout):
    client.put(
        "/v1/inventory",
        json={"items": [{"sku": "LAMP", "quantity": 0}]},
        headers=merchant.secret_headers,
    )
    checkout = new_checkout(line_items=[{"sku": "LAMP", "quantity": 1}])
    token = checkout.profile()["token"]
    assert_error(checkout.confirm(token, key="before"), 400, code="out_of_stock")

    client.put(
        "/v1/inventory",
        json={"items": [{"sku": "LAMP", "quantity": 1}]},
        headers=merchant.secret_headers,
    )
    profile = checkout.profile()
    assert profile["inventory"]["in_stock"] is True
    paid = checkout.confirm(profile["token"], key="after")
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"


def test_a_sale_takes_its_items_from_stock(client, merchant, new_checkout):
    client.put(
        "/v1/inventory",
        json={"items": [{"sku": "LAMP", "quantity": 3}, {"sku": "MUG", "quantity": 5}]},
        headers=merchant.secret_headers,
    )
    lines = [
        {"sku": "LAMP", "quantity": 2},
        {"sku": "MUG", "quantity": 1},
        {"sku": "FREE", "quantity": 9},
    ]
    first = new_checkout(line_items=lines)
    declined = first.confirm(first.profile()["token"], key="d", card="4000000000000002")
    assert declined.status_code == 402
    stock = {
        i["sku"]: i["quantity"]
        for i in client.get("/v1/inventory", headers=merchant.secret_headers).json()["items"]
    }
    assert stock == {"LAMP": 3, "MUG": 5}  # a decline takes nothing

    assert first.confirm(first.profile()["token"], key="ok").status_code == 200
    stock = {
        i["sku"]: i["quantity"]
        for i in client.get("/v1/inventory", headers=merchant.secret_headers).json()["items"]
    }
    assert stock == {"LAMP": 1, "MUG": 4}

    second = new_checkout(line_items=[{"sku": "LAMP", "quantity": 2}])
    profile = second.profile()
    assert profile["inventory"]["in_stock"] is False
    assert_error(second.confirm(profile["token"], key="x"), 400, code="out_of_stock")


def test_racing_inventory_inserts_retry_as_update(database, merchant, monkeypatch):
    from checkoutlab.payments import sessions as sessions_module
    from checkoutlab.payments.models import InventoryItem
    from checkoutlab.payments.schemas import InventoryLevel

    original = sessions_module._write_inventory
    raced: list[bool] = []

    def racing(db, merchant_id, levels, skus):
        if not raced:  # another request inserts the same new SKU first
            raced.append(True)
            with database.session() as other:
                other.add(InventoryItem(merchant_id=merchant_id, sku="NEW", quantity=1))
                other.commit()
            db.add(InventoryItem(merchant_id=merchant_id, sku="NEW", quantity=5))
            db.commit()  # the loser's insert: unique violation
        return original(db, merchant_id, levels, skus)

    monkeypatch.setattr(sessions_module, "_write_inventory", racing)
    with database.session() as db:
        sessions_module.set_inventory(
            db=db, merchant_id=merchant.id, levels=[InventoryLevel(sku="NEW", quantity=5)]
        )
        assert sessions_module.inventory(db=db, merchant_id=merchant.id) == {"NEW": 5}
