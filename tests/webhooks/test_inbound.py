"""Provider webhooks through the HTTP API: signatures, idempotency, effects on payments."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from checkoutlab.db import Database
from checkoutlab.events.models import Event
from checkoutlab.fraud import outcomes
from checkoutlab.fraud.models import Outcome
from checkoutlab.payments.models import CheckoutSession
from checkoutlab.webhooks.models import InboundWebhook

from .conftest import adyen_body, adyen_item, reload, stripe_event, stripe_headers


def _intent(reference: str, *, status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    return {
        "id": reference,
        "object": "payment_intent",
        "amount": 2599,
        "currency": "eur",
        "status": status,
        "metadata": {},
    } | extra


def _post_stripe(client: TestClient, payload: bytes, **kwargs: Any) -> Any:
    return client.post(
        "/v1/webhooks/stripe", content=payload, headers=stripe_headers(payload, **kwargs)
    )


def _inbound(database: Database) -> list[InboundWebhook]:
    with database.session() as db:
        return list(db.scalars(select(InboundWebhook).order_by(InboundWebhook.id)))


def _events(database: Database, type_: str) -> list[Event]:
    with database.session() as db:
        return list(db.scalars(select(Event).where(Event.type == type_)))


def _outcomes(database: Database, merchant_id: str, payment_id: str) -> list[Any]:
    with database.session() as db:
        return outcomes.list_for_payment(db=db, merchant_id=merchant_id, payment_id=payment_id)


# --- signatures -------------------------------------------------------------------------------


def test_stripe_success_settles_a_processing_payment(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference="pi_settle")

    response = _post_stripe(client, stripe_event("payment_intent.succeeded", _intent("pi_settle")))

    assert response.status_code == 200, response.text
    assert response.json()["results"] == ["processed"]
    assert reload(database, payment.id).status == "succeeded"
    with database.session() as db:
        assert db.get(CheckoutSession, payment.session_id).status == "succeeded"
    [logged] = _events(database, "payment_succeeded")
    assert (logged.merchant_id, logged.properties["payment_id"]) == (merchant.id, payment.id)
    assert logged.properties["source"] == "webhook"


def test_bad_stripe_signatures_are_refused_and_change_nothing(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference="pi_forged")
    payload = stripe_event("payment_intent.succeeded", _intent("pi_forged"))
    tampered = payload.replace(b'"amount": 2599', b'"amount": 1')
    cases = {
        "wrong secret": stripe_headers(payload, secret="whsec_attacker"),
        "tampered body": stripe_headers(payload) | {"_body": ""},
        "too old": stripe_headers(payload, timestamp=int(time.time()) - 3600),
        "missing": {"Content-Type": "application/json"},
    }
    for name, headers in cases.items():
        body = tampered if headers.pop("_body", None) is not None else payload
        response = client.post("/v1/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 400, name
        assert response.json()["error"]["code"] == "invalid_signature", name

    assert reload(database, payment.id).status == "processing"
    assert _inbound(database) == []


def test_adyen_hmac_is_verified(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, gateway="adyen", reference="PSP0001")
    good = adyen_item(
        event_code="AUTHORISATION", psp_reference="PSP0001", merchant_reference="x", value=2599
    )
    forged = adyen_item(
        event_code="AUTHORISATION",
        psp_reference="PSP0001",
        merchant_reference="x",
        value=2599,
        hmac_key="00" * 32,
    )
    tampered = dict(good, amount={"value": 1, "currency": "EUR"})

    for bad in (forged, tampered):
        response = client.post("/v1/webhooks/adyen", content=adyen_body(bad))
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_signature"
    assert reload(database, payment.id).status == "processing"

    response = client.post("/v1/webhooks/adyen", content=adyen_body(good))
    assert response.status_code == 200
    assert response.text == "[accepted]"
    assert reload(database, payment.id).status == "succeeded"


def test_unconfigured_provider_answers_400(client: TestClient, settings: Any, app: Any) -> None:
    app.state.settings = settings.model_copy(update={"stripe_webhook_secret": None})
    payload = stripe_event("payment_intent.succeeded", _intent("pi_x"))
    response = _post_stripe(client, payload)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "webhooks_not_configured"


# --- idempotency ------------------------------------------------------------------------------


def test_a_replayed_event_is_acknowledged_and_applied_once(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference="pi_twice", status="succeeded")
    refund = {
        "id": "ch_twice",
        "object": "charge",
        "payment_intent": "pi_twice",
        "amount": 2599,
        "amount_refunded": 1000,
        "currency": "eur",
    }
    payload = stripe_event("charge.refunded", refund, event_id="evt_replayed")

    first = _post_stripe(client, payload)
    again = _post_stripe(client, payload)  # re-signed now, as Stripe does on each retry

    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["results"], again.json()["results"]) == (["processed"], ["duplicate"])
    [label] = _outcomes(database, merchant.id, payment.id)
    assert (label.type, label.amount) == ("refund", 1000)
    assert len(_inbound(database)) == 1


def test_adyen_replays_are_idempotent_by_event_id(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, gateway="adyen", reference="PSP0002")
    item = adyen_item(
        event_code="AUTHORISATION", psp_reference="PSP0002", merchant_reference="x", value=2599
    )
    for _ in range(3):
        assert client.post("/v1/webhooks/adyen", content=adyen_body(item)).status_code == 200
    assert reload(database, payment.id).status == "succeeded"
    assert len(_events(database, "payment_succeeded")) == 1
    [stored] = _inbound(database)
    assert (stored.provider, stored.event_id) == ("adyen", "AUTHORISATION:PSP0002:true")


# --- payment state ----------------------------------------------------------------------------


def test_failure_marks_a_pending_payment_failed_with_the_decline_code(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference="pi_fail", status="requires_action")
    failed = _intent(
        "pi_fail",
        status="requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    response = _post_stripe(client, stripe_event("payment_intent.payment_failed", failed))

    assert response.status_code == 200
    stored = reload(database, payment.id)
    assert (stored.status, stored.decline_code) == ("failed", "insufficient_funds")
    [logged] = _events(database, "payment_failed")
    assert logged.properties["decline_code"] == "insufficient_funds"


def test_a_stale_failure_never_downgrades_a_succeeded_payment(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference="pi_done", status="succeeded")
    failed = _intent("pi_done", status="requires_payment_method")
    response = _post_stripe(client, stripe_event("payment_intent.payment_failed", failed))
    assert response.status_code == 200
    assert reload(database, payment.id).status == "succeeded"
    assert _events(database, "payment_failed") == []


def test_payment_found_by_attempt_key_when_the_reference_was_never_stored(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference=None, key="cl_timeout_attempt")
    intent = _intent("pi_unknown_to_us", metadata={"idempotency_key": "cl_timeout_attempt"})
    assert _post_stripe(client, stripe_event("payment_intent.succeeded", intent)).status_code == 200
    assert reload(database, payment.id).status == "succeeded"


def test_unknown_payment_is_answered_404_so_the_provider_redelivers(
    client: TestClient, database: Database, caplog: Any
) -> None:
    payload = stripe_event("payment_intent.succeeded", _intent("pi_nobody"), event_id="evt_lost")
    response = _post_stripe(client, payload)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "payment_not_found_yet"
    [stored] = _inbound(database)
    assert (stored.event_id, stored.status, stored.merchant_id) == ("evt_lost", "unmatched", None)
    assert "evt_lost" in caplog.text and "matches no payment" in caplog.text
    # not deduplicated: the redelivery is not "duplicate", still 404 while unmatched
    assert _post_stripe(client, payload).status_code == 404


def test_a_redelivered_event_applies_once_its_payment_is_known(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    # the webhook raced confirm: the payment's reference was not recorded yet
    intent = _intent("pi_raced", metadata={"idempotency_key": "cl_raced"})
    payload = stripe_event("payment_intent.succeeded", intent, event_id="evt_raced")
    assert _post_stripe(client, payload).status_code == 404
    payment = make_payment(merchant.id, reference=None, key="cl_raced")

    again = _post_stripe(client, payload)
    assert again.status_code == 200 and again.json()["results"] == ["processed"]
    row = reload(database, payment.id)
    assert row.status == "succeeded" and row.gateway_reference == "pi_raced"
    [stored] = _inbound(database)
    assert (stored.status, stored.payment_id) == ("processed", payment.id)
    assert _post_stripe(client, payload).json()["results"] == ["duplicate"]
    assert len(_events(database, "payment_succeeded")) == 1


def test_an_event_unmatched_past_the_grace_is_acknowledged_as_ignored(
    client: TestClient, database: Database
) -> None:
    from checkoutlab.webhooks.inbound import UNMATCHED_GRACE

    payload = stripe_event("payment_intent.succeeded", _intent("pi_never"), event_id="evt_old")
    assert _post_stripe(client, payload).status_code == 404
    with database.session() as db:
        stored = db.scalar(select(InboundWebhook))
        stored.received_at = stored.received_at - UNMATCHED_GRACE  # first seen long ago
        db.commit()
    response = _post_stripe(client, payload)
    assert response.status_code == 200 and response.json()["results"] == ["ignored"]
    assert _inbound(database)[0].status == "ignored"
    assert _post_stripe(client, payload).json()["results"] == ["duplicate"]


def test_an_unknown_event_type_of_an_unknown_payment_is_acknowledged(
    client: TestClient, database: Database
) -> None:
    payload = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    response = _post_stripe(client, payload)
    assert response.status_code == 200 and response.json()["results"] == ["ignored"]


# --- disputes and refunds ---------------------------------------------------------------------


def test_dispute_records_a_fraud_label_for_retraining(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference="pi_disputed", status="succeeded")
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "payment_intent": "pi_disputed",
        "charge": "ch_1",
        "amount": 2599,
        "currency": "eur",
        "reason": "fraudulent",
        "status": "needs_response",
    }
    assert _post_stripe(client, stripe_event("charge.dispute.created", dispute)).status_code == 200

    [label] = _outcomes(database, merchant.id, payment.id)
    assert (label.type, label.reason, label.amount, label.external_id) == (
        "dispute",
        "fraudulent",
        2599,
        "stripe:dp_1",
    )
    assert label.type in outcomes.FRAUD_TYPES  # a positive example for the next retraining


def test_one_adyen_dispute_reported_twice_is_labelled_once(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, gateway="adyen", reference="PSP0003", status="succeeded")
    for code in ("NOTIFICATION_OF_CHARGEBACK", "CHARGEBACK"):
        item = adyen_item(
            event_code=code,
            psp_reference="DSP0003",
            original_reference="PSP0003",
            merchant_reference="x",
            value=2599,
            reason="Fraudulent transaction",
        )
        assert client.post("/v1/webhooks/adyen", content=adyen_body(item)).status_code == 200
    [label] = _outcomes(database, merchant.id, payment.id)
    assert (label.type, label.external_id) == ("dispute", "adyen:DSP0003")
    assert len(_inbound(database)) == 2


def test_stripe_refunds_add_up_and_a_full_refund_marks_the_payment(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference="pi_refund", status="succeeded")

    def refunded(total: int) -> bytes:
        charge = {
            "id": "ch_refund",
            "object": "charge",
            "payment_intent": "pi_refund",
            "amount": 2599,
            "amount_refunded": total,  # Stripe reports the running total
            "currency": "eur",
        }
        return stripe_event("charge.refunded", charge)

    assert _post_stripe(client, refunded(599)).status_code == 200
    assert reload(database, payment.id).status == "succeeded"
    assert _post_stripe(client, refunded(2599)).status_code == 200

    labels = _outcomes(database, merchant.id, payment.id)
    assert sorted(o.amount for o in labels) == [599, 2000]
    assert {o.type for o in labels} == {"refund"}
    assert reload(database, payment.id).status == "refunded"


def test_adyen_refund_is_recorded_with_its_own_amount(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, gateway="adyen", reference="PSP0004", status="succeeded")
    item = adyen_item(
        event_code="REFUND",
        psp_reference="RFD0004",
        original_reference="PSP0004",
        merchant_reference="rf_1",
        value=1000,
    )
    assert client.post("/v1/webhooks/adyen", content=adyen_body(item)).status_code == 200
    [label] = _outcomes(database, merchant.id, payment.id)
    assert (label.type, label.amount, label.external_id) == ("refund", 1000, "adyen:RFD0004")
    assert reload(database, payment.id).status == "succeeded"  # partly refunded


# --- isolation --------------------------------------------------------------------------------


def test_an_event_touches_only_its_own_merchant_and_gateway(
    client: TestClient,
    database: Database,
    make_merchant: Callable[..., Any],
    make_payment: Callable[..., Any],
) -> None:
    alice, bob = make_merchant("Alice"), make_merchant("Bob")
    alices = make_payment(alice.id, reference="pi_alice", status="succeeded")
    bobs = make_payment(bob.id, gateway="adyen", reference="pi_alice", status="succeeded")
    dispute = {"id": "dp_a", "payment_intent": "pi_alice", "amount": 2599, "currency": "eur"}

    assert _post_stripe(client, stripe_event("charge.dispute.created", dispute)).status_code == 200

    assert len(_outcomes(database, alice.id, alices.id)) == 1
    assert _outcomes(database, bob.id, bobs.id) == []  # same reference, other gateway
    with database.session() as db:
        per_merchant = db.execute(
            select(Outcome.merchant_id, func.count()).group_by(Outcome.merchant_id)
        )
        assert dict(per_merchant.tuples().all()) == {alice.id: 1}
    [stored] = _inbound(database)
    assert (stored.merchant_id, stored.payment_id) == (alice.id, alices.id)


def test_concurrent_deliveries_of_one_event_apply_it_once(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    payment = make_payment(merchant.id, reference="pi_race", status="succeeded")
    charge = {
        "id": "ch_race",
        "payment_intent": "pi_race",
        "amount_refunded": 700,
        "currency": "eur",
    }
    payload = stripe_event("charge.refunded", charge, event_id="evt_race")

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: _post_stripe(client, payload), range(8)))

    assert {r.status_code for r in responses} == {200}
    results = sorted(r.json()["results"][0] for r in responses)
    assert results.count("processed") == 1 and results.count("duplicate") == 7
    [label] = _outcomes(database, merchant.id, payment.id)
    assert label.amount == 700
    assert len(_inbound(database)) == 1


def test_a_second_success_in_a_paid_session_is_flagged_not_applied(
    client: TestClient,
    database: Database,
    merchant: Any,
    make_payment: Callable[..., Any],
    caplog: Any,
) -> None:
    first = make_payment(merchant.id, reference="pi_first", status="succeeded")
    second = make_payment(merchant.id, reference="pi_second", session_id=first.session_id)

    response = _post_stripe(client, stripe_event("payment_intent.succeeded", _intent("pi_second")))

    assert response.status_code == 200
    assert reload(database, second.id).status == "processing"
    [stored] = _inbound(database)
    assert stored.note == f"session already paid by {first.id}; refund needed"
    assert "refund needed" in caplog.text and second.id in caplog.text
    assert "pi_second" in caplog.text  # the reference to refund


def test_success_found_by_attempt_key_stores_the_reference_for_later_refunds(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    payment = make_payment(merchant.id, reference=None, key="cl_lost_answer")
    intent = _intent("pi_found_by_key", metadata={"idempotency_key": "cl_lost_answer"})
    assert _post_stripe(client, stripe_event("payment_intent.succeeded", intent)).status_code == 200
    assert reload(database, payment.id).gateway_reference == "pi_found_by_key"

    refund = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_found_by_key",
        "amount": 2599,
        "amount_refunded": 2599,
        "currency": "eur",
    }
    response = _post_stripe(client, stripe_event("charge.refunded", refund))
    assert response.status_code == 200 and response.json()["results"] == ["processed"]
    assert reload(database, payment.id).status == "refunded"


def test_a_webhook_locks_the_session_before_the_payment(
    client: TestClient, database: Database, merchant: Any, make_payment: Callable[..., Any]
) -> None:
    """Confirm, the challenge and the reconciler lock session then payment; a webhook taking
    them the other way round deadlocks against them on PostgreSQL."""
    from sqlalchemy import event

    payment = make_payment(merchant.id, reference="pi_locks")
    locks: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        text = " ".join(statement.split()).lower()
        if "for update" in text or text.startswith("update checkout_sessions"):
            target = text.split(" where ")[0]
            locks.append("session" if "checkout_sessions" in target else "payment")

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        response = _post_stripe(
            client, stripe_event("payment_intent.succeeded", _intent("pi_locks"))
        )
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    assert response.status_code == 200
    assert reload(database, payment.id).status == "succeeded"
    assert locks and locks[0] == "session", locks
