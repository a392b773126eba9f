"""Experiment analysis: per-variant aggregates by SQL, then the stats engine.

Exposure is a served decision whose form was rendered (an ``elements_rendered`` server event
or the widget's ``exposure`` event for that decision). The randomisation unit is the customer
(or the session for guests), so every metric is a ratio of per-unit sums analysed with the
delta method, and the SQL computes, per variant, ``n`` and the sums, sums of squares and cross
products of each numerator and denominator — one GROUP BY over decisions joined to payments,
events and fraud outcomes; nothing loops over events in Python.

Metrics (per unit: sessions, conversions, revenue, declines, attempts, frauds, seconds):

- ``conversion`` (primary): converted sessions / exposed sessions;
- ``revenue_per_session``: succeeded amount (minor units) / exposed sessions;
- ``average_order_value``: succeeded amount / converted sessions;
- ``fraud_rate`` (guardrail): succeeded payments reported as fraud or disputed / conversions;
- ``decline_rate`` (guardrail): failed payment attempts / attempts;
- ``time_to_pay`` (guardrail): seconds from first exposure to success / conversions.

CUPED (``cuped=True``): the primary metric as a per-unit mean (each unit's conversion rate over
its exposed sessions) adjusted by the unit's pre-experiment conversion rate (its sessions with
the merchant created before the experiment started), with the CUPED functions of
:mod:`checkoutlab.experiments.stats`; the SQL returns the six sums per variant.

Use :func:`analyze` in notebooks::

    from checkoutlab.experiments import analyze
    result = analyze("one_page_checkout")
    result.summary()          # pandas DataFrame
    result.plot()             # matplotlib Figure
    analyze("one_page_checkout", cuped=True).cuped   # variance-reduced primary metric
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Float, and_, case, cast, exists, func, select
from sqlalchemy.orm import Session

from checkoutlab.db import utcnow
from checkoutlab.events.models import Event
from checkoutlab.experiments import stats
from checkoutlab.experiments.models import Experiment
from checkoutlab.experiments.schemas import INVERSE_METRICS, Allocation, Metrics, Variant
from checkoutlab.fraud.models import Outcome
from checkoutlab.payments.models import CheckoutSession, Payment
from checkoutlab.profile.models import Decision

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from checkoutlab.db import Database

EXPOSURE_EVENTS = ("elements_rendered", "exposure")
FRAUD_OUTCOMES = ("fraud_report", "dispute")
# metric -> (numerator, denominator) of per-unit sums
METRIC_PARTS: dict[str, tuple[str, str]] = {
    "conversion": ("conversions", "sessions"),
    "revenue_per_session": ("revenue", "sessions"),
    "average_order_value": ("revenue", "conversions"),
    "fraud_rate": ("frauds", "conversions"),
    "decline_rate": ("declines", "attempts"),
    "time_to_pay": ("seconds", "conversions"),
}
UNIT_COLUMNS = ("sessions", "conversions", "revenue", "declines", "attempts", "frauds", "seconds")


# --------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------


def _seconds_between(dialect: str, start: Any, end: Any) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _session_level(db: Session, experiment: Experiment) -> Any:
    """One row per exposed (unit, variant, session) with that session's outcomes.

    Every join is keyed by an indexed column (events.decision_id, payments.session_id,
    outcomes.payment_id), so the plan stays linear even when table statistics are stale.
    """
    d, p, e, o = Decision.__table__, Payment.__table__, Event.__table__, Outcome.__table__
    merchant_id = experiment.merchant_id
    rendered = exists().where(e.c.decision_id == d.c.id, e.c.type.in_(EXPOSURE_EVENTS))
    unit = func.coalesce(d.c.customer_ref, d.c.session_id)
    exposed = (
        select(
            unit.label("unit"),
            d.c.variant,
            d.c.session_id,
            func.min(d.c.created_at).label("exposed_at"),
            func.max(d.c.assignment_probability).label("probability"),
        )
        .where(
            d.c.merchant_id == merchant_id,
            d.c.experiment_key == experiment.key,
            d.c.variant.is_not(None),
            rendered,
        )
        .group_by(unit, d.c.variant, d.c.session_id)
        .subquery("exposed")
    )
    # A payment reported as fraud or disputed, once however many reports it has.
    fraudulent = (
        select(o.c.payment_id)
        .where(o.c.merchant_id == merchant_id, o.c.type.in_(FRAUD_OUTCOMES))
        .group_by(o.c.payment_id)
        .subquery("fraudulent")
    )
    succeeded = p.c.status == "succeeded"
    per_session = (
        select(
            exposed.c.unit,
            exposed.c.variant,
            exposed.c.session_id,
            exposed.c.exposed_at,
            exposed.c.probability,
            func.coalesce(func.max(case((succeeded, 1), else_=0)), 0).label("converted"),
            func.coalesce(func.sum(case((succeeded, p.c.amount), else_=0)), 0).label("revenue"),
            func.coalesce(func.sum(case((p.c.status == "failed", 1), else_=0)), 0).label(
                "declines"
            ),
            func.count(p.c.id).label("attempts"),
            func.count(fraudulent.c.payment_id).label("frauds"),
            func.min(case((succeeded, p.c.created_at))).label("paid_at"),
        )
        .select_from(
            # session ids belong to one merchant: the decisions filter scopes the payments
            exposed.outerjoin(p, p.c.session_id == exposed.c.session_id).outerjoin(
                fraudulent, and_(fraudulent.c.payment_id == p.c.id, succeeded)
            )
        )
        .group_by(
            exposed.c.unit,
            exposed.c.variant,
            exposed.c.session_id,
            exposed.c.exposed_at,
            exposed.c.probability,
        )
        .subquery("per_session")
    )
    dialect = db.get_bind().dialect.name
    seconds = case(
        (
            per_session.c.converted == 1,
            _seconds_between(dialect, per_session.c.exposed_at, per_session.c.paid_at),
        ),
        else_=0.0,
    )
    return select(
        per_session.c.unit,
        per_session.c.variant,
        per_session.c.session_id,
        per_session.c.exposed_at,
        per_session.c.probability,
        per_session.c.converted,
        cast(per_session.c.revenue, Float).label("revenue"),
        per_session.c.declines,
        per_session.c.attempts,
        per_session.c.frauds,
        cast(seconds, Float).label("seconds"),
    ).cte("sess")


def _unit_level(db: Session, experiment: Experiment) -> Any:
    """One row per (unit, variant) with the unit's sums of every metric part."""
    sess = _session_level(db, experiment)
    return (
        select(
            sess.c.unit,
            sess.c.variant,
            cast(func.count(), Float).label("sessions"),
            cast(func.sum(sess.c.converted), Float).label("conversions"),
            cast(func.sum(sess.c.revenue), Float).label("revenue"),
            cast(func.sum(sess.c.declines), Float).label("declines"),
            cast(func.sum(sess.c.attempts), Float).label("attempts"),
            cast(func.sum(sess.c.frauds), Float).label("frauds"),
            cast(func.sum(sess.c.seconds), Float).label("seconds"),
            func.max(sess.c.probability).label("probability"),
        )
        .group_by(sess.c.unit, sess.c.variant)
        .cte("units")
    )


