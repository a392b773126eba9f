"""Hostile inputs: none gets a 5xx, a stack trace or another merchant's data.

Oversized and streamed bodies (413), deep JSON, wrong content types, SQL/HTML/template
injection strings in every text field (stored verbatim, escaped in the generated form),
replayed, tampered and cross-session profile tokens, a publishable key on secret routes,
and another merchant's ids.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from checkoutlab.api.app import create_app
from checkoutlab.api.security import install
from checkoutlab.config import Settings
from checkoutlab.db import Database
from checkoutlab.merchants.models import Merchant
from checkoutlab.merchants.router import router as merchants_router
from checkoutlab.payments.models import CheckoutSession

SQL = "'; DROP TABLE merchants; --"
SQL_OR = '" OR 1=1 --'
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
TEMPLATE = "{{ 7*7 }}{% raw %}"
PAYLOADS = [SQL, SQL_OR, SCRIPT, IMG, TEMPLATE]
LEAK_MARKERS = ("Traceback", "sqlalchemy", "psycopg", 'File "', "sqlite3")


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


def _clean(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code < 500, response.text
    if statuses:
        assert response.status_code in statuses, response.text
    assert not any(marker in response.text for marker in LEAK_MARKERS), response.text
    body = response.json() if response.content else {}
    if response.status_code >= 400:
        assert set(body["error"]) == {"type", "code", "message", "param"}
    return body


# ------------------------------------------------------------------- size, depth, type


def test_oversized_body_is_413_before_reading(client: TestClient, merchant: Any) -> None:
    big = b'{"events": [' + b'{"type": "interaction"},' * 50_000 + b'{"type": "abandon"}]}'
    assert len(big) > 1_048_576
    for path in ("/v1/events", "/v1/checkout_sessions"):
        headers = merchant.public_headers if path == "/v1/events" else merchant.secret_headers
        response = client.post(
            path, content=big, headers=headers | {"Content-Type": "application/json"}
        )
        error = _clean(response, 413)["error"]
        assert error["code"] == "payload_too_large" and "1048576 bytes" in error["message"]


def test_streamed_body_without_length_is_cut_at_the_limit(
    client: TestClient, merchant: Any
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for _ in range(2_000):
            yield b'{"type": "interaction", "properties": {"pad": "' + b"x" * 1000 + b'"}},'
        yield b'{"type": "abandon"}]}'

    response = client.post(
        "/v1/events",
        content=chunks(),
        headers=merchant.public_headers | {"Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert _clean(response, 413)["error"]["code"] == "payload_too_large"


def test_bad_content_length_is_400() -> None:
    import anyio

    from checkoutlab.api.security import BodySizeLimitMiddleware

    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # never reached
        raise AssertionError("app called")

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"x")]}
    # a thread of its own: the browser tests' session-wide Playwright loop may own this one
    worker = threading.Thread(
        target=anyio.run, args=(BodySizeLimitMiddleware(app), scope, receive, send)
    )
    worker.start()
    worker.join(10)
    assert sent[0]["status"] == 400


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_deeply_nested_json_is_400(
    client: TestClient, merchant: Any, opener: str, closer: str
) -> None:
    deep = opener * 10_000 + "1" + closer * 10_000
    for path, headers in (
        ("/v1/events", merchant.public_headers),
        ("/v1/payment_profile", merchant.public_headers),
        ("/v1/checkout_sessions", merchant.secret_headers),
    ):
        response = client.post(
            path, content=deep, headers=headers | {"Content-Type": "application/json"}
        )
        _clean(response, 400)
    nested_props = {"events": [{"type": "interaction", "properties": {"a": [[[[[[1]]]]]]}}]}
    _clean(client.post("/v1/events", json=nested_props, headers=merchant.public_headers), 202)


@pytest.mark.parametrize(
    "content_type,content",
    [
        ("text/plain", '{"amount": 100, "currency": "EUR"}'),
        ("application/x-www-form-urlencoded", "amount=100&currency=EUR"),
        ("multipart/form-data; boundary=x", "--x\r\n\r\n--x--"),
        ("application/xml", "<amount>100</amount>"),
        (None, '{"amount": 100, "currency": "EUR"'),
    ],
)
def test_wrong_content_types_are_4xx(
    client: TestClient, merchant: Any, content_type: str | None, content: str
) -> None:
    headers = dict(merchant.secret_headers)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/v1/checkout_sessions", content=content, headers=headers)
    _clean(response, 400, 415)
    events = client.post(
        "/v1/events",
        content=content,
        headers=merchant.public_headers | {"Content-Type": content_type or ""},
    )
    _clean(events, 400, 415)


# ------------------------------------------------------------------------- injection


def test_injection_strings_are_stored_verbatim_and_escaped_in_the_form(
    client: TestClient, make_merchant: Any, database: Database
) -> None:
    shop = make_merchant(SCRIPT, {"loyalty": {"enabled": True, "name": IMG}})
    session = _clean(
        client.post(
            "/v1/checkout_sessions",
            json={
                "amount": 2599,
                "currency": "EUR",
                "customer": SQL,
                "line_items": [{"sku": "SKU-1", "quantity": 1, "name": p} for p in PAYLOADS],
                "metadata": {f"k{i}": p for i, p in enumerate(PAYLOADS)},
                "loyalty_balance": 500,
            },
            headers=shop.secret_headers,
        ),
        201,
    )
    read = _clean(
        client.get(f"/v1/checkout_sessions/{session['id']}", headers=shop.secret_headers), 200
    )
    assert read["customer"] == SQL
    assert read["metadata"] == {f"k{i}": p for i, p in enumerate(PAYLOADS)}

    context = {
        "locale": SCRIPT[:35],
        "timezone": SQL,
        "user_agent": IMG + SQL_OR + TEMPLATE,
        "device": {"os": SCRIPT[:40]},
    }
    profile_response = client.post(
        "/v1/payment_profile",
        json={"client_secret": session["client_secret"], "context": context},
        headers=shop.public_headers,
    )
    profile = _clean(profile_response, 200, 400)
    if profile_response.status_code == 400:  # the locale is validated: send a clean one
        context["locale"] = "en"
        profile = _clean(
            client.post(
                "/v1/payment_profile",
                json={"client_secret": session["client_secret"], "context": context},
                headers=shop.public_headers,
            ),
            200,
        )
    elements = _clean(
        client.post("/v1/elements", json={"token": profile["token"]}, headers=shop.public_headers),
        200,
    )
    tags = _tags(elements["html"])
    assert not {"script", "img", "iframe", "object"} & {tag for tag, _ in tags}
    assert not [name for _, attrs in tags for name, _ in attrs if name.startswith("on")]
    assert "&lt;img src=x onerror=alert(1)&gt;" in elements["html"]  # shown, as text
    assert "<" not in elements["css"]

    events = {
        "events": [
            {
                "type": "interaction",
                "session_id": session["id"],
                "properties": {"field": p, p[:20]: p},
            }
            for p in PAYLOADS
        ]
    }
    _clean(client.post("/v1/events", json=events, headers=shop.public_headers), 202)
    bad_ids = {"events": [{"type": "interaction", "session_id": SQL[:40]}]}
    _clean(client.post("/v1/events", json=bad_ids, headers=shop.public_headers), 400)
    _clean(client.get(f"/v1/checkout_sessions/{SQL_OR}", headers=shop.secret_headers), 404)
    outcome = client.post(
        "/v1/outcomes",
        json={"payment_id": SQL[:40], "type": "fraud_report", "reason": SCRIPT, "external_id": SQL},
        headers=shop.secret_headers,
    )
    _clean(outcome, 400, 404)

    with database.session() as db:  # nothing was executed, everything stored as sent
        assert db.scalar(select(func.count()).select_from(Merchant)) == 1
        stored = db.get(CheckoutSession, session["id"])
        assert stored is not None and stored.customer_ref == SQL
        assert [item["name"] for item in stored.line_items] == PAYLOADS
        assert db.get(Merchant, shop.id).name == SCRIPT


def _tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every element and its attributes, as a browser's tokenizer sees them."""
    from html.parser import HTMLParser

    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Collect().feed(html)
    assert found, "no HTML rendered"
    return found


