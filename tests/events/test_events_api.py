"""POST /v1/events and the append-only log read by cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from checkoutlab.events.models import Event
from checkoutlab.events.service import read_since


def post_events(client, keys, events: list[dict[str, Any]], headers: dict[str, str] | None = None):
    return client.post(
        "/v1/events", json={"events": events}, headers=headers or keys.public_headers
    )


def stored(database) -> list[Event]:
    with database.session() as db:
        return read_since(db=db, limit=10_000)


def assert_error(response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"}
    if param is not None:
        assert error["param"] == param
    return error


def test_batch_is_stored_before_202(client, database, merchant, new_checkout) -> None:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    checkout = new_checkout()
    profile = checkout.profile({"device": {"type": "desktop"}})
    batch = [
        {
            "type": "exposure",
            "session_id": checkout.id,
            "decision_id": profile["id"],
            "occurred_at": when.isoformat().replace("+00:00", "Z"),
            "properties": {"methods": ["card", "klarna"]},
        },
        {
            "type": "interaction",
            "session_id": checkout.id,
            "decision_id": profile["id"],
            "properties": {"element": "klarna", "action": "select"},
        },
        {"type": "abandon", "session_id": checkout.id, "properties": {"step": "payment"}},
    ]
    response = post_events(client, merchant, batch)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3

    client_events = [e for e in stored(database) if e.source == "client"]
    assert [e.type for e in client_events] == ["exposure", "interaction", "abandon"]
    assert {e.merchant_id for e in client_events} == {merchant.id}
    assert {e.session_id for e in client_events} == {checkout.id}
    assert client_events[0].decision_id == profile["id"]
    assert client_events[0].occurred_at == when
    assert client_events[1].properties == {"element": "klarna", "action": "select"}
    assert client_events[2].decision_id is None
    # occurred_at defaults to the time of receipt
    assert client_events[1].occurred_at == client_events[1].received_at


def test_events_without_session_are_accepted(client, database, merchant) -> None:
    response = post_events(client, merchant, [{"type": "exposure"}])
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    assert len(stored(database)) == 1


@pytest.mark.parametrize(
    ("batch", "param"),
    [
        ([{"type": "purchase"}], "events.0.type"),
        ([{"type": "exposure"}, {"type": "profile_served"}], "events.1.type"),  # server-only
        ([], "events"),
        ([{"type": "exposure"}] * 501, "events"),
        ([{"type": "exposure", "colour": "red"}], "events.0.colour"),
        ([{"type": "exposure", "occurred_at": "yesterday"}], "events.0.occurred_at"),
        ([{"type": "exposure", "occurred_at": "2026-01-02T03:04:05"}], "events.0.occurred_at"),
        ([{"type": "exposure", "properties": {"x": "y" * 5000}}], "events.0.properties"),
    ],
)
def test_bad_batches_are_refused_and_nothing_is_stored(
    client, database, merchant, batch, param
) -> None:
    error = assert_error(post_events(client, merchant, batch), 400, param)
    assert error["type"] == "invalid_request_error"
    assert stored(database) == []


def test_batch_of_exactly_500_is_accepted(client, database, merchant) -> None:
    response = post_events(client, merchant, [{"type": "interaction"}] * 500)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 500
    assert len(stored(database)) == 500


def test_session_of_another_merchant_is_refused(
    client, database, make_merchant, merchant, new_checkout
) -> None:
    other = make_merchant("Other Shop")
    foreign = new_checkout(owner=other)
    mine = new_checkout()
    batch = [
        {"type": "exposure", "session_id": mine.id},
        {"type": "exposure", "session_id": foreign.id},
    ]
    error = assert_error(post_events(client, merchant, batch), 400)
    assert foreign.id in error["message"]
    assert mine.id not in error["message"]
    assert stored(database) == []


def test_decision_of_another_merchant_or_session_is_refused(
    client, database, make_merchant, merchant, new_checkout
) -> None:
    other = make_merchant("Other Shop")
    foreign = new_checkout(owner=other).profile({})
    mine = new_checkout()
    my_profile = mine.profile({})
    second = new_checkout()
    before = len(stored(database))

    error = assert_error(
        post_events(client, merchant, [{"type": "exposure", "decision_id": foreign["id"]}]), 400
    )
    assert foreign["id"] in error["message"]
    assert_error(
        post_events(
            client,
            merchant,
            [{"type": "exposure", "session_id": second.id, "decision_id": my_profile["id"]}],
        ),
        400,
        "events.0.decision_id",
    )
    assert len(stored(database)) == before


def test_secret_key_is_refused(client, database, merchant) -> None:
    error = assert_error(
        post_events(client, merchant, [{"type": "exposure"}], headers=merchant.secret_headers),
        403,
    )
    assert "publishable key" in error["message"]
    assert_error(
        post_events(client, merchant, [{"type": "exposure"}], headers={"Authorization": "x"}), 401
    )
    assert stored(database) == []


def test_event_ids_increase_and_cursor_reads_each_event_once(client, database, merchant) -> None:
    for size in (3, 2, 4):
        response = post_events(client, merchant, [{"type": "interaction"}] * size)
        assert response.status_code == 202

    ids = [e.id for e in stored(database)]
    assert len(ids) == 9
    assert ids == sorted(ids)
    assert len(set(ids)) == 9

    seen: list[int] = []
    cursor = 0
    with database.session() as db:
        while batch := read_since(db=db, merchant_id=merchant.id, cursor=cursor, limit=4):
            seen += [e.id for e in batch]
            cursor = batch[-1].id
        # new events after the cursor are read, and only they
        post_events(client, merchant, [{"type": "abandon"}])
        fresh = read_since(db=db, merchant_id=merchant.id, cursor=cursor)
    assert seen == ids
    assert [e.type for e in fresh] == ["abandon"]
    assert fresh[0].id > ids[-1]


def test_read_since_filters_by_merchant_and_type(client, database, make_merchant, merchant) -> None:
    other = make_merchant("Other Shop")
    post_events(client, merchant, [{"type": "exposure"}, {"type": "abandon"}])
    post_events(client, other, [{"type": "exposure"}])
    with database.session() as db:
        mine = read_since(db=db, merchant_id=merchant.id)
        exposures = read_since(db=db, types=["exposure"])
    assert [e.type for e in mine] == ["exposure", "abandon"]
    assert {e.merchant_id for e in exposures} == {merchant.id, other.id}


def test_server_events_after_a_checkout(client, database, merchant, new_checkout) -> None:
    desktop = {"device": {"type": "desktop"}}
    declined = new_checkout(customer="cus_e")
    first = declined.profile(desktop)
    response = declined.confirm(first["token"], key="e1", card="4000000000009995")
    assert response.status_code == 402, response.text

    paid = new_checkout(customer="cus_e")
    profile = paid.profile(desktop)
    rendered = client.post(
        "/v1/elements", json={"token": profile["token"]}, headers=merchant.public_headers
    )
    assert rendered.status_code == 200, rendered.text
    response = paid.confirm(profile["token"], key="e2")
    assert response.status_code == 200, response.text

    events = stored(database)
    assert all(e.source == "server" for e in events)
    assert [(e.type, e.session_id) for e in events] == [
        ("profile_served", declined.id),
        ("payment_failed", declined.id),
        ("profile_served", paid.id),
        ("elements_rendered", paid.id),
        ("payment_succeeded", paid.id),
    ]
    failed, succeeded = events[1], events[4]
    assert failed.decision_id == first["id"]
    assert failed.properties["decline_code"] == "insufficient_funds"
    assert failed.properties["card_last4"] == "9995"
    assert succeeded.decision_id == profile["id"]
    assert succeeded.properties["amount"] == 2599
    assert succeeded.properties["method"] == "card"
    assert succeeded.properties["decline_code"] is None
    # no full card number in any event
    for event in events:
        assert "4242424242424242" not in str(event.properties)
        assert "4000000000009995" not in str(event.properties)


def test_events_are_never_updated(client, database, merchant) -> None:
    post_events(client, merchant, [{"type": "exposure", "properties": {"n": 1}}])
    post_events(client, merchant, [{"type": "exposure", "properties": {"n": 1}}])
    with database.session() as db:
        rows = db.execute(select(Event.id, Event.properties).order_by(Event.id)).all()
        assert db.scalar(select(func.count()).select_from(Event)) == 2
    assert [props for _, props in rows] == [{"n": 1}, {"n": 1}]  # duplicates are kept, not merged


@pytest.mark.parametrize(
    "event",
    [
        {"type": "exposure", "occurred_at": "0001-01-01T00:00:00+14:00"},
        {"type": "exposure", "occurred_at": "2000-01-01T00:00:00Z"},
    ],
)
def test_implausible_event_times_are_400(client, merchant, event) -> None:
    response = client.post("/v1/events", json={"events": [event]}, headers=merchant.public_headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].endswith("occurred_at")


def test_float_card_numbers_in_properties_are_redacted(client, merchant, database) -> None:
    response = client.post(
        "/v1/events",
        json={
            "events": [{"type": "interaction", "properties": {"f": 4242424242424242.0, "x": 1.5}}]
        },
        headers=merchant.public_headers,
    )
    assert response.status_code == 202
    with database.session() as db:
        stored = db.scalars(select(Event).where(Event.source == "client")).one().properties
    assert stored == {"f": "[redacted card number]", "x": 1.5}