def variant_sums(db: Session, experiment: Experiment) -> dict[str, dict[str, float]]:
    """Per variant: ``n`` units and, for each metric's numerator ``x`` and denominator ``y``,
    ``sum_x``, ``sq_x`` and ``cross_x_y`` — all computed by the database."""
    units = _unit_level(db, experiment)
    columns: list[Any] = [
        units.c.variant,
        func.count().label("n"),
        # the units' assignment probabilities: what a bandit's SRM check expects
        func.sum(units.c.probability).label("sum_probability"),
    ]
    for name in UNIT_COLUMNS:
        columns.append(func.sum(units.c[name]).label(f"sum_{name}"))
        columns.append(func.sum(units.c[name] * units.c[name]).label(f"sq_{name}"))
    crosses = sorted({(num, den) for num, den in METRIC_PARTS.values()})
    for num, den in crosses:
        columns.append(func.sum(units.c[num] * units.c[den]).label(f"cross_{num}_{den}"))
    rows = db.execute(select(*columns).group_by(units.c.variant)).mappings().all()
    return {
        row["variant"]: {k: float(v or 0) for k, v in row.items() if k != "variant"} for row in rows
    }


def pre_experiment_conversion(experiment: Experiment) -> Any:
    """Per customer of the merchant: conversion rate over the checkout sessions created before
    the experiment started (converted sessions / sessions), the CUPED covariate.

    Only history from before the start can be used: anything later may itself be changed by
    the variant, and adjusting by it would bias the lift. Guests have no history (covariate 0).
    """
    cs, p = CheckoutSession.__table__, Payment.__table__
    assert experiment.started_at is not None
    paid = (
        select(p.c.session_id)
        .where(p.c.merchant_id == experiment.merchant_id, p.c.status == "succeeded")
        .group_by(p.c.session_id)
        .subquery("paid")
    )
    return (
        select(
            cs.c.customer_ref.label("unit"),
            (cast(func.count(paid.c.session_id), Float) / cast(func.count(cs.c.id), Float)).label(
                "rate"
            ),
        )
        .select_from(cs.outerjoin(paid, paid.c.session_id == cs.c.id))
        .where(
            cs.c.merchant_id == experiment.merchant_id,
            cs.c.customer_ref.is_not(None),
            cs.c.created_at < experiment.started_at,
        )
        .group_by(cs.c.customer_ref)
        .cte("pre")
    )