# --------------------------------------------------------------------- tokens and keys


def test_replayed_tampered_and_cross_session_tokens_are_refused(
    client: TestClient, new_checkout: Any, make_merchant: Any
) -> None:
    first, second = new_checkout(), new_checkout()
    token = first.profile()["token"]
    cross = second.confirm(token, key="cross-1")
    _clean(cross, 400, 401, 403, 404, 409)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    _clean(first.confirm(tampered, key="tamper-1"), 400, 401, 403, 404)
    _clean(
        client.post(
            "/v1/elements", json={"token": tampered}, headers=first.merchant.public_headers
        ),
        400,
        401,
        403,
        404,
    )
    paid = first.confirm(token, key="pay-1")
    _clean(paid, 200)
    replay = first.confirm(token, key="pay-2")  # same token, new attempt on a paid session
    _clean(replay, 400, 409)
    other = make_merchant("Other")
    _clean(
        client.post("/v1/elements", json={"token": token}, headers=other.public_headers),
        400,
        401,
        403,
        404,
    )


SECRET_ROUTES = [
    ("POST", "/v1/checkout_sessions", {"amount": 100, "currency": "EUR"}),
    ("GET", "/v1/checkout_sessions/cs_x", None),
    ("GET", "/v1/inventory", None),
    ("PUT", "/v1/inventory", {"items": []}),
    ("POST", "/v1/outcomes", {"payment_id": "pay_x", "type": "fraud_report"}),
    ("GET", "/v1/outcomes?payment_id=pay_x", None),
    ("POST", "/v1/keys/roll", None),
    ("POST", "/v1/keys/revoke", {"all_previous": True}),
    ("GET", "/v1/keys", None),
    ("GET", "/v1/audit_log", None),
]


