"""CORS restricted to each merchant's allowed_origins on publishable-key routes, none on
secret-key routes; security headers (nosniff, frame-ancestors, CSP on pages, HSTS only over
TLS or a trusted proxy's X-Forwarded-Proto).
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

SHOP = "https://shop.example"
OTHER_SHOP = "https://other.example"
EVIL = "https://evil.example"
EVENTS = {"events": [{"type": "interaction"}]}


def hardened(settings: Settings, database: Database) -> Any:
    """The app as ``create_app`` builds it once the hardening is wired (see test_keys)."""
    app = create_app(settings, database=database)
    install(app, settings)
    if not any(getattr(r, "path", None) == "/v1/keys/roll" for r in app.routes):
        app.include_router(merchants_router)
    return app


@pytest.fixture
def app(settings: Settings, database: Database) -> Any:
    return hardened(settings, database)


@pytest.fixture
def shops(make_merchant: Any) -> tuple[Any, Any]:
    return (
        make_merchant("Shop", {"allowed_origins": [SHOP]}),
        make_merchant("Other", {"allowed_origins": [OTHER_SHOP]}),
    )


def _preflight(client: TestClient, origin: str, path: str = "/v1/events", **extra: str) -> Any:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    } | extra
    return client.options(path, headers=headers)


def test_preflight_answers_listed_origins_only(client: TestClient, shops: Any) -> None:
    for path in ("/v1/events", "/v1/payment_profile", "/v1/checkout_sessions/cs_1/confirm"):
        ok = _preflight(client, SHOP, path)
        assert ok.status_code == 204, ok.text
        assert ok.headers["access-control-allow-origin"] == SHOP
        assert ok.headers["access-control-allow-methods"] == "POST"
        assert "idempotency-key" in ok.headers["access-control-allow-headers"]
    refused = _preflight(client, EVIL)
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert refused.json()["error"]["code"] == "origin_not_allowed"
    traced = _preflight(
        client, SHOP, **{"Access-Control-Request-Headers": "content-type, x-request-id"}
    )
    assert traced.status_code == 204  # the widget sends one request id per checkout
    assert "x-request-id" in traced.headers["access-control-allow-headers"]
    odd_header = _preflight(client, SHOP, **{"Access-Control-Request-Headers": "x-evil"})
    assert "access-control-allow-origin" not in odd_header.headers


def test_actual_request_needs_the_keyed_merchants_origin(client: TestClient, shops: Any) -> None:
    shop, _ = shops
    ok = client.post("/v1/events", json=EVENTS, headers=shop.public_headers | {"Origin": SHOP})
    assert ok.status_code == 202
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in ok.headers["vary"]
    # listed by another merchant: the preflight passes, the request with this key does not
    assert _preflight(client, OTHER_SHOP).status_code == 204
    cross = client.post(
        "/v1/events", json=EVENTS, headers=shop.public_headers | {"Origin": OTHER_SHOP}
    )
    assert cross.status_code == 403
    assert "access-control-allow-origin" not in cross.headers
    assert cross.json()["error"]["code"] == "origin_not_allowed"


def test_same_origin_and_server_calls_are_not_cors(client: TestClient, shops: Any) -> None:
    shop, _ = shops
    same = client.post(
        "/v1/events", json=EVENTS, headers=shop.public_headers | {"Origin": "http://testserver"}
    )
    assert same.status_code == 202 and "access-control-allow-origin" not in same.headers
    server = client.post("/v1/events", json=EVENTS, headers=shop.public_headers)
    assert server.status_code == 202 and "access-control-allow-origin" not in server.headers


def test_secret_key_routes_never_get_cors_headers(client: TestClient, shops: Any) -> None:
    shop, _ = shops
    preflight = _preflight(client, SHOP, "/v1/checkout_sessions")
    assert preflight.status_code == 405
    assert not any(h.startswith("access-control-") for h in preflight.headers)
    created = client.post(
        "/v1/checkout_sessions",
        json={"amount": 100, "currency": "EUR"},
        headers=shop.secret_headers | {"Origin": SHOP},
    )
    assert created.status_code == 201
    assert not any(h.startswith("access-control-") for h in created.headers)


def test_security_headers_everywhere(client: TestClient, merchant: Any) -> None:
    for response in (
        client.get("/healthz"),
        client.get("/v1/nope"),
        client.post("/v1/events", json=EVENTS, headers=merchant.public_headers),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "strict-transport-security" not in response.headers
    spoofed = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in spoofed.headers  # no trusted proxy
    over_tls = TestClient(client.app, base_url="https://testserver").get("/healthz")
    assert over_tls.headers["strict-transport-security"].startswith("max-age=63072000")


def test_hsts_behind_a_trusted_proxy(settings: Settings, database: Database) -> None:
    trusted = settings.model_copy(update={"trust_proxy": True})
    with TestClient(hardened(trusted, database)) as client:
        https = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        plain = client.get("/healthz", headers={"X-Forwarded-Proto": "http"})
    assert "max-age" in https.headers["strict-transport-security"]
    assert "strict-transport-security" not in plain.headers


def test_pages_keep_their_strict_csp(settings: Settings, database: Database) -> None:
    from checkoutlab.api.security import CONTENT_SECURITY_POLICY

    app = hardened(settings, database)

    @app.get("/_page")
    def page() -> Any:
        from fastapi.responses import HTMLResponse

        return HTMLResponse("<p>hi</p>")

    with TestClient(app) as client:
        response = client.get("/_page")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