def cuped_sums(db: Session, experiment: Experiment) -> dict[str, dict[str, float]]:
    """Per variant, the CUPED sufficient statistics of the per-unit conversion rate ``y``
    (converted sessions / exposed sessions of the unit) with the unit's pre-experiment
    conversion ``x``: ``n``, ``sum_y``, ``sq_y``, ``sum_x``, ``sq_x``, ``cross_xy``.

    One GROUP BY in the database; a unit's customer reference joins its history (session ids,
    the guests' units, never match a customer reference in practice: they are random ``cs_``
    ids). Empty before the experiment has started.
    """
    if experiment.started_at is None:
        return {}
    units = _unit_level(db, experiment)
    pre = pre_experiment_conversion(experiment)
    y = units.c.conversions / units.c.sessions
    x = func.coalesce(pre.c.rate, 0.0)
    rows = (
        db.execute(
            select(
                units.c.variant,
                func.count().label("n"),
                func.sum(y).label("sum_y"),
                func.sum(y * y).label("sq_y"),
                func.sum(x).label("sum_x"),
                func.sum(x * x).label("sq_x"),
                func.sum(x * y).label("cross_xy"),
            )
            .select_from(units.outerjoin(pre, pre.c.unit == units.c.unit))
            .group_by(units.c.variant)
        )
        .mappings()
        .all()
    )
    return {
        row["variant"]: {k: float(v or 0) for k, v in row.items() if k != "variant"} for row in rows
    }


def cuped_aggregate(sums: dict[str, float]) -> stats.Aggregate:
    return stats.Aggregate(
        n=int(sums["n"]),
        sum=sums["sum_y"],
        sum_squares=sums["sq_y"],
        covariate_sum=sums["sum_x"],
        covariate_sum_squares=sums["sq_x"],
        covariate_cross_sum=sums["cross_xy"],
    )


def daily_counts(db: Session, experiment: Experiment) -> list[tuple[str, str, int, int]]:
    """(day, variant, exposed sessions, converted sessions) grouped by the database."""
    sess = _session_level(db, experiment)
    day = func.date(sess.c.exposed_at)
    rows = db.execute(
        select(day, sess.c.variant, func.count(), func.sum(sess.c.converted))
        .group_by(day, sess.c.variant)
        .order_by(day, sess.c.variant)
    ).all()
    return [(str(r[0])[:10], r[1], int(r[2]), int(r[3] or 0)) for r in rows]


def metric_aggregate(sums: dict[str, float], metric: str) -> stats.Aggregate:
    num, den = METRIC_PARTS[metric]
    return stats.ratio_aggregate(
        n=int(sums["n"]),
        numerator_sum=sums[f"sum_{num}"],
        numerator_sum_squares=sums[f"sq_{num}"],
        denominator_sum=sums[f"sum_{den}"],
        denominator_sum_squares=sums[f"sq_{den}"],
        cross_sum=sums[f"cross_{num}_{den}"],
    )


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class VariantResult:
    key: str
    control: bool
    weight: float
    expected_share: float
    units: int
    sessions: int
    metrics: dict[str, float | None]