@pytest.mark.parametrize("method,path,body", SECRET_ROUTES)
def test_publishable_key_on_secret_routes_is_403(
    client: TestClient, merchant: Any, method: str, path: str, body: Any
) -> None:
    response = client.request(method, path, json=body, headers=merchant.public_headers)
    assert _clean(response, 403)["error"]["code"] == "secret_key_required"
    assert merchant.pk not in response.text
    for bad in ("sk_test_made_up", "", "Basic abc", SQL):
        refused = client.request(method, path, json=body, headers={"Authorization": bad})
        _clean(refused, 401)


def test_another_merchants_ids_are_404_or_refused(
    client: TestClient, new_checkout: Any, make_merchant: Any
) -> None:
    mine = new_checkout()
    token = mine.profile()["token"]
    paid = _clean(mine.confirm(token, key="k1"), 200)
    other = make_merchant("Other")
    payment_id = paid.get("id") or paid.get("payment", {}).get("id")

    response = client.get(f"/v1/checkout_sessions/{mine.id}", headers=other.secret_headers)
    assert _clean(response, 404)["error"]["code"] == "resource_missing"
    assert mine.session["client_secret"] not in response.text
    profile = client.post(
        "/v1/payment_profile",
        json={"client_secret": mine.session["client_secret"], "context": {}},
        headers=other.public_headers,
    )
    _clean(profile, 400, 404)
    events = {"events": [{"type": "interaction", "session_id": mine.id}]}
    _clean(client.post("/v1/events", json=events, headers=other.public_headers), 400, 404)
    if payment_id:
        outcome = {"payment_id": payment_id, "type": "fraud_report"}
        _clean(client.post("/v1/outcomes", json=outcome, headers=other.secret_headers), 404)
        _clean(
            client.get(f"/v1/outcomes?payment_id={payment_id}", headers=other.secret_headers),
            404,
            200,
        )
    confirm = client.post(
        f"/v1/checkout_sessions/{mine.id}/confirm",
        json={
            "client_secret": mine.session["client_secret"],
            "profile_token": token,
            "payment_method": {"type": "card"},
        },
        headers=other.public_headers | {"Idempotency-Key": "theirs-1"},
    )
    _clean(confirm, 400, 401, 403, 404)
    audit = client.get("/v1/audit_log", headers=other.secret_headers).json()["data"]
    assert all(mine.id not in entry["path"] or entry["status_code"] == 404 for entry in audit)
