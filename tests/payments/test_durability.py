"""No payment lost, none charged twice: the payment is durable before money moves, timed-out
3-D Secure completions are reconciled, 503s are not replayed, stale claims and unknown
outcomes are settled by reconciling (the review findings on issue 7)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from checkoutlab.db import utcnow
from checkoutlab.payments.gateways.base import GatewayResult
from checkoutlab.payments.models import IdempotencyRecord, Payment, PaymentAttempt
from checkoutlab.payments.reconciler import Reconciler
from checkoutlab.payments.routing import GatewayPool

from .test_confirm_api import challenge, payment_rows, shown
from .test_sessions_api import assert_error

LOST = GatewayResult(
    status="failed",
    decline_code="gateway_timeout",
    message="The payment provider did not answer in time.",
    retryable=True,
    outcome_unknown=True,
)


def _attempts(database: Any, payment_id: str) -> list[tuple[str, str]]:
    with database.session() as db:
        rows = db.scalars(
            select(PaymentAttempt)
            .where(PaymentAttempt.payment_id == payment_id)
            .order_by(PaymentAttempt.attempt_number)
        )
        return [(a.operation, a.result) for a in rows]


def _age(database: Any, payment_id: str, seconds: float) -> None:
    """Move a payment's last change into the past (its request is long over)."""
    with database.session() as db:
        payment = db.get(Payment, payment_id)
        assert payment is not None
        payment.updated_at = utcnow() - timedelta(seconds=seconds)
        payment.created_at = payment.updated_at
        db.commit()


# --- 1. a timed-out 3-D Secure completion is not a decline ------------------------------------


def test_timed_out_challenge_is_reconciled_not_declined(app, new_checkout, monkeypatch, database):
    gateway = app.state.gateway
    checkout = new_checkout()
    pending = checkout.confirm(checkout.profile()["token"], key="3ds", card="4000000000003220")
    payment_id = pending.json()["id"]
    monkeypatch.setattr(gateway, "complete_action", lambda **_: LOST)
    monkeypatch.setattr(gateway, "retrieve", lambda **_: LOST)  # still no answer

    response = challenge(checkout, payment_id, "succeeded")

    error = assert_error(response, 503, code="gateway_timeout")
    assert response.headers["Retry-After"]
    assert error["payment"]["status"] == "processing"
    [row] = payment_rows(database, checkout.id)
    assert row.status == "processing" and row.verification["outcome_unknown"] is True
    assert _attempts(database, payment_id)[-2:] == [
        ("complete", "unknown"),
        ("retrieve", "unknown"),
    ]
    # the shopper cannot pay again while it may have gone through
    again = checkout.confirm(checkout.profile()["token"], key="again")
    assert_error(again, 400, code="payment_in_progress")


def test_timed_out_challenge_that_went_through_is_settled_by_retrieve(
    app, new_checkout, monkeypatch, database
):
    gateway = app.state.gateway
    checkout = new_checkout()
    pending = checkout.confirm(checkout.profile()["token"], key="3ds", card="4000000000003220")
    payment_id, reference = pending.json()["id"], payment_rows(database, checkout.id)[0]
    real_complete = gateway.complete_action
    done: dict[str, GatewayResult] = {}

    def completes_but_answer_is_lost(**kwargs: Any) -> GatewayResult:
        done["result"] = real_complete(**kwargs)
        return LOST

    monkeypatch.setattr(gateway, "complete_action", completes_but_answer_is_lost)
    monkeypatch.setattr(gateway, "retrieve", lambda **_: done["result"])

    response = challenge(checkout, payment_id, "succeeded")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert reference.gateway_reference == payment_rows(database, checkout.id)[0].gateway_reference
    assert shown(checkout)["status"] == "succeeded"


def test_a_challenge_cannot_be_completed_twice_at_once(app, new_checkout, monkeypatch):
    gateway = app.state.gateway
    checkout = new_checkout()
    pending = checkout.confirm(checkout.profile()["token"], key="3ds", card="4000000000003220")
    payment_id = pending.json()["id"]
    entered, release = threading.Event(), threading.Event()
    real_complete = gateway.complete_action

    def slow(**kwargs: Any) -> GatewayResult:
        entered.set()
        release.wait(10)
        return real_complete(**kwargs)

    monkeypatch.setattr(gateway, "complete_action", slow)
    answers: list[Any] = []
    first = threading.Thread(
        target=lambda: answers.append(challenge(checkout, payment_id, "succeeded"))
    )
    first.start()
    assert entered.wait(10)
    second = challenge(checkout, payment_id, "succeeded")
    release.set()
    first.join(10)
    assert_error(second, 400, code="payment_unexpected_state")
    assert answers[0].json()["status"] == "succeeded"


# --- 2. durable before money moves ------------------------------------------------------------


