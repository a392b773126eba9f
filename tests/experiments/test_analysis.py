"""Analysis on seeded decisions, events, payments and outcomes (written directly)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from checkoutlab.db import Database
from checkoutlab.events.models import Event
from checkoutlab.experiments import service, stats
from checkoutlab.experiments.analysis import analyze, analyze_experiment
from checkoutlab.experiments.schemas import ExperimentCreate
from checkoutlab.fraud.models import Outcome
from checkoutlab.payments.models import CheckoutSession, Payment
from checkoutlab.profile.models import Decision

DAY0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _experiment(
    db: Any, merchant_id: str, weights: tuple[float, float] = (1, 1), **extra: Any
) -> Any:
    experiment = service.create(
        db=db,
        merchant_id=merchant_id,
        data=ExperimentCreate.model_validate(
            {
                "key": "cta_copy",
                "seed": "s",
                "variants": [
                    {"key": "control", "control": True, "weight": weights[0]},
                    {"key": "treatment", "weight": weights[1]},
                ],
            }
            | extra
        ),
    )
    return service.start(db=db, experiment=experiment)


def seed(
    db: Any,
    merchant_id: str,
    variant: str,
    converted: np.ndarray,
    amounts: np.ndarray,
    *,
    prefix: str,
    days: int = 3,
    rendered: bool = True,
    declines: np.ndarray | None = None,
    frauds: np.ndarray | None = None,
    customers: list[str] | None = None,
    probability: float = 0.5,
) -> None:
    """One session per unit (a guest, or ``customers[i]``), rendered, with a succeeded payment
    when converted."""
    n = len(converted)
    sessions, decisions, events, payments, outcomes = [], [], [], [], []
    for i in range(n):
        sid, did = f"cs_{prefix}{i}", f"prof_{prefix}{i}"
        customer = customers[i] if customers is not None else None
        at = DAY0 + timedelta(days=i % days, minutes=i % 50)
        sessions.append(
            {
                "id": sid,
                "merchant_id": merchant_id,
                "client_secret": "x",
                "amount": int(amounts[i]),
                "currency": "EUR",
                "line_items": [],
                "customer_ref": customer,
                "loyalty_balance": 0,
                "status": "open",
                "metadata": {},
                "created_at": at,
                "expires_at": at + timedelta(hours=1),
            }
        )
        decisions.append(
            {
                "id": did,
                "merchant_id": merchant_id,
                "session_id": sid,
                "customer_ref": customer,
                "context": {},
                "features": {},
                "risk_score": 0.01,
                "risk_level": "normal",
                "model": "rules",
                "model_version": "1",
                "policy": "merchant_order",
                "policy_version": "1",
                "propensity": 1.0,
                "ordering": ["card"],
                "experiment_key": "cta_copy",
                "variant": variant,
                "assignment_probability": probability,
                "verification": {},
                "profile": {},
                "created_at": at,
                "expires_at": at + timedelta(hours=1),
            }
        )
        if rendered:
            events.append(
                {
                    "merchant_id": merchant_id,
                    "type": "elements_rendered",
                    "session_id": sid,
                    "decision_id": did,
                    "occurred_at": at,
                    "received_at": at,
                    "source": "server",
                    "properties": {},
                }
            )
        attempts = [] if declines is None else ["failed"] * int(declines[i])
        if converted[i]:
            attempts.append("succeeded")
        for j, status in enumerate(attempts):
            pid = f"pay_{prefix}{i}_{j}"
            payments.append(
                {
                    "id": pid,
                    "merchant_id": merchant_id,
                    "session_id": sid,
                    "decision_id": did,
                    "customer_ref": customer,
                    "status": status,
                    "amount": int(amounts[i]),
                    "currency": "EUR",
                    "method_type": "card",
                    "gateway": "sandbox",
                    "verification": {},
                    "next_action": None,
                    "created_at": at + timedelta(seconds=60),
                    "updated_at": at + timedelta(seconds=60),
                }
            )
            if status == "succeeded" and frauds is not None and frauds[i]:
                outcomes.append(
                    {
                        "id": f"out_{prefix}{i}",
                        "merchant_id": merchant_id,
                        "payment_id": pid,
                        "type": "fraud_report",
                        "external_id": "",
                        "occurred_at": at,
                        "reported_at": at,
                    }
                )
    for model, rows in (
        (CheckoutSession, sessions),
        (Decision, decisions),
        (Event, events),
        (Payment, payments),
        (Outcome, outcomes),
    ):
        if rows:
            db.execute(model.__table__.insert(), rows)
    db.commit()


def test_per_variant_metrics_lift_and_interval(database: Database, merchant: Any) -> None:
    rng = np.random.default_rng(7)
    n = 3000
    p_control, p_treatment = 0.30, 0.36  # true relative lift 0.2
    conv_c = rng.random(n) < p_control
    conv_t = rng.random(n) < p_treatment
    amounts_c = rng.integers(1000, 9000, n)
    amounts_t = rng.integers(1000, 9000, n)
    with database.session() as db:
        experiment = _experiment(db, merchant.id)
        seed(db, merchant.id, "control", conv_c, amounts_c, prefix="c")
        seed(db, merchant.id, "treatment", conv_t, amounts_t, prefix="t")
        # served but never rendered: not an exposure
        seed(
            db,
            merchant.id,
            "treatment",
            np.ones(50, bool),
            amounts_t[:50],
            prefix="x",
            rendered=False,
        )
        result = analyze_experiment(db=db, experiment=experiment)

    control, treatment = result.variants
    assert (control.units, treatment.units) == (n, n)
    assert control.metrics["conversion"] == pytest.approx(conv_c.mean())
    assert treatment.metrics["conversion"] == pytest.approx(conv_t.mean())
    revenue_c = (amounts_c * conv_c).astype(float)
    assert control.metrics["revenue_per_session"] == pytest.approx(revenue_c.mean())
    assert control.metrics["average_order_value"] == pytest.approx(amounts_c[conv_c].mean())

    conversion = result.comparison("conversion", "treatment")
    expected = stats.frequentist(
        stats.Aggregate.from_samples(conv_c.astype(float), denominator=np.ones(n)),
        stats.Aggregate.from_samples(conv_t.astype(float), denominator=np.ones(n)),
    )
    assert conversion.lift == pytest.approx(expected.lift)
    assert conversion.ci == pytest.approx(expected.ci)
    assert conversion.p_value == pytest.approx(expected.p_value)
    assert conversion.ci[0] < 0.2 < conversion.ci[1]  # covers the true lift
    assert conversion.significant and conversion.chance_to_win > 0.99
    assert conversion.adjusted_p_value >= conversion.p_value
    assert result.srm.mismatch is False
    assert {g.metric for g in result.guardrails} == {"fraud_rate", "decline_rate", "time_to_pay"}

    # daily cumulative conversion: the last day of each variant is the whole experiment
    days = sorted({p.date for p in result.timeseries})
    assert days == ["2026-11-20", "2026-11-21", "2026-11-22"]
    last = {p.variant: p for p in result.timeseries if p.date == days[-1]}
    assert last["control"].cumulative_sessions == n
    assert last["control"].cumulative_conversion == pytest.approx(conv_c.mean())
    first = next(p for p in result.timeseries if p.date == days[0] and p.variant == "control")
    assert first.sessions == first.cumulative_sessions == n // 3

    frame = result.summary()
    assert frame.loc[("conversion", "treatment"), "lift"] == pytest.approx(expected.lift)
    figure = result.plot()
    assert len(figure.axes) == 2
    body = result.to_dict()
    assert body["srm"]["observed"] == {"control": n, "treatment": n}


def test_srm_flags_a_broken_split(database: Database, merchant: Any) -> None:
    with database.session() as db:
        experiment = _experiment(db, merchant.id)
        seed(db, merchant.id, "control", np.zeros(600, bool), np.full(600, 100), prefix="c")
        seed(db, merchant.id, "treatment", np.zeros(480, bool), np.full(480, 100), prefix="t")
        result = analyze_experiment(db=db, experiment=experiment)
    assert result.srm.mismatch is True and result.srm.p_value < 0.001
    assert result.srm.expected == {"control": 540.0, "treatment": 540.0}


def test_guardrails_fail_when_declines_and_fraud_rise(database: Database, merchant: Any) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    with database.session() as db:
        experiment = _experiment(db, merchant.id)
        seed(
            db,
            merchant.id,
            "control",
            rng.random(n) < 0.5,
            np.full(n, 2000),
            prefix="c",
            declines=(rng.random(n) < 0.05).astype(int),
            frauds=rng.random(n) < 0.01,
        )
        seed(
            db,
            merchant.id,
            "treatment",
            rng.random(n) < 0.5,
            np.full(n, 2000),
            prefix="t",
            declines=(rng.random(n) < 0.25).astype(int),
            frauds=rng.random(n) < 0.01,
        )
        result = analyze_experiment(db=db, experiment=experiment)
    status = {g.metric: g.status for g in result.guardrails}
    assert status["decline_rate"] == "failing"
    assert status["fraud_rate"] in ("ok", "warning")
    assert status["time_to_pay"] != "failing"  # 60 s in both variants
    treatment = result.variants[1]
    assert treatment.metrics["time_to_pay"] == pytest.approx(60.0, abs=0.01)


def test_analyze_by_key_for_notebooks(database: Database, merchant: Any) -> None:
    with database.session() as db:
        _experiment(db, merchant.id)
        seed(db, merchant.id, "control", np.arange(40) % 3 == 0, np.full(40, 500), prefix="c")
        seed(db, merchant.id, "treatment", np.arange(40) % 2 == 0, np.full(40, 500), prefix="t")
    result = analyze("cta_copy", database=database)
    assert [v.units for v in result.variants] == [40, 40]
    assert analyze("cta_copy", database=database, merchant_id=merchant.id).key == "cta_copy"
    assert result.cuped == []  # only on request
    adjusted = analyze("cta_copy", database=database, cuped=True).cuped
    assert [c.variant for c in adjusted] == ["treatment"] and adjusted[0].theta == 0.0


def history(
    db: Any,
    merchant_id: str,
    customers: list[str],
    sessions: np.ndarray,
    conversions: np.ndarray,
    *,
    before: datetime,
    prefix: str,
) -> None:
    """Checkout sessions (not in any experiment) per customer, ``conversions[i]`` of them paid."""
    rows, payments = [], []
    for i, customer in enumerate(customers):
        for j in range(int(sessions[i])):
            sid = f"cs_{prefix}{i}_{j}"
            at = before - timedelta(days=1 + j)
            rows.append(
                {
                    "id": sid,
                    "merchant_id": merchant_id,
                    "client_secret": "x",
                    "amount": 1000,
                    "currency": "EUR",
                    "line_items": [],
                    "customer_ref": customer,
                    "loyalty_balance": 0,
                    "status": "open",
                    "metadata": {},
                    "created_at": at,
                    "expires_at": at + timedelta(hours=1),
                }
            )
            if j < conversions[i]:
                payments.append(
                    {
                        "id": f"pay_{prefix}{i}_{j}",
                        "merchant_id": merchant_id,
                        "session_id": sid,
                        "decision_id": None,
                        "customer_ref": customer,
                        "status": "succeeded",
                        "amount": 1000,
                        "currency": "EUR",
                        "method_type": "card",
                        "gateway": "sandbox",
                        "verification": {},
                        "next_action": None,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
    db.execute(CheckoutSession.__table__.insert(), rows)
    if payments:
        db.execute(Payment.__table__.insert(), payments)
    db.commit()


def test_cuped_uses_pre_experiment_conversion_and_narrows_the_interval(
    database: Database, merchant: Any, make_merchant: Any
) -> None:
    rng = np.random.default_rng(11)
    n = 1500
    start = DAY0 - timedelta(hours=1)
    # each customer has a stable propensity: their history predicts their conversion
    propensity = {v: rng.beta(0.5, 0.8, n) for v in ("control", "treatment")}
    lift = {"control": 0.0, "treatment": 0.04}
    data = {}
    other = make_merchant("Other Shop")
    with database.session() as db:
        experiment = _experiment(db, merchant.id)
        experiment.started_at = start
        db.commit()
        for v, p in propensity.items():
            customers = [f"{v}-{i}" for i in range(n)]
            pre_sessions = rng.integers(0, 12, n)  # some customers are new (no history)
            pre_conversions = rng.binomial(pre_sessions, p)
            history(
                db, merchant.id, customers, pre_sessions, pre_conversions, before=start, prefix=v
            )
            converted = rng.random(n) < np.clip(p + lift[v], 0, 1)
            seed(
                db, merchant.id, v, converted, np.full(n, 1000), prefix=f"e{v}", customers=customers
            )
            x = np.divide(pre_conversions, pre_sessions, out=np.zeros(n), where=pre_sessions > 0)
            data[v] = (converted.astype(float), x)
        # not history: the same customers' later sessions, and another merchant's sessions
        later = DAY0 + timedelta(days=5)
        history(
            db, merchant.id, ["control-0"], np.array([3]), np.array([3]), before=later, prefix="l"
        )
        history(db, other.id, ["control-1"], np.array([4]), np.array([4]), before=start, prefix="o")
        result = analyze_experiment(db=db, experiment=experiment, cuped=True)

    control = stats.Aggregate.from_samples(data["control"][0], covariate=data["control"][1])
    treatment = stats.Aggregate.from_samples(data["treatment"][0], covariate=data["treatment"][1])
    adjusted_c, adjusted_t = stats.cuped(control, treatment)
    expected = stats.frequentist(adjusted_c, adjusted_t)
    plain = stats.frequentist(control, treatment)
    (cuped,) = result.cuped
    assert cuped.variant == "treatment" and cuped.metric == "conversion"
    assert cuped.theta == pytest.approx(adjusted_c.theta)
    assert cuped.lift == pytest.approx(expected.lift)
    assert cuped.ci == pytest.approx(expected.ci)
    assert cuped.p_value == pytest.approx(expected.p_value)
    assert cuped.unadjusted_ci == pytest.approx(plain.ci)
    # one session per unit: the per-unit metric is the primary comparison, unadjusted
    assert cuped.unadjusted_lift == pytest.approx(result.comparison("conversion", "treatment").lift)
    width = cuped.ci[1] - cuped.ci[0]
    assert width < 0.9 * (cuped.unadjusted_ci[1] - cuped.unadjusted_ci[0])
    assert cuped.variance_reduction > 0.25
    frame = result.summary()
    assert frame.loc[("conversion", "treatment"), "cuped_lift"] == pytest.approx(expected.lift)
    assert np.isnan(frame.loc[("revenue_per_session", "treatment"), "cuped_lift"])
    assert result.to_dict()["cuped"][0]["theta"] == pytest.approx(adjusted_c.theta)
    assert len(result.plot().axes) == 2


def test_cuped_before_start_reports_no_adjustment(database: Database, merchant: Any) -> None:
    with database.session() as db:
        experiment = service.create(
            db=db,
            merchant_id=merchant.id,
            data=ExperimentCreate.model_validate(
                {"key": "draft", "variants": [{"key": "a", "control": True}, {"key": "b"}]}
            ),
        )
        result = analyze_experiment(db=db, experiment=experiment, cuped=True)
    assert [c.error for c in result.cuped] == ["no exposures yet"]


def test_bandit_srm_expects_the_logged_probabilities_not_the_weights(
    database: Database, merchant: Any
) -> None:
    """A bandit that sent 90 % of units to the treatment is no sample ratio mismatch; the
    same counts with the probabilities saying 50/50 are."""
    zeros = np.zeros
    with database.session() as db:
        experiment = _experiment(db, merchant.id, allocation={"type": "bandit"})
        seed(
            db,
            merchant.id,
            "control",
            zeros(100, bool),
            np.full(100, 1),
            prefix="c",
            probability=0.1,
        )
        seed(
            db,
            merchant.id,
            "treatment",
            zeros(900, bool),
            np.full(900, 1),
            prefix="t",
            probability=0.9,
        )
        fine = analyze_experiment(db=db, experiment=experiment).srm
        assert fine.mismatch is False and fine.p_value > 0.5
        assert fine.expected == pytest.approx({"control": 100.0, "treatment": 900.0})
        assert "bandit" in fine.note
        # a unit that got the treatment with probability 0.5 expects the control as often
        db.execute(Decision.__table__.update().values(assignment_probability=0.5))
        db.commit()
        broken = analyze_experiment(db=db, experiment=experiment).srm
    assert broken.mismatch is True
    assert broken.expected == pytest.approx({"control": 500.0, "treatment": 500.0})