@dataclass
class Comparison:
    metric: str
    kind: str  # primary | secondary | guardrail
    variant: str
    control_value: float | None = None
    variant_value: float | None = None
    lift: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    significant: bool | None = None
    chance_to_win: float | None = None
    risk: tuple[float, float] | None = None
    error: str | None = None


@dataclass
class CupedComparison:
    """The primary metric per unit (conversion rate of the unit's exposed sessions), before
    and after CUPED with the unit's pre-experiment conversion. Not part of the corrected
    family: it re-estimates the primary comparison with less variance, it is not a new test."""

    metric: str
    variant: str
    control_value: float | None = None
    variant_value: float | None = None
    lift: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    significant: bool | None = None
    unadjusted_lift: float | None = None
    unadjusted_ci: tuple[float, float] | None = None
    unadjusted_p_value: float | None = None
    theta: float | None = None
    variance_reduction: float | None = None
    error: str | None = None


@dataclass
class GuardrailStatus:
    metric: str
    variant: str
    status: str  # ok | warning | failing | insufficient_data
    max_relative_increase: float
    lift: float | None
    ci: tuple[float, float] | None
    message: str


@dataclass
class SrmStatus:
    p_value: float
    mismatch: bool
    observed: dict[str, int]
    expected: dict[str, float]
    note: str | None = None


@dataclass
class DayPoint:
    date: str
    variant: str
    sessions: int
    conversions: int
    cumulative_sessions: int
    cumulative_conversions: int
    cumulative_conversion: float | None


@dataclass
class ExperimentAnalysis:
    """Everything ``GET /v1/experiments/{key}/results`` returns, with notebook helpers."""

    key: str
    status: str
    control: str
    variants: list[VariantResult]
    comparisons: list[Comparison]
    srm: SrmStatus
    guardrails: list[GuardrailStatus]
    timeseries: list[DayPoint]
    sequential: bool = False
    alpha: float = 0.05
    cuped: list[CupedComparison] = field(default_factory=list)
    computed_at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["computed_at"] = self.computed_at.isoformat()
        return {"object": "experiment_results", **_finite(body)}

    def comparison(self, metric: str, variant: str) -> Comparison:
        for item in self.comparisons:
            if item.metric == metric and item.variant == variant:
                return item
        raise KeyError((metric, variant))

    def summary(self) -> pd.DataFrame:
        """One row per (metric, variant): value, lift, interval, p-value, chance to win."""
        import pandas as pd

        rows = []
        values = {v.key: v for v in self.variants}
        for v in self.variants:
            for metric, value in v.metrics.items():
                rows.append({"metric": metric, "variant": v.key, "units": v.units, "value": value})
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        comps = pd.DataFrame(
            [
                {
                    "metric": c.metric,
                    "variant": c.variant,
                    "kind": c.kind,
                    "lift": c.lift,
                    "ci_lower": c.ci[0] if c.ci else None,
                    "ci_upper": c.ci[1] if c.ci else None,
                    "p_value": c.p_value,
                    "adjusted_p_value": c.adjusted_p_value,
                    "chance_to_win": c.chance_to_win,
                }
                for c in self.comparisons
            ]
        )
        if not comps.empty:
            frame = frame.merge(comps, on=["metric", "variant"], how="left")
        if self.cuped:
            adjusted = pd.DataFrame(
                [
                    {
                        "metric": c.metric,
                        "variant": c.variant,
                        "cuped_lift": c.lift,
                        "cuped_ci_lower": c.ci[0] if c.ci else None,
                        "cuped_ci_upper": c.ci[1] if c.ci else None,
                        "cuped_p_value": c.p_value,
                        "cuped_variance_reduction": c.variance_reduction,
                    }
                    for c in self.cuped
                ]
            )
            frame = frame.merge(adjusted, on=["metric", "variant"], how="left")
        frame["control"] = frame["variant"].map(lambda k: values[k].control)
        return frame.set_index(["metric", "variant"])

    def timeseries_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([asdict(p) for p in self.timeseries])

    def plot(self) -> Figure:
        """Cumulative conversion per variant over days, and lift intervals per metric."""
        from matplotlib.figure import Figure

        figure = Figure(figsize=(11, 4.2), layout="constrained")
        left, right = figure.subplots(1, 2)
        series = self.timeseries_frame()
        if not series.empty:
            for variant, part in series.groupby("variant"):
                left.plot(
                    part["date"], part["cumulative_conversion"], marker="o", label=str(variant)
                )
            left.legend()
            left.tick_params(axis="x", labelrotation=45)
        left.set_title(f"{self.key}: cumulative conversion")
        left.set_ylabel("conversion")
        shown: list[Comparison | CupedComparison] = [
            c for c in self.comparisons if c.ci is not None
        ]
        shown += [c for c in self.cuped if c.ci is not None]
        labels = [
            f"{c.metric}{' (CUPED)' if isinstance(c, CupedComparison) else ''}\n{c.variant}"
            for c in shown
        ]
        for i, c in enumerate(shown):
            assert c.ci is not None and c.lift is not None
            colour = "tab:green" if c.significant else "tab:gray"
            right.plot([c.ci[0], c.ci[1]], [i, i], color=colour, linewidth=3)
            right.plot([c.lift], [i], "o", color="black")
        right.axvline(0, color="black", linewidth=0.8)
        right.set_yticks(range(len(shown)), labels)
        right.set_title("relative lift vs control (interval)")
        return figure