def test_the_payment_is_committed_before_the_gateway_is_called(
    app, new_checkout, monkeypatch, database
):
    gateway = app.state.gateway
    checkout = new_checkout()
    seen: list[list[Payment]] = []
    real_charge = gateway.charge

    def charge(request: Any) -> GatewayResult:
        seen.append(payment_rows(database, checkout.id))  # another connection's view
        return real_charge(request)

    monkeypatch.setattr(gateway, "charge", charge)
    paid = checkout.confirm(checkout.profile()["token"], key="k")
    assert paid.status_code == 200, paid.text
    [[row]] = seen
    assert row.status == "processing" and row.verification["outcome_unknown"] is True
    assert row.verification["gateway_idempotency_key"].startswith("cl_")
    assert row.verification["route"] == ["sandbox"]
    [done] = payment_rows(database, checkout.id)
    assert done.status == "succeeded"
    assert "outcome_unknown" not in done.verification and "in_flight" not in done.verification


def test_a_crash_after_the_charge_leaves_a_payment_that_a_new_key_reconciles(
    app, new_checkout, monkeypatch, database
):
    """The widget retries with a new Idempotency-Key: it must not charge a second time."""
    from fastapi.testclient import TestClient

    from checkoutlab.payments import confirm as confirm_module

    gateway = app.state.gateway
    keys: list[str] = []
    real_charge = gateway.charge

    def charge(request: Any) -> GatewayResult:
        keys.append(request.idempotency_key)
        return real_charge(request)

    monkeypatch.setattr(gateway, "charge", charge)
    real_record = confirm_module._record

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("OOM-killed after the gateway charged")

    monkeypatch.setattr(confirm_module, "_record", crash)
    checkout = new_checkout()
    token = checkout.profile()["token"]
    with TestClient(app, raise_server_exceptions=False) as client:
        checkout.client = client
        assert checkout.confirm(token, key="first").status_code == 500
    monkeypatch.setattr(confirm_module, "_record", real_record)
    [row] = payment_rows(database, checkout.id)
    assert row.status == "processing" and row.verification["outcome_unknown"] is True
    _age(database, row.id, 60)  # the crashed request is surely over

    retry = checkout.confirm(token, key="second")

    assert_error(retry, 400, code="session_already_succeeded")
    [settled] = payment_rows(database, checkout.id)
    assert settled.status == "succeeded" and settled.verification.get("reconciled") is True
    assert shown(checkout)["status"] == "succeeded"
    # the retrieve re-sent the first attempt's key; no charge under another key
    assert set(keys) == {row.verification["gateway_idempotency_key"]}


def test_a_new_key_during_the_first_call_is_refused_not_charged(
    app, new_checkout, monkeypatch, database
):
    gateway = app.state.gateway
    checkout = new_checkout()
    token = checkout.profile()["token"]
    entered, release = threading.Event(), threading.Event()
    real_charge = gateway.charge
    charges: list[str] = []

    def slow(request: Any) -> GatewayResult:
        charges.append(request.idempotency_key)
        entered.set()
        release.wait(10)
        return real_charge(request)

    monkeypatch.setattr(gateway, "charge", slow)
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(checkout.confirm(token, key="a")))
    first.start()
    assert entered.wait(10)
    second = checkout.confirm(token, key="b")
    release.set()
    first.join(10)
    assert_error(second, 400, code="payment_in_progress")
    assert answers[0].status_code == 200 and len(charges) == 1
    # the refusal was transient, so it is not the key's stored answer
    again = checkout.confirm(token, key="b")
    assert_error(again, 400, code="session_already_succeeded")


def test_a_stale_idempotency_claim_is_taken_over_by_reconciling(
    app, new_checkout, monkeypatch, database
):
    from fastapi.testclient import TestClient

    from checkoutlab.payments import confirm as confirm_module
    from checkoutlab.payments import idempotency

    gateway = app.state.gateway
    keys: list[str] = []
    real_charge = gateway.charge

    def charge(request: Any) -> GatewayResult:
        keys.append(request.idempotency_key)
        return real_charge(request)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed between the charge and storing the answer")

    monkeypatch.setattr(gateway, "charge", charge)
    real_record, real_release = confirm_module._record, idempotency.release
    # the process dies after the charge: nothing releases or answers the claim
    monkeypatch.setattr(confirm_module, "_record", killed)
    monkeypatch.setattr(idempotency, "release", lambda **_: None)
    checkout = new_checkout()
    token = checkout.profile()["token"]
    with TestClient(app, raise_server_exceptions=False) as client:
        checkout.client = client
        assert checkout.confirm(token, key="same").status_code == 500
    monkeypatch.setattr(confirm_module, "_record", real_record)
    monkeypatch.setattr(idempotency, "release", real_release)
    with database.session() as db:
        record = db.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == "same"))
        assert record is not None and record.status_code is None
        record.created_at = utcnow() - timedelta(minutes=5)  # older than budget + grace
        db.commit()

    retry = checkout.confirm(token, key="same")

    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "succeeded"
    assert len(payment_rows(database, checkout.id)) == 1
    assert len(set(keys)) == 1  # reconciled under the first key, not charged under a new one


