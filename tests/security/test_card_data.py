"""DESIGN.md's card-data contract, proven after a run: no full card number (and no CVC) is
stored in any table, written to any log record or echoed in any response; brand and last
four are kept.

The run covers every path a number travels: success, declines, 3-D Secure and its
challenge, card errors (Luhn, expiry, CVC), request-validation errors whose pydantic input
holds the whole card, idempotent replays and a required CVC re-entry.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from checkoutlab.db import Base, import_models
from checkoutlab.observability.logging import JsonFormatter
from checkoutlab.payments.models import Payment

CVC = "739"  # sent as the card's CVC and as the re-entered verification.cvv
CARDS = [
    "4242424242424242",  # succeeds
    "5555555555554444",  # succeeds (mastercard)
    "4000000000000002",  # card_declined
    "4000000000009995",  # insufficient_funds
    "4000000000000119",  # processing_error
    "4000000000003220",  # 3-D Secure
    "4242424242424241",  # fails Luhn
    "4000000000000069",  # expired_card decline
]
RULES = {"rules": [{"when": "amount.value > 0", "then": {"require": ["cvv"]}}]}


def _forms(number: str) -> list[str]:
    """The number as digits, in groups of four with spaces or dashes, and reversed groups."""
    groups = [number[i : i + 4] for i in range(0, len(number), 4)]
    return [number, " ".join(groups), "-".join(groups)]


FORBIDDEN = sorted({form for number in CARDS for form in _forms(number)})
# The CVC is three digits, which random ids and timestamps also contain: look for it next
# to the names it travels under, in JSON, repr, SQL-parameter and query-string spellings.
CVC_NEAR_NAME = re.compile(
    r"(cvc|cvv|security.?code)[\"'\]\s]*[:=,(]\s*[\"'(]?\s*(SecretStr\(\s*['\"])?" + CVC,
    re.IGNORECASE,
)


def _leaks(text: str) -> list[str]:
    found = [form for form in FORBIDDEN if form in text]
    if CVC_NEAR_NAME.search(text):
        found.append(f"cvc {CVC}")
    return found


def _card(number: str, **overrides: Any) -> dict[str, Any]:
    return {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": CVC} | overrides


def _confirm(checkout: Any, token: str, key: str, card: Any, **extra: Any) -> Any:
    body = {
        "client_secret": checkout.session["client_secret"],
        "profile_token": token,
        "payment_method": {"type": "card", "card": card},
        # the re-entered CVC matches the card's, so each request reaches the card checks
        "verification": {"cvv": card.get("cvc", CVC) if isinstance(card, dict) else CVC},
    } | extra
    return checkout.client.post(
        f"/v1/checkout_sessions/{checkout.id}/confirm",
        json=body,
        headers=checkout.merchant.public_headers | {"Idempotency-Key": key},
    )


def _run_checkouts(new_checkout: Any, shop: Any) -> list[Any]:
    responses = []

    def pay(number: str, **card: Any) -> Any:
        checkout = new_checkout(shop, customer="cus_card_data")
        token = checkout.profile({"device": {"type": "desktop"}})["token"]
        response = _confirm(checkout, token, f"k-{checkout.id}", _card(number, **card))
        responses.append(response)
        return checkout, token, response

    checkout, token, ok = pay("4242424242424242")
    assert ok.status_code == 200, ok.text
    replay = _confirm(
        checkout, token, f"k-{checkout.id}", _card("4242424242424242")
    )  # stored answer
    assert replay.headers.get("Idempotent-Replayed") == "true"
    responses.append(replay)
    assert pay("5555 5555 5555 4444")[2].status_code == 200

    for number in ("4000000000000002", "4000 0000 0000 9995", "4000-0000-0000-0119"):
        assert pay(number)[2].status_code == 402
    assert pay("4000000000000069")[2].status_code == 402

    checkout, _, pending = pay("4000000000003220")
    assert pending.json()["status"] == "requires_action", pending.text
    done = checkout.client.post(
        f"/v1/checkout_sessions/{checkout.id}/payments/{pending.json()['id']}/challenge",
        json={"client_secret": checkout.session["client_secret"], "outcome": "succeeded"},
        headers=checkout.merchant.public_headers,
    )
    assert done.status_code == 200, done.text
    responses.append(done)

    # card errors: Luhn, expiry, CVC (the number itself is valid in the last two)
    assert pay("4242424242424241")[2].json()["error"]["code"] == "incorrect_number"
    assert pay("4242424242424242", exp_year=2020)[2].json()["error"]["code"] == "expired_card"
    assert pay("4242424242424242", cvc="7")[2].json()["error"]["code"] == "invalid_cvc"

    # request-validation errors, where pydantic's error input holds the whole card
    checkout = new_checkout(shop, customer="cus_card_data")
    token = checkout.profile()["token"]
    invalid = [
        {"number": 4242424242424242, "exp_month": 12, "exp_year": 2034, "cvc": CVC},
        {"number": "4000000000000002", "exp_month": 12, "exp_year": 2034},
        _card("4000000000009995", exp_month="December"),
        _card("4242424242424242", pin="0000"),
        _card("4000000000003220", cvc=[CVC]),
        "4242424242424242",
    ]
    for index, card in enumerate(invalid):
        response = _confirm(checkout, token, f"invalid-{index}", card)
        assert response.status_code == 400, response.text
        responses.append(response)
    # a CVC re-entry that does not match names the field but not the value
    response = checkout.client.post(
        f"/v1/checkout_sessions/{checkout.id}/confirm",
        json={
            "client_secret": checkout.session["client_secret"],
            "profile_token": token,
            "payment_method": {"type": "card", "card": _card("4242424242424242")},
            "verification": {"cvv": "740"},
        },
        headers=checkout.merchant.public_headers | {"Idempotency-Key": "cvv-wrong"},
    )
    assert response.json()["error"]["code"] == "verification_failed", response.text
    responses.append(response)
    return responses


def _table_dump(database: Any) -> dict[str, list[str]]:
    import_models()
    dump: dict[str, list[str]] = {}
    with database.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table)).mappings().all()
            dump[table.name] = [json.dumps(dict(row), default=str) for row in rows]
    return dump


def test_no_card_number_or_cvc_in_database_logs_or_responses(
    new_checkout, make_merchant, database, caplog
):
    # Every logger at DEBUG: the root, and each named one that set its own level (SQLAlchemy
    # puts "sqlalchemy" at WARN, which would hide its statements and their parameters).
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    shop = make_merchant("Card data", config=RULES)
    responses = _run_checkouts(new_checkout, shop)

    # the run did reach the places a leak would land
    tables = _table_dump(database)
    for name in ("payments", "events", "idempotency_records", "decisions", "checkout_sessions"):
        assert tables[name], f"no rows in {name}"
    assert any("INSERT INTO payments" in r.getMessage() for r in caplog.records), (
        "SQL statements were not captured; the log check would prove nothing"
    )
    assert any("pm_card_visa" in r.getMessage() for r in caplog.records), "no SQL parameters"

    for table, rows in tables.items():
        for row in rows:
            assert not _leaks(row), f"{table}: {_leaks(row)} in {row}"

    # the JSON lines production writes include every extra= field, so check those too
    json_lines = JsonFormatter()
    for record in caplog.records:
        text = " ".join(
            [
                record.getMessage(),
                repr(record.args),
                record.exc_text or "",
                logging.Formatter().format(record),
                json_lines.format(record),
            ]
        )
        assert not _leaks(text), f"log {record.name}: {_leaks(text)} in {text[:500]}"
        assert shop.sk not in text, f"secret key in log {record.name}"
    access = [r for r in caplog.records if r.name == "checkoutlab.access"]
    assert access and all(r.request_id for r in access), "request lines without a request id"

    for response in responses:
        assert not _leaks(response.text), f"response: {_leaks(response.text)} in {response.text}"

    # what may be kept is kept: brand and last four on every card payment
    with database.session() as db:
        payments = list(db.scalars(select(Payment).where(Payment.merchant_id == shop.id)))
    assert len(payments) == 7
    kept = sorted((p.card_brand, p.card_last4, p.status) for p in payments)
    assert kept == [
        ("mastercard", "4444", "succeeded"),
        ("visa", "0002", "failed"),
        ("visa", "0069", "failed"),
        ("visa", "0119", "failed"),
        ("visa", "3220", "succeeded"),
        ("visa", "4242", "succeeded"),
        ("visa", "9995", "failed"),
    ]
    card_events = [row for row in tables["events"] if '"card_last4"' in row]
    assert card_events and all('"card_brand"' in row for row in card_events)


def test_no_card_number_in_the_sqlite_file(new_checkout, make_merchant, database):
    """Below the rows: the SQLite file and its write-ahead log hold no number either."""
    if database.engine.dialect.name != "sqlite":
        pytest.skip("reads the SQLite file; the row scan above covers PostgreSQL")
    shop = make_merchant("Card data", config=RULES)
    _run_checkouts(new_checkout, shop)
    database.dispose()  # checkpoint nothing away: read file and WAL as they are
    path = Path(database.url.split("///", 1)[1])
    raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    assert raw
    leaked = [form for form in FORBIDDEN if form.encode() in raw]
    assert not leaked, leaked


def test_card_numbers_sent_in_event_properties_are_redacted(
    client, merchant, new_checkout, database
):
    from checkoutlab.events.models import Event

    checkout = new_checkout()
    response = client.post(
        "/v1/events",
        json={
            "events": [
                {
                    "type": "interaction",
                    "session_id": checkout.id,
                    "properties": {
                        "field": "card_number",
                        "value": "4242 4242 4242 4242",
                        "nested": {"n": 4000000000000002},
                        "order": "123456789012",
                    },
                }
            ]
        },
        headers=merchant.public_headers,
    )
    assert response.status_code == 202
    with database.session() as session:
        stored = (
            session.scalars(select(Event).where(Event.session_id == checkout.id)).one().properties
        )
    assert "4242" not in str(stored)
    assert stored["value"] == "[redacted card number]"
    assert stored["nested"]["n"] == "[redacted card number]"
    assert stored["order"] == "123456789012"  # not Luhn-valid: an order number, kept
