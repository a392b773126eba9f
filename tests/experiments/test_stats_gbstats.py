"""The stats engine agrees with GrowthBook's gbstats on the same aggregates.

gbstats (0.8) pins numpy<2 and pandas<2, which the platform cannot install, so these tests skip
unless it is importable. To run them, use a separate environment::

    python -m venv /tmp/gb && /tmp/gb/bin/pip install gbstats pytest
    PYTHONPATH=. /tmp/gb/bin/pytest tests/experiments/test_stats_gbstats.py --noconftest -q

(``--noconftest``: the shared fixtures import the whole app, which that environment lacks.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

pytest.importorskip("gbstats")

from gbstats.bayesian.tests import (
    EffectBayesianABTest,
    EffectBayesianConfig,
    GaussianPrior,
)
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm

from checkoutlab.experiments.stats import (
    Aggregate,
    Prior,
    bayesian,
    cuped,
    frequentist,
    srm_p_value,
)

TOL = 1e-6


@dataclass(frozen=True)
class Case:
    """A control/treatment pair, as our aggregates and as fresh gbstats statistics."""

    control: Aggregate
    treatment: Aggregate
    kind: str  # "mean", "ratio" or "cuped"

    def ours(self):
        if self.kind == "cuped":
            return cuped(self.control, self.treatment)
        return self.control, self.treatment

    def theirs(self):  # new objects each time: gbstats sets theta on them in place
        return _gb(self.control, self.kind), _gb(self.treatment, self.kind)


def _gb(agg: Aggregate, kind: str):
    metric = SampleMeanStatistic(n=agg.n, sum=agg.sum, sum_squares=agg.sum_squares)
    if kind == "ratio":
        return RatioStatistic(
            n=agg.n,
            m_statistic=metric,
            d_statistic=SampleMeanStatistic(
                n=agg.n, sum=agg.denominator_sum, sum_squares=agg.denominator_sum_squares
            ),
            m_d_sum_of_products=agg.cross_sum,
        )
    if kind == "cuped":
        return RegressionAdjustedStatistic(
            n=agg.n,
            post_statistic=metric,
            pre_statistic=SampleMeanStatistic(
                n=agg.n, sum=agg.covariate_sum, sum_squares=agg.covariate_sum_squares
            ),
            post_pre_sum_of_products=agg.covariate_cross_sum,
            theta=0,
        )
    return metric


def _cases() -> dict[str, Case]:
    rng = np.random.default_rng(2024)

    def revenue(n, conversion, scale):
        return (rng.random(n) < conversion) * rng.gamma(2.0, scale, n)

    def binary(n, rate, conversions=None):
        k = round(n * rate) if conversions is None else conversions
        return Aggregate(n=n, sum=k, sum_squares=k)

    pre_c, pre_t = rng.gamma(2.0, 10.0, 3000), rng.gamma(2.0, 10.0, 2800)
    post_c = 0.8 * pre_c + rng.gamma(2.0, 6.0, 3000)
    post_t = 0.8 * pre_t + rng.gamma(2.0, 6.0, 2800) + 1.5
    count_c, count_t = rng.poisson(1.2, 2500).astype(float), rng.poisson(1.3, 2600).astype(float)
    value_c = count_c * rng.gamma(3.0, 50.0 / 3.0, 2500)
    value_t = count_t * rng.gamma(3.0, 52.0 / 3.0, 2600)
    return {
        "conversion": Case(binary(10_000, 0.10), binary(10_000, 0.108), "mean"),
        "conversion-small-unequal": Case(binary(40, 0, 6), binary(25, 0, 7), "mean"),
        "conversion-10M": Case(binary(10_000_000, 0.03), binary(9_990_000, 0.0302), "mean"),
        "conversion-negative": Case(binary(5000, 0.2), binary(5200, 0.17), "mean"),
        "revenue": Case(
            Aggregate.from_samples(revenue(1500, 0.3, 40.0)),
            Aggregate.from_samples(revenue(1800, 0.32, 41.0)),
            "mean",
        ),
        "ratio-aov": Case(
            Aggregate.from_samples(value_c, denominator=count_c),
            Aggregate.from_samples(value_t, denominator=count_t),
            "ratio",
        ),
        "cuped": Case(
            Aggregate.from_samples(post_c, covariate=pre_c),
            Aggregate.from_samples(post_t, covariate=pre_t),
            "cuped",
        ),
    }


CASES = _cases()
DIFFERENCES = {"relative": True, "absolute": False}


def _close(ours, theirs):
    assert np.asarray(ours, dtype=float) == pytest.approx(
        np.asarray(theirs, dtype=float), abs=TOL, rel=TOL
    )


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("difference", DIFFERENCES)
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_fixed_horizon_matches_two_sided_t_test(name, difference, alpha):
    case = CASES[name]
    ours = frequentist(*case.ours(), relative=DIFFERENCES[difference], alpha=alpha)
    config = FrequentistConfig(difference_type=difference, alpha=alpha)
    theirs = TwoSidedTTest(*case.theirs(), config).compute_result()
    assert theirs.error_message is None
    _close(ours.lift, theirs.expected)
    _close(ours.ci, theirs.ci)
    _close(ours.p_value, theirs.p_value)
    _close(ours.se, theirs.uplift.stddev)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("difference", DIFFERENCES)
@pytest.mark.parametrize("tuning", [5000, 500, 1e6])
def test_sequential_matches_sequential_two_sided_t_test(name, difference, tuning):
    case = CASES[name]
    ours = frequentist(
        *case.ours(), relative=DIFFERENCES[difference], sequential=True, sequential_tuning=tuning
    )
    config = SequentialConfig(difference_type=difference, sequential_tuning_parameter=tuning)
    theirs = SequentialTwoSidedTTest(*case.theirs(), config).compute_result()
    assert theirs.error_message is None
    _close(ours.lift, theirs.expected)
    _close(ours.ci, theirs.ci)
    _close(ours.p_value, theirs.p_value)


PRIORS = {
    "flat": (None, GaussianPrior()),
    "relative": (
        Prior(mean=0.02, variance=0.05**2, proper=True),
        GaussianPrior(mean=0.02, variance=0.05**2, proper=True),
    ),
    "absolute": (
        Prior(mean=0.001, variance=0.004**2, proper=True, scale="absolute"),
        GaussianPrior(mean=0.001, variance=0.004**2, proper=True),
    ),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("difference", DIFFERENCES)
@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("inverse", [False, True])
def test_bayesian_matches_effect_bayesian_ab_test(name, difference, prior, inverse):
    case = CASES[name]
    our_prior, their_prior = PRIORS[prior]
    ours = bayesian(
        *case.ours(), relative=DIFFERENCES[difference], prior=our_prior, inverse=inverse
    )
    config = EffectBayesianConfig(
        difference_type=difference,
        inverse=inverse,
        prior_effect=their_prior,
        prior_type="absolute" if prior == "absolute" else "relative",
    )
    theirs = EffectBayesianABTest(*case.theirs(), config).compute_result()
    assert theirs.error_message is None
    _close(ours.lift, theirs.expected)
    _close(ours.ci, theirs.ci)
    _close(ours.chance_to_win, theirs.chance_to_win)
    _close(ours.risk, theirs.risk)
    _close(ours.se, theirs.uplift.stddev)


@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ([5000, 5100], [0.5, 0.5]),
        ([1000, 1100, 950], [1, 1, 1]),
        ([2100, 7900], [0.2, 0.8]),
        ([4_990_000, 5_010_000], [0.5, 0.5]),
    ],
)
def test_srm_matches_check_srm(counts, weights):
    _close(srm_p_value(counts, weights), check_srm(counts, weights))