def test_a_503_is_not_replayed_the_same_key_reconciles(app, new_checkout, monkeypatch, database):
    gateway = app.state.gateway
    checkout = new_checkout()
    token = checkout.profile()["token"]
    real_charge = gateway.charge
    monkeypatch.setattr(gateway, "charge", lambda request: (real_charge(request), LOST)[1])
    monkeypatch.setattr(gateway, "retrieve", lambda **_: LOST)
    first = checkout.confirm(token, key="same")
    error = assert_error(first, 503, code="gateway_timeout")
    monkeypatch.undo()  # the provider answers again

    second = checkout.confirm(token, key="same")

    assert second.status_code == 200, second.text
    assert "Idempotent-Replayed" not in second.headers
    assert second.json()["id"] == error["payment"]["id"]
    assert second.json()["status"] == "succeeded"
    third = checkout.confirm(token, key="same")  # a 200 is stored and replayed
    assert third.headers["Idempotent-Replayed"] == "true"


# --- the reconciler ---------------------------------------------------------------------------


def _reconciler(app: Any, database: Any, settings: Any) -> Reconciler:
    pool: GatewayPool = app.state.gateway_pool.replacing(app.state.gateway)
    return Reconciler(database, settings, pool=pool)


def test_reconciler_settles_a_forgotten_payment_that_charged(
    app, new_checkout, monkeypatch, database, settings
):
    gateway = app.state.gateway
    checkout = new_checkout()
    real_charge = gateway.charge
    monkeypatch.setattr(gateway, "charge", lambda request: (real_charge(request), LOST)[1])
    monkeypatch.setattr(gateway, "retrieve", lambda **_: LOST)
    assert_error(checkout.confirm(checkout.profile()["token"], key="k"), 503)
    monkeypatch.undo()
    [row] = payment_rows(database, checkout.id)
    reconciler = _reconciler(app, database, settings)
    assert reconciler.run_once() == 0  # too young: its request may still be running

    _age(database, row.id, 600)
    assert reconciler.run_once() == 1

    [settled] = payment_rows(database, checkout.id)
    assert settled.status == "succeeded" and settled.gateway_reference
    assert shown(checkout)["status"] == "succeeded"
    assert reconciler.run_once() == 0


def test_reconciler_fails_a_payment_the_gateway_does_not_know(
    app, new_checkout, monkeypatch, database, settings
):
    from checkoutlab.errors import NotFound

    gateway = app.state.gateway
    checkout = new_checkout()
    monkeypatch.setattr(gateway, "charge", lambda request: LOST)
    monkeypatch.setattr(gateway, "retrieve", lambda **_: LOST)
    assert_error(checkout.confirm(checkout.profile()["token"], key="k"), 503)

    def not_found(**_: Any) -> GatewayResult:
        raise NotFound("No such payment at the gateway")

    monkeypatch.setattr(gateway, "retrieve", not_found)
    [row] = payment_rows(database, checkout.id)
    _age(database, row.id, 600)
    assert _reconciler(app, database, settings).run_once() == 1
    [settled] = payment_rows(database, checkout.id)
    assert settled.status == "failed" and "outcome_unknown" not in settled.verification
    assert shown(checkout)["status"] == "open"  # the shopper may pay again


def test_worker_runs_the_reconciler() -> None:
    import inspect

    from checkoutlab import cli

    assert "Reconciler(" in inspect.getsource(cli.worker)


# --- 8. money moved for a session paid meanwhile: a loud "refund needed" ----------------------


def _paid_elsewhere(database: Any, session_id: str, merchant_id: str) -> str:
    """Another payment of the session succeeds (e.g. a webhook of an earlier attempt)."""
    from checkoutlab.db import new_id
    from checkoutlab.payments.models import CheckoutSession

    with database.session() as db:
        payment = Payment(
            id=new_id("pay"),
            merchant_id=merchant_id,
            session_id=session_id,
            status="succeeded",
            amount=2599,
            currency="EUR",
            method_type="card",
            gateway="sandbox",
            gateway_reference="ref_elsewhere",
            verification={},
        )
        db.add(payment)
        checkout = db.get(CheckoutSession, session_id)
        assert checkout is not None
        checkout.status = "succeeded"
        db.commit()
        return payment.id


@pytest.mark.parametrize("race_past_the_check", [False, True])
def test_success_for_an_already_paid_session_logs_refund_needed(
    app, new_checkout, monkeypatch, database, merchant, caplog, race_past_the_check
):
    from checkoutlab.payments import settlement

    gateway = app.state.gateway
    checkout = new_checkout()
    real_charge = gateway.charge
    other: list[str] = []

    def charge(request: Any) -> GatewayResult:
        result = real_charge(request)
        other.append(_paid_elsewhere(database, checkout.id, merchant.id))
        return result

    monkeypatch.setattr(gateway, "charge", charge)
    if race_past_the_check:  # only the partial unique index notices
        monkeypatch.setattr(settlement.sessions, "payments_of", lambda **_: [])

    response = checkout.confirm(checkout.profile()["token"], key="k")

    assert_error(response, 400, code="session_already_succeeded")
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "refund needed" in r.message]
    assert len(errors) == 1, caplog.text
    mine = next(p for p in payment_rows(database, checkout.id) if p.id != other[0])
    assert mine.id in errors[0].message
    assert "4242" not in caplog.text  # no card data