def _finite(node: Any) -> Any:
    """JSON has no NaN or infinity: map them to null."""
    if isinstance(node, float):
        return node if math.isfinite(node) else None
    if isinstance(node, dict):
        return {k: _finite(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_finite(v) for v in node]
    return node


def _value(sums: dict[str, float] | None, metric: str) -> float | None:
    if not sums:
        return None
    num, den = METRIC_PARTS[metric]
    denominator = sums[f"sum_{den}"]
    return sums[f"sum_{num}"] / denominator if denominator else None


def _compare(
    metric: str,
    kind: str,
    variant: str,
    control_sums: dict[str, float] | None,
    variant_sums_: dict[str, float] | None,
    *,
    alpha: float,
    sequential: bool,
) -> tuple[Comparison, stats.FrequentistResult | None]:
    comparison = Comparison(
        metric=metric,
        kind=kind,
        variant=variant,
        control_value=_value(control_sums, metric),
        variant_value=_value(variant_sums_, metric),
    )
    if not control_sums or not variant_sums_:
        comparison.error = "no exposures yet"
        return comparison, None
    try:
        control = metric_aggregate(control_sums, metric)
        treatment = metric_aggregate(variant_sums_, metric)
        freq = stats.frequentist(control, treatment, alpha=alpha, sequential=sequential)
        bayes = stats.bayesian(control, treatment, alpha=alpha, inverse=metric in INVERSE_METRICS)
    except stats.StatsError as exc:
        comparison.error = str(exc)
        return comparison, None
    comparison.lift = freq.lift
    comparison.ci = freq.ci
    comparison.p_value = freq.p_value
    comparison.significant = freq.significant
    comparison.chance_to_win = bayes.chance_to_win
    comparison.risk = bayes.risk
    return comparison, freq


def _compare_cuped(
    variant: str,
    control_sums: dict[str, float] | None,
    variant_sums_: dict[str, float] | None,
    *,
    alpha: float,
    sequential: bool,
) -> CupedComparison:
    comparison = CupedComparison(metric="conversion", variant=variant)
    if not control_sums or not variant_sums_:
        comparison.error = "no exposures yet"
        return comparison
    comparison.control_value = control_sums["sum_y"] / control_sums["n"]
    comparison.variant_value = variant_sums_["sum_y"] / variant_sums_["n"]
    try:
        control = cuped_aggregate(control_sums)
        treatment = cuped_aggregate(variant_sums_)
        plain = stats.frequentist(control, treatment, alpha=alpha, sequential=sequential)
        adjusted_c, adjusted_t = stats.cuped(control, treatment)
        adjusted = stats.frequentist(adjusted_c, adjusted_t, alpha=alpha, sequential=sequential)
    except stats.StatsError as exc:
        comparison.error = str(exc)
        return comparison
    comparison.lift = adjusted.lift
    comparison.ci = adjusted.ci
    comparison.p_value = adjusted.p_value
    comparison.significant = adjusted.significant
    comparison.unadjusted_lift = plain.lift
    comparison.unadjusted_ci = plain.ci
    comparison.unadjusted_p_value = plain.p_value
    comparison.theta = adjusted_c.theta
    # pooled over both variants: the share of the per-unit variance the covariate explains
    before = sum(a.unadjusted_variance * a.n for a in (adjusted_c, adjusted_t))
    after = sum(a.variance * a.n for a in (adjusted_c, adjusted_t))
    comparison.variance_reduction = 1.0 - after / before if before > 0 else 0.0
    return comparison


def _guardrail(comparison: Comparison, tolerance: float) -> GuardrailStatus:
    status, message = "ok", "no evidence of harm"
    if comparison.ci is None or comparison.lift is None:
        status, message = "insufficient_data", comparison.error or "not enough data"
    elif comparison.ci[0] > tolerance:
        status = "failing"
        message = (
            f"{comparison.metric} is significantly higher in '{comparison.variant}' "
            f"(+{comparison.lift:.1%}, interval from +{comparison.ci[0]:.1%})"
        )
    elif comparison.lift > tolerance and (comparison.chance_to_win or 0) < 0.2:
        status = "warning"
        message = f"{comparison.metric} is probably higher in '{comparison.variant}'"
    return GuardrailStatus(
        metric=comparison.metric,
        variant=comparison.variant,
        status=status,
        max_relative_increase=tolerance,
        lift=comparison.lift,
        ci=comparison.ci,
        message=message,
    )


def _srm(
    experiment: Experiment,
    variants: list[Variant],
    sums: dict[str, dict[str, float]],
    counts: list[int],
) -> SrmStatus:
    """Chi-square of the unit counts against what the allocation predicts.

    Fixed allocation: the weights. A bandit moves its shares over time, so the weights
    predict nothing; with two variants each unit's logged probability q of the variant it got
    gives the other variant 1 - q, and the expected count of a variant is the sum over all
    units of their probability of it. With more variants the logged probability alone cannot
    say how the rest was split, so the check is reported as not applicable.
    """
    observed = {v.key: c for v, c in zip(variants, counts, strict=True)}
    note = None
    expectation: list[float] = [v.weight for v in variants]
    if Allocation.model_validate(experiment.allocation).type == "bandit":
        if len(variants) != 2 or sum(counts) == 0:
            return SrmStatus(
                p_value=1.0,
                mismatch=False,
                observed=observed,
                expected={v.key: float("nan") for v in variants},
                note="not checked: a bandit with more than two variants logs only the "
                "probability of the variant each unit got",
            )
        (a, b) = (sums.get(v.key, {}) for v in variants)
        p_a, p_b = a.get("sum_probability", 0.0), b.get("sum_probability", 0.0)
        expectation = [p_a + counts[1] - p_b, p_b + counts[0] - p_a]
        note = "bandit: expected counts from the logged assignment probabilities"
        if min(expectation) <= 0:  # a variant nobody could get: nothing to compare with
            expectation = [max(e, 1e-9) for e in expectation]
    srm = stats.srm_check(counts, expectation)
    return SrmStatus(
        p_value=srm.p_value,
        mismatch=srm.mismatch,
        observed=observed,
        expected={v.key: e for v, e in zip(variants, srm.expected, strict=True)},
        note=note,
    )


def analyze_experiment(
    *,
    db: Session,
    experiment: Experiment,
    sequential: bool = False,
    alpha: float = 0.05,
    correction: str = "holm",
    cuped: bool = False,
) -> ExperimentAnalysis:
    """Analyse one experiment: SQL aggregates → stats engine → :class:`ExperimentAnalysis`.

    ``cuped=True`` adds :attr:`ExperimentAnalysis.cuped`: the primary metric per unit adjusted
    by each unit's pre-experiment conversion (one more GROUP BY)."""
    variants = [Variant.model_validate(v) for v in experiment.variants]
    metrics = Metrics.model_validate(experiment.metrics)
    control = next(v for v in variants if v.control)
    total_weight = sum(v.weight for v in variants)
    sums = variant_sums(db, experiment)

    variant_results = [
        VariantResult(
            key=v.key,
            control=v.control,
            weight=v.weight,
            expected_share=v.weight / total_weight,
            units=int(sums.get(v.key, {}).get("n", 0)),
            sessions=int(sums.get(v.key, {}).get("sum_sessions", 0)),
            metrics={m: _value(sums.get(v.key), m) for m in METRIC_PARTS},
        )
        for v in variants
    ]

    plan = [(metrics.primary, "primary")] + [(m, "secondary") for m in metrics.secondary]
    plan += [(g.metric, "guardrail") for g in metrics.guardrails]
    comparisons: list[Comparison] = []
    family: list[tuple[Comparison, stats.FrequentistResult]] = []
    for metric, kind in plan:
        for v in variants:
            if v.control:
                continue
            comparison, freq = _compare(
                metric,
                kind,
                v.key,
                sums.get(control.key),
                sums.get(v.key),
                alpha=alpha,
                sequential=sequential,
            )
            comparisons.append(comparison)
            if freq is not None and kind != "guardrail":
                family.append((comparison, freq))
    if family:
        adjusted = stats.adjust_results([f for _, f in family], method=correction)  # type: ignore[arg-type]
        for (comparison, _), result in zip(family, adjusted, strict=True):
            comparison.adjusted_p_value = result.adjusted_p_value
            comparison.significant = result.significant

    tolerance = {g.metric: g.max_relative_increase for g in metrics.guardrails}
    guardrails = [_guardrail(c, tolerance[c.metric]) for c in comparisons if c.kind == "guardrail"]

    counts = [int(sums.get(v.key, {}).get("n", 0)) for v in variants]
    srm_status = _srm(experiment, variants, sums, counts)

    cuped_results: list[CupedComparison] = []
    if cuped:
        covariate = cuped_sums(db, experiment)
        cuped_results = [
            _compare_cuped(
                v.key,
                covariate.get(control.key),
                covariate.get(v.key),
                alpha=alpha,
                sequential=sequential,
            )
            for v in variants
            if not v.control
        ]

    running: dict[str, list[int]] = {}
    series = []
    for day, variant, n_sessions, conversions in daily_counts(db, experiment):
        total = running.setdefault(variant, [0, 0])
        total[0] += n_sessions
        total[1] += conversions
        series.append(
            DayPoint(
                date=day,
                variant=variant,
                sessions=n_sessions,
                conversions=conversions,
                cumulative_sessions=total[0],
                cumulative_conversions=total[1],
                cumulative_conversion=total[1] / total[0] if total[0] else None,
            )
        )

    return ExperimentAnalysis(
        key=experiment.key,
        status=experiment.status,
        control=control.key,
        variants=variant_results,
        comparisons=comparisons,
        srm=srm_status,
        guardrails=guardrails,
        timeseries=series,
        sequential=sequential,
        alpha=alpha,
        cuped=cuped_results,
    )


def analyze(
    key: str,
    *,
    database: Database | None = None,
    merchant_id: str | None = None,
    sequential: bool = False,
    alpha: float = 0.05,
    cuped: bool = False,
) -> ExperimentAnalysis:
    """Analyse experiment ``key`` (notebooks). ``database`` defaults to the configured one;
    ``merchant_id`` is needed only when several merchants use the same key; ``cuped=True``
    adds the CUPED-adjusted primary metric (:attr:`ExperimentAnalysis.cuped`)."""
    from checkoutlab.experiments import service

    owned = database is None
    if database is None:
        from checkoutlab.config import get_settings
        from checkoutlab.db import Database

        database = Database(get_settings().database_url)
    try:
        with database.session() as db:
            experiment = service.find(db=db, key=key, merchant_id=merchant_id)
            return analyze_experiment(
                db=db, experiment=experiment, sequential=sequential, alpha=alpha, cuped=cuped
            )
    finally:
        if owned:
            database.dispose()


__all__ = [
    "Comparison",
    "CupedComparison",
    "ExperimentAnalysis",
    "analyze",
    "analyze_experiment",
    "cuped_sums",
    "variant_sums",
]
