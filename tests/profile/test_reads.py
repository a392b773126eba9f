"""The decision path's one-statement reads agree with the functions they replace."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from checkoutlab.db import Database, new_id, utcnow
from checkoutlab.experiments import assignment
from checkoutlab.fraud.models import Outcome
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.schemas import MerchantConfig
from checkoutlab.payments import sessions
from checkoutlab.payments.models import CheckoutSession, Payment
from checkoutlab.payments.schemas import CheckoutSessionCreate, InventoryLevel
from checkoutlab.profile.history import purchase_history
from checkoutlab.profile.reads import MAX_SKUS_INLINE, checkout_reads


def _payment(db: Any, merchant_id: str, customer: str | None, **fields: Any) -> Payment:
    at = fields.pop("at", utcnow())
    checkout = CheckoutSession(
        id=new_id("cs"), merchant_id=merchant_id, client_secret=new_id("s"),
        amount=fields.get("amount", 1000), currency=fields.get("currency", "EUR"),
        line_items=[], customer_ref=customer, loyalty_balance=0, status="succeeded",
        metadata_={}, created_at=at, expires_at=at,
    )  # fmt: skip
    payment = Payment(
        id=new_id("pay"), merchant_id=merchant_id, session_id=fields.pop("session_id", checkout.id),
        customer_ref=customer, status=fields.pop("status", "succeeded"),
        amount=fields.pop("amount", 1000), currency=fields.pop("currency", "EUR"),
        method_type=fields.pop("method_type", "card"), gateway="sandbox", created_at=at,
        updated_at=at,
    )  # fmt: skip
    db.add_all([checkout, payment])
    db.flush()
    return payment


def _checkout(db: Any, merchant_id: str, *, customer: str | None, skus: list[str]) -> Any:
    data = CheckoutSessionCreate(
        amount=2500,
        currency="EUR",
        customer=customer,
        line_items=[{"sku": sku, "quantity": 1 + i % 3} for i, sku in enumerate(skus)],
    )
    return sessions.create(db=db, merchant_id=merchant_id, data=data, default_ttl_seconds=3600)


def _expected(db: Any, checkout: Any) -> dict[str, Any]:
    return {
        "history": purchase_history(
            db=db,
            merchant_id=checkout.merchant_id,
            customer_ref=checkout.customer_ref,
            currency=checkout.currency,
        ),
        "failed": sum(
            1 for p in sessions.payments_of(db=db, checkout=checkout) if p.status == "failed"
        ),
        "experiments": bool(assignment.running(db, checkout.merchant_id)),
        "stock": sessions.stock_lines(db=db, checkout=checkout),
    }


@pytest.mark.parametrize("sku_count", [0, 3, MAX_SKUS_INLINE, MAX_SKUS_INLINE + 5])
@pytest.mark.parametrize("customer", [None, "cus_1", "cus_new"])
def test_checkout_reads_match_the_separate_queries(
    database: Database, customer: str | None, sku_count: int
) -> None:
    with database.session() as db:
        mine = merchants.create(db=db, name="mine", config=MerchantConfig()).merchant_id
        other = merchants.create(db=db, name="other", config=MerchantConfig()).merchant_id
        old = utcnow() - timedelta(days=3)
        _payment(db, mine, "cus_1", amount=1000, method_type="ideal", at=old)
        last = _payment(db, mine, "cus_1", amount=3000, method_type="klarna")
        _payment(db, mine, "cus_1", amount=500, currency="USD", at=old)  # not in the EUR average
        _payment(db, mine, "cus_1", status="failed", amount=99999)
        _payment(db, other, "cus_1", amount=70000)  # same ref at another merchant
        for kind in ("dispute", "fraud_report", "dispute"):
            db.add(
                Outcome(id=new_id("out"), merchant_id=mine, payment_id=last.id, type=kind,
                        external_id=new_id("x"), occurred_at=utcnow(), reported_at=utcnow())
            )  # fmt: skip
        skus = [f"sku-{i}" for i in range(sku_count)]
        sessions.set_inventory(
            db=db,
            merchant_id=mine,
            levels=[InventoryLevel(sku=sku, quantity=i) for i, sku in enumerate(skus[::2])],
        )
        checkout = _checkout(db, mine, customer=customer, skus=skus)
        _payment(db, mine, customer, status="failed", session_id=checkout.id)
        _payment(db, mine, customer, status="failed", session_id=checkout.id)
        db.commit()

        reads = checkout_reads(db=db, checkout=checkout)
        expected = _expected(db, checkout)
    assert reads.history == expected["history"]
    assert reads.failed_attempts == expected["failed"] == 2
    assert reads.experiments_running is expected["experiments"] is False
    assert reads.stock_lines() == expected["stock"]
    if customer == "cus_1":
        assert reads.history.payments_count == 3
        assert reads.history.average_amount == pytest.approx(2000.0)
        assert reads.history.disputes == 1  # distinct payments with a fraud outcome
        assert reads.history.last_method == "klarna"


def test_checkout_reads_see_a_running_experiment(database: Database, client: Any) -> None:
    with database.session() as db:
        mid = merchants.create(db=db, name="m", config=MerchantConfig()).merchant_id
        checkout = _checkout(db, mid, customer=None, skus=[])
        assert checkout_reads(db=db, checkout=checkout).experiments_running is False
        from checkoutlab.experiments import service as experiments
        from checkoutlab.experiments.schemas import ExperimentCreate

        experiment = experiments.create(
            db=db,
            merchant_id=mid,
            data=ExperimentCreate.model_validate(
                {"key": "e1", "variants": [{"key": "a", "control": True}, {"key": "b"}]}
            ),
        )
        assert checkout_reads(db=db, checkout=checkout).experiments_running is False  # draft
        experiments.start(db=db, experiment=experiment)
        assert checkout_reads(db=db, checkout=checkout).experiments_running is True
        experiments.stop(db=db, experiment=experiment)
        assert checkout_reads(db=db, checkout=checkout).experiments_running is False


def test_cached_config_follows_the_stored_config(database: Database) -> None:
    with database.session() as db:
        created = merchants.create(db=db, name="m", config=MerchantConfig(layout="list"))
        merchant = merchants.get(db=db, merchant_id=created.merchant_id)
        first = merchants.cached_config_of(merchant)
        assert first == merchants.config_of(merchant)
        assert merchants.cached_config_of(merchant) is first  # equal JSON: reused
        rule = {"when": "amount.value > 100", "then": {"require": ["cvv"]}}
        merchants.set_config(
            db=db,
            merchant_id=merchant.id,
            config=MerchantConfig(layout="accordion", rules=[rule]),
        )
        changed = merchants.cached_config_of(merchants.get(db=db, merchant_id=merchant.id))
    assert changed.layout == "accordion" and len(changed.rules) == 1
    assert first.layout == "list"  # the instance handed out earlier is not modified
