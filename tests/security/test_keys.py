"""Secret keys roll (old key valid for a grace period) and are revoked; every secret-key
request is audited.

``hardened`` builds the app the way ``create_app`` will once the hardening is wired
(``security.install`` plus the merchants router); it is a no-op on an already wired app.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from checkoutlab.api.app import create_app
from checkoutlab.api.security import install
from checkoutlab.config import Settings
from checkoutlab.db import Database, utcnow
from checkoutlab.merchants.models import PreviousSecretKey
from checkoutlab.merchants.router import router as merchants_router


def hardened(settings: Settings, database: Database) -> Any:
    app = create_app(settings, database=database)
    install(app, settings)
    if not any(getattr(r, "path", None) == "/v1/keys/roll" for r in app.routes):
        app.include_router(merchants_router)
    return app


@pytest.fixture
def app(settings: Settings, database: Database) -> Any:
    return hardened(settings, database)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _roll(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/keys/roll", json=body or None, headers=_bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


def test_roll_issues_a_new_key_and_keeps_the_old_one_for_the_grace_period(
    client: TestClient, merchant: Any
) -> None:
    rolled = _roll(client, merchant.sk)
    new = rolled["secret_key"]
    assert new.startswith("sk_") and new != merchant.sk
    assert rolled["key"]["last4"] == new[-4:] and rolled["key"]["status"] == "current"
    previous = rolled["previous"]
    assert previous["last4"] == merchant.sk[-4:] and previous["status"] == "active"
    assert 23.9 * 3600 < _seconds_until(previous["expires_at"]) <= 24 * 3600

    for key in (new, merchant.sk):  # both work during the grace period
        assert client.get("/v1/inventory", headers=_bearer(key)).status_code == 200
    listed = client.get("/v1/keys", headers=_bearer(new)).json()["data"]
    assert [k["status"] for k in listed] == ["current", "active"]
    assert all("secret_key" not in k and "hash" not in str(k) for k in listed)


def _seconds_until(iso: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(iso) - utcnow()).total_seconds()


def test_rolled_key_stops_working_when_the_grace_period_ends(
    client: TestClient, merchant: Any, database: Database
) -> None:
    new = _roll(client, merchant.sk)["secret_key"]
    with database.session() as session:
        session.execute(
            update(PreviousSecretKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    refused = client.get("/v1/inventory", headers=_bearer(merchant.sk))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "api_key_expired"
    assert client.get("/v1/inventory", headers=_bearer(new)).status_code == 200


def test_zero_grace_ends_the_old_key_at_once(client: TestClient, merchant: Any) -> None:
    _roll(client, merchant.sk, grace_period_hours=0)
    assert client.get("/v1/inventory", headers=_bearer(merchant.sk)).status_code == 401


def test_revoke_one_or_all_rolled_keys(client: TestClient, merchant: Any) -> None:
    first = _roll(client, merchant.sk)
    second = _roll(client, first["secret_key"])
    current = second["secret_key"]
    revoked = client.post(
        "/v1/keys/revoke", json={"key_id": first["previous"]["id"]}, headers=_bearer(current)
    )
    assert revoked.status_code == 200, revoked.text
    assert [k["status"] for k in revoked.json()["data"]] == ["revoked"]
    assert client.get("/v1/inventory", headers=_bearer(merchant.sk)).status_code == 401
    assert client.get("/v1/inventory", headers=_bearer(first["secret_key"])).status_code == 200

    all_old = client.post("/v1/keys/revoke", json={"all_previous": True}, headers=_bearer(current))
    assert [k["id"] for k in all_old.json()["data"]] == [second["previous"]["id"]]
    assert client.get("/v1/inventory", headers=_bearer(first["secret_key"])).status_code == 401
    assert client.get("/v1/inventory", headers=_bearer(current)).status_code == 200


def test_key_changes_need_the_current_key_and_valid_requests(
    client: TestClient, merchant: Any, make_merchant: Any
) -> None:
    new = _roll(client, merchant.sk)["secret_key"]
    for path, body in (("/v1/keys/roll", None), ("/v1/keys/revoke", {"all_previous": True})):
        old_key = client.post(path, json=body, headers=_bearer(merchant.sk))
        assert old_key.status_code == 403
        assert old_key.json()["error"]["code"] == "current_key_required"
    own = client.get("/v1/keys", headers=_bearer(new)).json()["data"]
    current_id = own[0]["id"]
    cases = [
        ({"key_id": current_id}, 400),  # the current key: roll it instead
        ({"key_id": "key_0000000000000000"}, 404),
        ({}, 400),
        ({"key_id": own[1]["id"], "all_previous": True}, 400),
    ]
    other = make_merchant("Other")
    other_id = client.get("/v1/keys", headers=_bearer(other.sk)).json()["data"][0]["id"]
    cases.append(({"key_id": other_id}, 400 if other_id == current_id else 404))
    for body, status in cases:
        response = client.post("/v1/keys/revoke", json=body, headers=_bearer(new))
        assert response.status_code == status, (body, response.text)
        assert set(response.json()["error"]) == {"type", "code", "message", "param"}
    assert client.post("/v1/keys/roll", headers=merchant.public_headers).status_code == 403


def test_every_secret_key_request_is_audited(
    client: TestClient, merchant: Any, make_merchant: Any
) -> None:
    other = make_merchant("Other")
    client.post(
        "/v1/checkout_sessions",
        json={"amount": 100, "currency": "EUR"},
        headers=merchant.secret_headers,
    )
    client.get("/v1/checkout_sessions/cs_missing", headers=merchant.secret_headers)
    client.get("/v1/inventory", headers=other.secret_headers)
    client.get("/v1/inventory", headers=merchant.public_headers)  # pk: refused, not audited
    new = _roll(client, merchant.sk, grace_period_hours=0)["secret_key"]
    client.get("/v1/inventory", headers=_bearer(merchant.sk))  # expired key: audited as 401

    response = client.get("/v1/audit_log", headers=_bearer(new))
    assert response.status_code == 200, response.text
    entries = response.json()["data"]
    seen = [(e["method"], e["path"], e["status_code"], e["key_last4"]) for e in entries]
    old4, new4 = merchant.sk[-4:], new[-4:]
    assert seen == [
        ("GET", "/v1/inventory", 401, old4),
        ("POST", "/v1/keys/roll", 200, old4),
        ("GET", "/v1/checkout_sessions/cs_missing", 404, old4),
        ("POST", "/v1/checkout_sessions", 201, old4),
    ]
    assert all(e["client_ip"] == "testclient" and e["key_id"].startswith("key_") for e in entries)
    assert merchant.sk not in response.text and new not in response.text
    again = client.get("/v1/audit_log?limit=1", headers=_bearer(new)).json()["data"]
    assert again[0]["path"] == "/v1/audit_log" and again[0]["key_last4"] == new4
    page = client.get(f"/v1/audit_log?before={entries[1]['id']}", headers=_bearer(new))
    assert [e["id"] for e in page.json()["data"]] == [e["id"] for e in entries[2:]]
    theirs = client.get("/v1/audit_log", headers=other.secret_headers).json()["data"]
    assert [e["path"] for e in theirs] == ["/v1/inventory"]
