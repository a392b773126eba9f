"""Stats engine: textbook cases, values computed independently from raw samples, simulations
of coverage and error rates, and validation. Everything runs on aggregates in milliseconds."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import integrate, stats

from checkoutlab.experiments.stats import (
    SRM_THRESHOLD,
    Aggregate,
    CupedAggregate,
    FrequentistResult,
    InsufficientDataError,
    Prior,
    StatsError,
    adjust_results,
    bayesian,
    benjamini_hochberg,
    cuped,
    frequentist,
    holm,
    ratio_aggregate,
    srm_check,
    srm_p_value,
)


def revenue(rng: np.random.Generator, size, *, conversion=0.3, scale=40.0) -> np.ndarray:
    """Skewed per-unit revenue: most units pay nothing, buyers pay a gamma amount."""
    return (rng.random(size) < conversion) * rng.gamma(2.0, scale, size)


def aggregates_by_row(values: np.ndarray) -> list[Aggregate]:
    """One Aggregate per row of a (replications, units) matrix, with vectorised sums."""
    n = values.shape[1]
    sums, squares = values.sum(axis=1), (values**2).sum(axis=1)
    return [Aggregate(n=n, sum=s, sum_squares=q) for s, q in zip(sums, squares, strict=True)]


# --------------------------------------------------------------------------------------------
# Aggregate
# --------------------------------------------------------------------------------------------


def test_mean_and_sample_variance_match_numpy():
    values = revenue(np.random.default_rng(1), 500)
    agg = Aggregate.from_samples(values)
    assert agg.n == 500
    assert agg.mean == pytest.approx(values.mean(), rel=1e-12)
    assert agg.variance == pytest.approx(values.var(ddof=1), rel=1e-10)


def test_from_samples_fills_optional_sums():
    y, d, x = np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 2.0]), np.array([0.0, 1.0, 3.0])
    assert Aggregate.from_samples(y, denominator=d, covariate=x) == Aggregate(
        n=3,
        sum=7.0,
        sum_squares=21.0,
        denominator_sum=4.0,
        denominator_sum_squares=6.0,
        cross_sum=11.0,
        covariate_sum=4.0,
        covariate_sum_squares=10.0,
        covariate_cross_sum=14.0,
    )


def test_aggregate_is_frozen_and_normalises_numbers():
    agg = Aggregate(n=np.int64(10), sum=np.float32(3), sum_squares=3)
    assert type(agg.n) is int and agg.n == 10
    assert type(agg.sum) is float and agg.sum == 3.0
    assert Aggregate(n=10.0, sum=3, sum_squares=3).n == 10  # SQL drivers may return floats
    with pytest.raises(dataclasses.FrozenInstanceError):
        agg.n = 11  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 1, "sum": 1, "sum_squares": 1}, "n must be at least 2"),
        ({"n": 0, "sum": 0, "sum_squares": 0}, "n must be at least 2"),
        ({"n": 10.5, "sum": 1, "sum_squares": 1}, "integer count"),
        ({"n": True, "sum": 1, "sum_squares": 1}, "integer count"),
        ({"n": "10", "sum": 1, "sum_squares": 1}, "integer count"),
        ({"n": 10, "sum": math.nan, "sum_squares": 1}, "sum must be finite"),
        ({"n": 10, "sum": 1, "sum_squares": math.inf}, "sum_squares must be finite"),
        ({"n": 10, "sum": None, "sum_squares": 1}, "sum must be a real number"),
        # values summing to 10 over 10 units have a sum of squares of at least 10
        ({"n": 10, "sum": 10, "sum_squares": 5}, "variance negative"),
        ({"n": 10, "sum": 1, "sum_squares": 1, "denominator_sum": 3}, "missing: "),
        (
            {"n": 10, "sum": 1, "sum_squares": 1, "covariate_sum": 1, "covariate_sum_squares": 1},
            "missing: covariate_cross_sum",
        ),
        (
            {"n": 3, "sum": 6, "sum_squares": 14, "covariate_sum": 6, "covariate_sum_squares": 14}
            | {"covariate_cross_sum": 100},
            "correlation of magnitude",
        ),
        (
            {"n": 3, "sum": 6, "sum_squares": 14}
            | {"denominator_sum": 3, "denominator_sum_squares": 1, "cross_sum": 6},
            "the denominator",
        ),
    ],
)
def test_invalid_aggregates_are_refused_with_clear_errors(kwargs, message):
    with pytest.raises(StatsError, match=message):
        Aggregate(**kwargs)


def test_errors_are_value_errors_and_name_the_missing_fields():
    with pytest.raises(ValueError, match="denominator_sum_squares, cross_sum"):
        Aggregate(n=10, sum=1, sum_squares=1, denominator_sum=3)
    with pytest.raises(StatsError, match="no covariate_sum"):
        _ = Aggregate(n=10, sum=1, sum_squares=1).covariate_mean


def test_zero_denominator_is_insufficient_data():
    with pytest.raises(InsufficientDataError, match="denominator_sum is 0"):
        ratio_aggregate(
            n=5,
            numerator_sum=0,
            numerator_sum_squares=0,
            denominator_sum=0,
            denominator_sum_squares=0,
            cross_sum=0,
        )


def test_constant_metric_at_ten_million_units_is_zero_variance_not_an_error():
    n = 10_000_000
    agg = Aggregate(n=n, sum=49.99 * n, sum_squares=49.99**2 * n)
    assert agg.variance == 0.0
    with pytest.raises(InsufficientDataError, match="zero variance"):
        frequentist(agg, Aggregate(n=n, sum=50.0 * n, sum_squares=2500.0 * n))


# --------------------------------------------------------------------------------------------
# Frequentist
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_absolute_welch_test_matches_scipy_on_raw_samples(seed):
    rng = np.random.default_rng(seed)
    control = revenue(rng, 800)
    treatment = revenue(rng, 1200, conversion=0.33, scale=45.0)
    expected = stats.ttest_ind(treatment, control, equal_var=False)
    expected_ci = expected.confidence_interval(confidence_level=0.9)

    result = frequentist(
        Aggregate.from_samples(control),
        Aggregate.from_samples(treatment),
        relative=False,
        alpha=0.1,
    )

    assert result.lift == pytest.approx(treatment.mean() - control.mean(), rel=1e-10)
    assert result.lift / result.se == pytest.approx(expected.statistic, rel=1e-9)
    assert result.dof == pytest.approx(expected.df, rel=1e-9)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-8)
    assert result.ci == pytest.approx((expected_ci.low, expected_ci.high), rel=1e-9)
    assert (result.control_mean, result.treatment_mean) == pytest.approx(
        (control.mean(), treatment.mean()), rel=1e-12
    )


def test_relative_lift_and_delta_method_variance_by_hand():
    control = Aggregate(n=1000, sum=100, sum_squares=100)
    treatment = Aggregate(n=2000, sum=260, sum_squares=260)
    var_c, var_t = 0.1 * 0.9 * 1000 / 999, 0.13 * 0.87 * 2000 / 1999
    expected_var = var_t / (2000 * 0.1**2) + var_c * 0.13**2 / (1000 * 0.1**4)
    dof = (var_t / 2000 + var_c / 1000) ** 2 / (
        (var_t / 2000) ** 2 / 1999 + (var_c / 1000) ** 2 / 999
    )

    result = frequentist(control, treatment)

    assert result.relative is True
    assert result.lift == pytest.approx(0.3)
    assert result.se == pytest.approx(math.sqrt(expected_var), rel=1e-12)
    assert result.dof == pytest.approx(dof, rel=1e-12)
    half = stats.t.ppf(0.975, dof) * math.sqrt(expected_var)
    assert result.ci == pytest.approx((0.3 - half, 0.3 + half), rel=1e-12)
    assert result.p_value == pytest.approx(2 * stats.t.sf(0.3 / math.sqrt(expected_var), dof))


def test_relative_standard_error_matches_the_spread_of_simulated_lifts():
    rng = np.random.default_rng(7)
    reps, n = 2000, 1500
    controls = aggregates_by_row(revenue(rng, (reps, n)))
    treatments = aggregates_by_row(revenue(rng, (reps, n), conversion=0.33))
    results = [frequentist(c, t) for c, t in zip(controls, treatments, strict=True)]
    lifts = np.array([r.lift for r in results])
    mean_se = np.mean([r.se for r in results])
    assert mean_se == pytest.approx(lifts.std(ddof=1), rel=0.05)


@pytest.mark.parametrize("relative", [True, False])
def test_interval_covers_the_true_lift_at_the_nominal_rate(relative):
    rng = np.random.default_rng(11 if relative else 12)
    reps, n = 1000, 1000
    conv_c, conv_t, scale = 0.3, 0.33, 40.0
    true_c, true_t = conv_c * 2 * scale, conv_t * 2 * scale  # gamma(2, scale) has mean 2 scale
    truth = true_t / true_c - 1 if relative else true_t - true_c
    controls = aggregates_by_row(revenue(rng, (reps, n), conversion=conv_c))
    treatments = aggregates_by_row(revenue(rng, (reps, n), conversion=conv_t))

    covered = [
        lower <= truth <= upper
        for c, t in zip(controls, treatments, strict=True)
        for lower, upper in [frequentist(c, t, relative=relative).ci]
    ]
    # 95% nominal; with 1000 replications the binomial sd is 0.7 points
    assert 0.93 <= np.mean(covered) <= 0.97


def test_aa_tests_are_significant_at_about_alpha():
    rng = np.random.default_rng(3)
    reps, n = 2000, 1000
    a = aggregates_by_row((rng.random((reps, n)) < 0.1).astype(float))
    b = aggregates_by_row((rng.random((reps, n)) < 0.1).astype(float))
    false_positive = np.mean([frequentist(x, y).p_value < 0.05 for x, y in zip(a, b, strict=True)])
    assert 0.035 <= false_positive <= 0.065


def test_ten_million_exposures_binary_metric_is_exact():
    n = 10_000_000
    control = Aggregate(n=n, sum=300_000, sum_squares=300_000)
    treatment = Aggregate(n=n, sum=303_000, sum_squares=303_000)
    assert control.variance == pytest.approx(0.03 * 0.97 * n / (n - 1), rel=1e-12)

    result = frequentist(control, treatment, relative=False)

    se = math.sqrt((0.03 * 0.97 + 0.0303 * 0.9697) / (n - 1))
    assert result.lift == pytest.approx(0.0003, rel=1e-9)
    assert result.se == pytest.approx(se, rel=1e-9)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(0.0003 / se), rel=1e-4)


def test_zero_control_mean_allows_absolute_but_not_relative_lift():
    control = Aggregate.from_samples([1.0, -1.0, 2.0, -2.0])
    treatment = Aggregate.from_samples([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(InsufficientDataError, match="relative=False"):
        frequentist(control, treatment)
    with pytest.raises(InsufficientDataError, match="control mean is 0"):
        bayesian(control, treatment)
    assert frequentist(control, treatment, relative=False).lift == 2.5


def test_zero_conversions_in_control_is_insufficient_data():
    control = Aggregate(n=50, sum=0, sum_squares=0)
    treatment = Aggregate(n=50, sum=3, sum_squares=3)
    with pytest.raises(InsufficientDataError, match="control variant has zero variance"):
        frequentist(control, treatment, relative=False)


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, math.nan])
def test_alpha_must_be_a_probability(alpha):
    agg = Aggregate(n=10, sum=3, sum_squares=3)
    with pytest.raises(StatsError, match="alpha"):
        frequentist(agg, agg, alpha=alpha)
    with pytest.raises(StatsError, match="alpha"):
        bayesian(agg, agg, alpha=alpha)


def test_inputs_must_be_aggregates_of_the_same_kind():
    plain = Aggregate(n=10, sum=3, sum_squares=3)
    ratio = ratio_aggregate(
        n=10,
        numerator_sum=30,
        numerator_sum_squares=300,
        denominator_sum=3,
        denominator_sum_squares=3,
        cross_sum=30,
    )
    with pytest.raises(StatsError, match="must be an Aggregate"):
        frequentist({"n": 10}, plain)  # type: ignore[arg-type]
    with pytest.raises(StatsError, match="both be ratio metrics"):
        frequentist(plain, ratio)


# --------------------------------------------------------------------------------------------
# Sequential (confidence sequences)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [100, 1000, 2500, 10_000, 1_000_000])
@pytest.mark.parametrize("relative", [True, False])
def test_sequential_interval_is_wider_and_p_value_larger(n, relative):
    control = Aggregate(n=n, sum=0.10 * n, sum_squares=0.10 * n)
    treatment = Aggregate(n=n, sum=0.11 * n, sum_squares=0.11 * n)
    fixed = frequentist(control, treatment, relative=relative)
    always_valid = frequentist(control, treatment, relative=relative, sequential=True)

    assert always_valid.sequential and not fixed.sequential
    assert always_valid.lift == fixed.lift and always_valid.se == fixed.se
    assert always_valid.ci[0] < fixed.ci[0] and always_valid.ci[1] > fixed.ci[1]
    assert always_valid.p_value >= fixed.p_value


def test_sequential_interval_is_tightest_near_the_tuning_sample_size():
    def width(n, tuning):
        control = Aggregate(n=n, sum=0.10 * n, sum_squares=0.10 * n)
        treatment = Aggregate(n=n, sum=0.11 * n, sum_squares=0.11 * n)
        result = frequentist(control, treatment, sequential=True, sequential_tuning=tuning)
        fixed = frequentist(control, treatment)
        return (result.ci[1] - result.ci[0]) / (fixed.ci[1] - fixed.ci[0])

    n = 50_000  # per arm; total 100_000
    assert width(n, 100_000) < width(n, 5_000)
    assert width(n, 100_000) < width(n, 10_000_000)


def test_sequential_tuning_must_be_positive():
    agg = Aggregate(n=10, sum=3, sum_squares=3)
    with pytest.raises(StatsError, match="sequential_tuning"):
        frequentist(agg, agg, sequential=True, sequential_tuning=0)


def test_peeking_inflates_fixed_errors_but_not_sequential_ones():
    """A/A streams looked at 10 times: the fixed-horizon test 'finds' an effect far more
    often than alpha; the confidence sequence stays below alpha at every look."""
    rng = np.random.default_rng(5)
    reps, n, looks = 300, 4000, 10
    a = rng.normal(10.0, 3.0, (reps, n))
    b = rng.normal(10.0, 3.0, (reps, n))
    at = np.linspace(n // looks, n, looks, dtype=int)
    cum = {
        name: (np.cumsum(x, axis=1)[:, at - 1], np.cumsum(x**2, axis=1)[:, at - 1])
        for name, x in (("a", a), ("b", b))
    }

    def ever_rejects(sequential: bool) -> float:
        rejected = np.zeros(reps, dtype=bool)
        for r in range(reps):
            for k, size in enumerate(at):
                control = Aggregate(n=size, sum=cum["a"][0][r, k], sum_squares=cum["a"][1][r, k])
                treatment = Aggregate(n=size, sum=cum["b"][0][r, k], sum_squares=cum["b"][1][r, k])
                lower, upper = frequentist(
                    control, treatment, relative=False, sequential=sequential
                ).ci
                if not lower <= 0 <= upper:
                    rejected[r] = True
                    break
        return rejected.mean()

    assert ever_rejects(sequential=False) > 0.12
    assert ever_rejects(sequential=True) <= 0.05


# --------------------------------------------------------------------------------------------
# Multiple testing
# --------------------------------------------------------------------------------------------

P_VALUES = [0.01, 0.04, 0.03, 0.005]


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max
    assert holm(P_VALUES) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_benjamini_hochberg_by_hand():
    # 4 p / rank = 0.02, 0.02, 0.04, 0.04; running min from the largest
    assert benjamini_hochberg(P_VALUES) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_adjustments_cap_at_one_and_keep_ties_and_order():
    assert holm([0.5, 0.5, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
    assert benjamini_hochberg([0.5, 0.5, 0.9]) == pytest.approx([0.75, 0.75, 0.9])
    assert holm([]).size == 0 and benjamini_hochberg([]).size == 0


def test_benjamini_hochberg_matches_scipy():
    p = np.random.default_rng(2).random(40) ** 3
    assert benjamini_hochberg(p) == pytest.approx(stats.false_discovery_control(p, method="bh"))


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_adjustments_match_statsmodels(method):
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(4).random(25) ** 2
    ours = holm(p) if method == "holm" else benjamini_hochberg(p)
    assert ours == pytest.approx(multitest.multipletests(p, method=method)[1])


def test_adjustments_are_monotone_and_never_below_raw():
    p = np.random.default_rng(9).random(50)
    for adjusted in (holm(p), benjamini_hochberg(p)):
        assert (adjusted >= p).all() and (adjusted <= 1).all()
        order = np.argsort(p)
        assert (np.diff(adjusted[order]) >= 0).all()


@pytest.mark.parametrize("bad", [[0.1, 1.2], [-0.1], [math.nan], [[0.1, 0.2]]])
def test_p_values_are_validated(bad):
    with pytest.raises(StatsError, match="p_values"):
        holm(bad)


def _result(p: float) -> FrequentistResult:
    return FrequentistResult(
        lift=0.1,
        ci=(0.0, 0.2),
        p_value=p,
        se=0.05,
        dof=100.0,
        relative=True,
        alpha=0.05,
        sequential=False,
        control_mean=1.0,
        treatment_mean=1.1,
    )


@pytest.mark.parametrize(("method", "adjust"), [("holm", holm), ("bh", benjamini_hochberg)])
def test_adjust_results_across_metrics_and_variants_keeps_the_structure(method, adjust):
    results = {
        "conversion": {"b": _result(0.01), "c": _result(0.04)},
        "revenue": {"b": _result(0.03), "c": _result(0.005)},
        "guardrails": [_result(0.2), (_result(0.5),)],
    }
    adjusted = adjust_results(results, method=method)

    expected = adjust([0.01, 0.04, 0.03, 0.005, 0.2, 0.5])
    flat = [
        adjusted["conversion"]["b"],
        adjusted["conversion"]["c"],
        adjusted["revenue"]["b"],
        adjusted["revenue"]["c"],
        adjusted["guardrails"][0],
        adjusted["guardrails"][1][0],
    ]
    assert [r.adjusted_p_value for r in flat] == pytest.approx(expected)
    assert isinstance(adjusted["guardrails"][1], tuple)
    assert results["conversion"]["b"].adjusted_p_value is None  # inputs are untouched
    assert adjusted["conversion"]["b"].p_value == 0.01
    assert adjusted["revenue"]["c"].significant  # 0.005 * 6 = 0.03
    assert not adjusted["conversion"]["c"].significant


def test_adjust_results_rejects_unknown_things():
    with pytest.raises(StatsError, match="'holm' or 'bh'"):
        adjust_results([_result(0.1)], method="bonferroni")  # type: ignore[arg-type]
    with pytest.raises(StatsError, match="found float"):
        adjust_results([_result(0.1), 0.2])


# --------------------------------------------------------------------------------------------
# Bayesian
# --------------------------------------------------------------------------------------------


def test_identical_groups_have_even_chance_and_equal_risk():
    agg = Aggregate(n=5000, sum=600, sum_squares=600)
    result = bayesian(agg, agg)
    assert result.lift == 0.0
    assert result.chance_to_win == pytest.approx(0.5)
    assert result.risk_control == pytest.approx(result.risk_treatment)
    assert result.risk_control == pytest.approx(result.se / math.sqrt(2 * math.pi))


def test_big_effect_is_almost_sure_to_win_with_little_risk():
    control = Aggregate(n=20_000, sum=2000, sum_squares=2000)
    treatment = Aggregate(n=20_000, sum=2600, sum_squares=2600)
    result = bayesian(control, treatment)
    assert result.chance_to_win > 0.9999
    assert result.risk_treatment < 1e-8
    assert result.risk_control == pytest.approx(result.lift, rel=1e-6)


def test_improper_prior_gives_the_normal_likelihood():
    control = Aggregate(n=3000, sum=330, sum_squares=330)
    treatment = Aggregate(n=3000, sum=370, sum_squares=370)
    freq = frequentist(control, treatment)
    result = bayesian(control, treatment, alpha=0.1)
    z = stats.norm.ppf(0.95)
    assert result.lift == freq.lift
    assert result.se == pytest.approx(freq.se, rel=1e-12)
    assert result.ci == pytest.approx((freq.lift - z * freq.se, freq.lift + z * freq.se))
    assert result.chance_to_win == pytest.approx(stats.norm.cdf(freq.lift / freq.se))


def test_risk_is_the_expected_loss_under_the_posterior():
    control = Aggregate(n=2000, sum=200, sum_squares=200)
    treatment = Aggregate(n=2000, sum=215, sum_squares=215)
    result = bayesian(control, treatment)
    posterior = stats.norm(result.lift, result.se)
    lo, hi = result.lift - 12 * result.se, result.lift + 12 * result.se
    loss_control, _ = integrate.quad(lambda d: max(d, 0.0) * posterior.pdf(d), lo, hi, points=[0])
    loss_treatment, _ = integrate.quad(
        lambda d: max(-d, 0.0) * posterior.pdf(d), lo, hi, points=[0]
    )
    assert result.risk == pytest.approx((loss_control, loss_treatment), rel=1e-7)
    assert result.risk_control - result.risk_treatment == pytest.approx(result.lift)


def test_proper_prior_shrinks_towards_its_mean():
    control = Aggregate(n=500, sum=50, sum_squares=50)
    treatment = Aggregate(n=500, sum=65, sum_squares=65)
    flat = bayesian(control, treatment)
    prior = Prior(mean=0.0, variance=0.1**2, proper=True)
    shrunk = bayesian(control, treatment, prior=prior)

    precision = 1 / flat.se**2 + 1 / prior.variance
    assert shrunk.se == pytest.approx(math.sqrt(1 / precision))
    assert shrunk.lift == pytest.approx(flat.lift / flat.se**2 / precision)
    assert 0 < shrunk.lift < flat.lift
    assert 0.5 < shrunk.chance_to_win < flat.chance_to_win


def test_prior_scale_is_converted_with_the_control_mean():
    control = Aggregate(n=800, sum=80, sum_squares=80)  # mean 0.1
    treatment = Aggregate(n=800, sum=92, sum_squares=92)
    relative_prior = Prior(mean=0.05, variance=0.2**2, proper=True)
    absolute_prior = Prior(mean=0.005, variance=0.02**2, proper=True, scale="absolute")
    for relative in (True, False):
        one = bayesian(control, treatment, relative=relative, prior=relative_prior)
        other = bayesian(control, treatment, relative=relative, prior=absolute_prior)
        assert one.lift == pytest.approx(other.lift, rel=1e-12)
        assert one.se == pytest.approx(other.se, rel=1e-12)


def test_inverse_metrics_flip_chance_and_risk():
    control = Aggregate(n=4000, sum=40, sum_squares=40)  # fraud rate 1%
    treatment = Aggregate(n=4000, sum=30, sum_squares=30)
    normal = bayesian(control, treatment)
    inverse = bayesian(control, treatment, inverse=True)
    assert inverse.chance_to_win == pytest.approx(1 - normal.chance_to_win)
    assert inverse.chance_to_win > 0.8
    assert inverse.risk == (normal.risk[1], normal.risk[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variance": 0}, "prior variance must be positive"),
        ({"variance": -1}, "prior variance must be positive"),
        ({"mean": math.inf}, "prior mean must be finite"),
        ({"scale": "log"}, "prior scale"),
    ],
)
def test_prior_validation(kwargs, message):
    with pytest.raises(StatsError, match=message):
        Prior(**kwargs)


def test_prior_must_be_a_prior():
    agg = Aggregate(n=10, sum=3, sum_squares=3)
    with pytest.raises(StatsError, match="prior must be a Prior"):
        bayesian(agg, agg, prior={"mean": 0})  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Sample ratio mismatch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "weights"),
    [
        ([5000, 5100], [0.5, 0.5]),
        ([1000, 1100, 950], [1, 1, 1]),
        ([2100, 7900], [0.2, 0.8]),
        ([3_333_000, 3_334_000, 3_333_000], [1, 1, 1]),
    ],
)
def test_srm_matches_scipy_chisquare(counts, weights):
    expected = np.asarray(weights) / np.sum(weights) * np.sum(counts)
    assert srm_p_value(counts, weights) == pytest.approx(
        stats.chisquare(counts, expected).pvalue, rel=1e-10
    )


def test_srm_flags_mismatch_below_threshold():
    assert SRM_THRESHOLD == 0.001
    ok = srm_check([5000, 5050], [1, 1])
    assert not ok.mismatch and ok.p_value > SRM_THRESHOLD
    assert ok.expected == pytest.approx((5025.0, 5025.0))
    bad = srm_check([5000, 5400], [1, 1])
    assert bad.mismatch and bad.p_value < SRM_THRESHOLD
    assert srm_check([5000, 5400], [1, 1], threshold=1e-6).mismatch is False


def test_srm_without_units_is_not_a_mismatch():
    assert srm_p_value([0, 0], [0.5, 0.5]) == 1.0


@pytest.mark.parametrize(
    ("counts", "weights", "message"),
    [
        ([10, 20], [1, 1, 1], "same length"),
        ([10], [1], "at least two"),
        ([10, -1], [1, 1], "non-negative"),
        ([10.5, 3], [1, 1], "whole numbers"),
        ([10, 20], [1, 0], "weights must be positive"),
        ([10, 20], [1, math.nan], "weights must be positive"),
    ],
)
def test_srm_validation(counts, weights, message):
    with pytest.raises(StatsError, match=message):
        srm_p_value(counts, weights)


# --------------------------------------------------------------------------------------------
# CUPED
# --------------------------------------------------------------------------------------------


def correlated(rng, n, *, rho, shift=0.0):
    pre = rng.gamma(2.0, 10.0, n)
    noise = rng.gamma(2.0, 10.0, n)
    post = rho * pre + math.sqrt(1 - rho**2) * noise + shift
    return post, pre


def test_cuped_theta_and_adjusted_moments_match_raw_samples():
    rng = np.random.default_rng(21)
    y_c, x_c = correlated(rng, 3000, rho=0.7)
    y_t, x_t = correlated(rng, 2500, rho=0.7, shift=1.0)
    control = Aggregate.from_samples(y_c, covariate=x_c)
    treatment = Aggregate.from_samples(y_t, covariate=x_t)

    adj_c, adj_t = cuped(control, treatment)

    y, x = np.concatenate([y_c, y_t]), np.concatenate([x_c, x_t])
    theta = np.cov(y, x)[0, 1] / np.var(x, ddof=1)
    assert adj_c.theta == adj_t.theta == pytest.approx(theta, rel=1e-9)
    for adjusted, y_raw, x_raw in ((adj_c, y_c, x_c), (adj_t, y_t, x_t)):
        assert isinstance(adjusted, CupedAggregate)
        assert adjusted.mean == pytest.approx((y_raw - theta * x_raw).mean(), rel=1e-9)
        assert adjusted.variance == pytest.approx((y_raw - theta * x_raw).var(ddof=1), rel=1e-8)
        assert adjusted.unadjusted_mean == pytest.approx(y_raw.mean(), rel=1e-12)
        # the share of variance removed is about the squared correlation
        r = np.corrcoef(y_raw, x_raw)[0, 1]
        assert adjusted.variance_reduction == pytest.approx(r**2, abs=0.01)
        assert adjusted.variance_reduction > 0.4


def test_cuped_narrows_the_interval_and_keeps_the_lift_unbiased():
    rng = np.random.default_rng(22)
    reps, n, shift = 400, 1000, 1.0
    true_lift = shift / (0.7 * 20 + math.sqrt(1 - 0.49) * 20)  # gamma(2, 10) has mean 20
    covered, ratio = [], []
    for _ in range(reps):
        y_c, x_c = correlated(rng, n, rho=0.7)
        y_t, x_t = correlated(rng, n, rho=0.7, shift=shift)
        control = Aggregate.from_samples(y_c, covariate=x_c)
        treatment = Aggregate.from_samples(y_t, covariate=x_t)
        plain = frequentist(control, treatment)
        adjusted = frequentist(*cuped(control, treatment))
        covered.append(adjusted.ci[0] <= true_lift <= adjusted.ci[1])
        ratio.append(adjusted.se / plain.se)
    assert 0.92 <= np.mean(covered) <= 0.98
    assert np.mean(ratio) == pytest.approx(math.sqrt(1 - 0.49), abs=0.03)


def test_cuped_with_an_unrelated_or_constant_covariate_changes_little_or_nothing():
    rng = np.random.default_rng(23)
    y_c, y_t = rng.normal(10, 2, 2000), rng.normal(10.2, 2, 2000)
    x_c, x_t = rng.normal(5, 1, 2000), rng.normal(5, 1, 2000)
    adj_c, adj_t = cuped(
        Aggregate.from_samples(y_c, covariate=x_c), Aggregate.from_samples(y_t, covariate=x_t)
    )
    assert abs(adj_c.theta) < 0.1
    assert abs(adj_c.variance_reduction) < 0.01

    constant = np.ones(2000)
    control = Aggregate.from_samples(y_c, covariate=constant)
    treatment = Aggregate.from_samples(y_t, covariate=constant)
    adj_c, adj_t = cuped(control, treatment)
    assert adj_c.theta == 0.0
    plain, adjusted = frequentist(control, treatment), frequentist(adj_c, adj_t)
    assert adjusted.lift == pytest.approx(plain.lift) and adjusted.se == pytest.approx(plain.se)


def test_cuped_refuses_what_it_cannot_adjust():
    plain = Aggregate(n=10, sum=3, sum_squares=3)
    with_covariate = Aggregate.from_samples([1.0, 2.0, 4.0], covariate=[1.0, 1.0, 3.0])
    ratio = Aggregate.from_samples([1.0, 2.0, 4.0], denominator=[1.0, 1.0, 2.0])
    with pytest.raises(StatsError, match="control aggregate has no covariate sums"):
        cuped(plain, with_covariate)
    with pytest.raises(StatsError, match="not ratio metrics"):
        cuped(with_covariate, ratio)
    with pytest.raises(StatsError, match="takes two Aggregate"):
        cuped(with_covariate, None)  # type: ignore[arg-type]

    adj_c, _ = cuped(with_covariate, with_covariate)
    with pytest.raises(StatsError, match="same kind"):
        frequentist(adj_c, with_covariate)
    other = dataclasses.replace(adj_c, theta=adj_c.theta + 1)
    with pytest.raises(StatsError, match="different theta"):
        bayesian(adj_c, other)


# --------------------------------------------------------------------------------------------
# Ratio metrics (delta method)
# --------------------------------------------------------------------------------------------


def orders(rng, size, *, basket=50.0):
    """Per customer: number of orders and revenue (average order value is a ratio metric).

    Each order is gamma(3, basket / 3), so k orders sum to gamma(3 k, basket / 3)."""
    count = rng.poisson(1.2, size)
    value = np.where(count > 0, rng.gamma(np.maximum(3.0 * count, 1.0), basket / 3.0), 0.0)
    return value, count.astype(float)


def test_ratio_mean_and_delta_method_variance_from_linearisation():
    rng = np.random.default_rng(31)
    value, count = orders(rng, 2000)
    agg = Aggregate.from_samples(value, denominator=count)
    ratio = value.sum() / count.sum()
    assert agg.is_ratio
    assert agg.mean == pytest.approx(ratio, rel=1e-12)
    # delta method: the per-unit variance of the linearised value (m - R d) / mean(d)
    assert agg.variance == pytest.approx(
        np.var(value - ratio * count, ddof=1) / count.mean() ** 2, rel=1e-8
    )
    assert ratio_aggregate(
        n=agg.n,
        numerator_sum=agg.sum,
        numerator_sum_squares=agg.sum_squares,
        denominator_sum=agg.denominator_sum,
        denominator_sum_squares=agg.denominator_sum_squares,
        cross_sum=agg.cross_sum,
    ) == dataclasses.replace(agg)


def test_ratio_variance_matches_a_bootstrap_estimate():
    rng = np.random.default_rng(32)
    value, count = orders(rng, 2000)
    agg = Aggregate.from_samples(value, denominator=count)
    idx = rng.integers(0, agg.n, size=(2000, agg.n))
    boot = value[idx].sum(axis=1) / count[idx].sum(axis=1)
    assert agg.variance / agg.n == pytest.approx(boot.var(ddof=1), rel=0.1)


def test_frequentist_on_ratio_metrics():
    rng = np.random.default_rng(33)
    value, count = orders(rng, 3000)
    control = Aggregate.from_samples(value, denominator=count)
    value, count = orders(rng, 3000, basket=55.0)
    treatment = Aggregate.from_samples(value, denominator=count)
    result = frequentist(control, treatment)
    assert result.control_mean == control.mean
    assert result.lift == pytest.approx(treatment.mean / control.mean - 1)
    expected_var = treatment.variance / (treatment.n * control.mean**2) + (
        control.variance * treatment.mean**2 / (control.n * control.mean**4)
    )
    assert result.se == pytest.approx(math.sqrt(expected_var))


def test_ratio_interval_covers_the_true_lift_at_the_nominal_rate():
    rng = np.random.default_rng(34)
    reps, n = 1000, 2000
    covered = []
    for basket in (50.0, 55.0):
        value, count = orders(rng, (reps, n), basket=basket)
        covered.append(
            [
                Aggregate(
                    n=n,
                    sum=v.sum(),
                    sum_squares=v @ v,
                    denominator_sum=c.sum(),
                    denominator_sum_squares=c @ c,
                    cross_sum=v @ c,
                )
                for v, c in zip(value, count, strict=True)
            ]
        )
    hits = [
        lower <= 0.1 <= upper
        for c, t in zip(*covered, strict=True)
        for lower, upper in [frequentist(c, t).ci]
    ]
    assert 0.93 <= np.mean(hits) <= 0.97
