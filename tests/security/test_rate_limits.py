"""Rate limits on the public endpoints: per client IP and per publishable key, 429 in the
error shape with Retry-After; secret-key routes and other merchants are not affected.

The app is built as ``create_app`` will build it once the hardening is wired
(``hardened``, as in test_keys).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from checkoutlab.api.app import create_app
from checkoutlab.api.security import install
from checkoutlab.config import Settings
from checkoutlab.db import Database
from checkoutlab.merchants.router import router as merchants_router


def hardened(settings: Settings, database: Database) -> Any:
    """The app as ``create_app`` builds it once the hardening is wired (see test_keys)."""
    app = create_app(settings, database=database)
    install(app, settings)
    if not any(getattr(r, "path", None) == "/v1/keys/roll" for r in app.routes):
        app.include_router(merchants_router)
    return app


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update=dict(
            rate_limit_enabled=True,
            rate_limit_per_key="3/minute",
            rate_limit_per_ip="5/minute",
            trust_proxy=True,
        )
    )


@pytest.fixture
def app(settings: Settings, database: Database) -> Any:
    return hardened(settings, database)


def _events(client: TestClient, key: str, ip: str) -> Any:
    return client.post(
        "/v1/events",
        json={"events": [{"type": "interaction", "properties": {"n": 1}}]},
        headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": f"203.0.113.9, {ip}"},
    )


def test_per_key_limit_answers_429_with_retry_after(
    client: TestClient, merchant: Any, make_merchant: Any
) -> None:
    statuses = [_events(client, merchant.pk, f"198.51.100.{i}").status_code for i in range(4)]
    assert statuses == [202, 202, 202, 429]
    refused = _events(client, merchant.pk, "198.51.100.99")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["type"] == "rate_limit_error"
    assert "publishable key" in error["message"] and merchant.pk not in refused.text
    assert refused.headers["x-content-type-options"] == "nosniff"
    other = make_merchant("Other")
    assert _events(client, other.pk, "198.51.100.50").status_code == 202  # its own budget
    # secret-key routes are not rate limited by these limits
    for _ in range(6):
        assert client.get("/v1/inventory", headers=merchant.secret_headers).status_code == 200


def test_per_ip_limit_counts_every_key_and_every_public_route(
    client: TestClient, make_merchant: Any
) -> None:
    keys = [make_merchant(f"Shop {i}").pk for i in range(3)]
    ip = "192.0.2.7"
    answers = [_events(client, keys[i % 3], ip).status_code for i in range(5)]
    assert answers == [202] * 5
    for path in ("/v1/payment_profile", "/v1/elements", "/v1/checkout_sessions/cs_x/confirm"):
        refused = client.post(
            path, json={}, headers={"Authorization": f"Bearer {keys[0]}", "X-Forwarded-For": ip}
        )
        assert refused.status_code == 429, path
        assert "client address" in refused.json()["error"]["message"]
    # made-up keys are limited by address too, before any lookup
    assert _events(client, "pk_test_made_up", ip).status_code == 429
    assert _events(client, keys[1], "192.0.2.8").status_code == 202


def test_forwarded_for_is_ignored_without_a_trusted_proxy(
    settings: Settings, database: Database, make_merchant: Any
) -> None:
    settings = settings.model_copy(update={"trust_proxy": False, "rate_limit_per_ip": "2/minute"})
    merchant = make_merchant()
    with TestClient(hardened(settings, database)) as client:
        answers = [_events(client, merchant.pk, f"10.0.0.{i}").status_code for i in range(3)]
    assert answers == [202, 202, 429]  # spoofed addresses do not buy a fresh budget


def test_limits_can_be_disabled(settings: Settings, database: Database, make_merchant: Any) -> None:
    settings = settings.model_copy(
        update={"rate_limit_per_key": "1/minute", "rate_limit_enabled": False}
    )
    merchant = make_merchant()
    with TestClient(hardened(settings, database)) as client:
        assert {_events(client, merchant.pk, "10.0.0.1").status_code for _ in range(3)} == {202}
