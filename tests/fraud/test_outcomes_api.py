"""Fraud labels through POST /v1/outcomes, and their effect on the next profile."""

from __future__ import annotations

import pytest


@pytest.fixture
def paid(new_checkout):
    checkout = new_checkout(customer="cus_label")
    payment = checkout.confirm(checkout.profile()["token"], key="k").json()
    assert payment["status"] == "succeeded"
    return checkout, payment


def test_record_dispute_is_idempotent_and_listed(client, merchant, paid) -> None:
    _, payment = paid
    body = {
        "payment_id": payment["id"],
        "type": "dispute",
        "reason": "fraudulent",
        "external_id": "dp_1",
        "occurred_at": "2026-11-20T10:00:00Z",
    }
    first = client.post("/v1/outcomes", json=body, headers=merchant.secret_headers)
    assert first.status_code == 201, first.text
    again = client.post("/v1/outcomes", json=body, headers=merchant.secret_headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    listed = client.get(f"/v1/outcomes?payment_id={payment['id']}", headers=merchant.secret_headers)
    assert [o["type"] for o in listed.json()] == ["dispute"]


def test_disputes_raise_the_next_profiles_risk(client, merchant, paid, new_checkout) -> None:
    _, payment = paid
    before = new_checkout(customer="cus_label").profile()["risk"]
    client.post(
        "/v1/outcomes",
        json={"payment_id": payment["id"], "type": "fraud_report"},
        headers=merchant.secret_headers,
    )
    after = new_checkout(customer="cus_label").profile()["risk"]
    assert after["risk_score"] > before["risk_score"]
    assert "previous_disputes" in after["reasons"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"payment_id": "pay_nope", "type": "dispute"}, 404, "payment_id"),
        ({"type": "dispute"}, 400, "payment_id"),
        ({"payment_id": "x", "type": "chargeback!"}, 400, "type"),
        ({"payment_id": "x", "type": "refund", "amount": -5}, 400, "amount"),
        (
            {"payment_id": "x", "type": "refund", "occurred_at": "2026-11-20T10:00:00"},
            400,
            "occurred_at",
        ),
    ],
)
def test_outcome_validation(client, merchant, body, status, param) -> None:
    response = client.post("/v1/outcomes", json=body, headers=merchant.secret_headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_outcomes_are_scoped_and_need_the_secret_key(client, merchant, make_merchant, paid) -> None:
    _, payment = paid
    other = make_merchant("Other")
    body = {"payment_id": payment["id"], "type": "dispute"}
    assert client.post("/v1/outcomes", json=body, headers=other.secret_headers).status_code == 404
    assert (
        client.post("/v1/outcomes", json=body, headers=merchant.public_headers).status_code == 403
    )


def test_refund_larger_than_payment_is_refused(client, merchant, paid) -> None:
    _, payment = paid
    response = client.post(
        "/v1/outcomes",
        json={"payment_id": payment["id"], "type": "refund", "amount": payment["amount"] + 1},
        headers=merchant.secret_headers,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "amount"
