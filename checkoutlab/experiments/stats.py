"""Stats engine: A/B test analysis from per-variant aggregates.

Everything here works on sufficient statistics that SQL computes per variant (the number of
units, the sum of the metric and the sum of its squares; for ratio metrics also the denominator
sums and the cross product; for CUPED the pre-experiment covariate sums), so a comparison costs
O(1) whatever the number of exposures. There is no I/O and no state: the analysis layer builds
:class:`Aggregate` objects and calls the functions below.

The definitions follow GrowthBook's open-source engine (gbstats 0.8): lift, delta-method
variance of the relative lift, Welch-Satterthwaite degrees of freedom, two-sided p-value and
interval (``TwoSidedTTest``), confidence sequences (``SequentialTwoSidedTTest``), the Normal
effect model with its chance to win and risk (``EffectBayesianABTest``), ratio metrics
(``RatioStatistic``), CUPED (``RegressionAdjustedStatistic`` with the pooled ``theta``) and the
chi-square SRM check (``check_srm``). Where gbstats silently returns a neutral placeholder
(zero variance, a control mean of 0 under relative lift) this module raises
:class:`InsufficientDataError` instead; invalid input raises :class:`StatsError`. Both are
``ValueError`` subclasses.

Examples
--------
>>> control = Aggregate(n=1000, sum=100, sum_squares=100)      # 10.0% conversion
>>> treatment = Aggregate(n=1000, sum=130, sum_squares=130)    # 13.0% conversion
>>> result = frequentist(control, treatment)
>>> round(result.lift, 3), round(result.p_value, 4)
(0.3, 0.0657)
>>> round(bayesian(control, treatment).chance_to_win, 3)
0.967
>>> srm_p_value([5030, 4970], [0.5, 0.5]) > SRM_THRESHOLD
True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import numpy as np
from scipy import stats as _st

__all__ = [
    "SRM_THRESHOLD",
    "Aggregate",
    "BayesianResult",
    "CupedAggregate",
    "FrequentistResult",
    "InsufficientDataError",
    "Prior",
    "SrmResult",
    "StatsError",
    "adjust_results",
    "bayesian",
    "benjamini_hochberg",
    "cuped",
    "frequentist",
    "holm",
    "ratio_aggregate",
    "srm_check",
    "srm_p_value",
]

SRM_THRESHOLD = 0.001
"""A sample-ratio-mismatch p-value below this flags the experiment (GrowthBook's default)."""

# Relative tolerance for rounding in the SQL sums: a centred sum of squares slightly below zero
# (a constant metric over millions of rows) is rounding; far below zero is inconsistent input.
_ROUNDING = 1e-9
# Below this relative size a centred sum of squares is indistinguishable from rounding error.
_EXACT = 1e-12


class StatsError(ValueError):
    """Invalid input to the stats engine (inconsistent sums, bad alpha, mismatched kinds)."""


class InsufficientDataError(StatsError):
    """Valid input on which a test is undefined: zero variance, or a control mean of 0 under
    relative lift. Callers usually show "not enough data" rather than a number."""


# --------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------

_RATIO_FIELDS = ("denominator_sum", "denominator_sum_squares", "cross_sum")
_COVARIATE_FIELDS = ("covariate_sum", "covariate_sum_squares", "covariate_cross_sum")


def _as_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise StatsError(f"{name} must be an integer count of units, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    as_float = float(value)
    if not as_float.is_integer():
        raise StatsError(f"{name} must be an integer count of units, got {value!r}")
    return int(as_float)


def _as_finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise StatsError(f"{name} must be a real number, got {value!r}")
    as_float = float(value)
    if not math.isfinite(as_float):
        raise StatsError(f"{name} must be finite, got {value!r}")
    return as_float


def _centred_squares(total: float, squares: float, n: int, what: str) -> float:
    """``squares - total**2 / n`` (``(n - 1)`` times the sample variance), checked for sign.

    A result within float rounding of 0 (a constant metric summed over millions of rows) is 0.
    """
    centred = squares - total * total / n
    scale = max(abs(squares), total * total / n)
    if centred < -_ROUNDING * scale:
        raise StatsError(
            f"inconsistent sums for {what}: the sum of squares ({squares!r}) is smaller than "
            f"sum**2 / n ({total * total / n!r}), which would make the variance negative; "
            "check that the SQL sums the squares of the same values it sums"
        )
    return centred if centred > _EXACT * scale else 0.0


def _check_cauchy_schwarz(
    cross: float, products: float, centred_x: float, centred_y: float, what: str
) -> None:
    """``|sum (x - mean x)(y - mean y)| <= sqrt(centred_x centred_y)``, up to rounding."""
    bound = math.sqrt(centred_x * centred_y)
    if abs(cross) > bound + 10 * _ROUNDING * max(abs(products), bound):
        raise StatsError(
            f"inconsistent sums for {what}: the cross product implies a correlation of "
            f"magnitude {abs(cross) / bound if bound else math.inf:.4g} > 1; check that the "
            "cross sum is the sum over units of the product of the two values"
        )


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Per-variant sufficient statistics of one metric.

    Parameters
    ----------
    n
        Number of units (exposed customers or sessions) in the variant; at least 2.
    sum, sum_squares
        Sum over units of the metric value and of its square. For a conversion metric both
        are the number of converted units.
    denominator_sum, denominator_sum_squares, cross_sum
        Ratio metrics only (all three or none): sums of the per-unit denominator, of its
        square and of numerator times denominator. The metric is then
        ``sum / denominator_sum`` (e.g. revenue per order), analysed with the delta method.
    covariate_sum, covariate_sum_squares, covariate_cross_sum
        CUPED only (all three or none): sums of the per-unit pre-experiment covariate, of its
        square and of metric times covariate. Used by :func:`cuped`.

    Notes
    -----
    ``mean`` and ``variance`` describe the metric per unit: for a mean metric the sample mean
    and the sample variance (``n - 1`` denominator); for a ratio metric the ratio of sums and
    the delta-method variance (gbstats ``RatioStatistic``), so that in both cases the standard
    error of ``mean`` is ``sqrt(variance / n)``.

    Examples
    --------
    >>> a = Aggregate(n=4, sum=10.0, sum_squares=30.0)   # values 1, 2, 3, 4
    >>> a.mean, round(a.variance, 6)
    (2.5, 1.666667)
    """

    n: int
    sum: float
    sum_squares: float
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    cross_sum: float | None = None
    covariate_sum: float | None = None
    covariate_sum_squares: float | None = None
    covariate_cross_sum: float | None = None

    def __post_init__(self) -> None:
        n = _as_count(self.n, "n")
        if n < 2:
            raise StatsError(
                f"n must be at least 2 to estimate a variance, got {n}; "
                "wait for more exposures before analysing this variant"
            )
        object.__setattr__(self, "n", n)
        for name in ("sum", "sum_squares", *_RATIO_FIELDS, *_COVARIATE_FIELDS):
            value = getattr(self, name)
            if value is not None or name in ("sum", "sum_squares"):
                object.__setattr__(self, name, _as_finite(value, name))
        for group, label in ((_RATIO_FIELDS, "ratio metrics"), (_COVARIATE_FIELDS, "CUPED")):
            given = [name for name in group if getattr(self, name) is not None]
            if given and len(given) != len(group):
                missing = ", ".join(name for name in group if name not in given)
                raise StatsError(f"{label} need {', '.join(group)} together; missing: {missing}")

        centred_y = _centred_squares(self.sum, self.sum_squares, n, "the metric")
        if self.is_ratio:
            assert self.denominator_sum is not None and self.cross_sum is not None
            centred_d = self.denominator_variance * (n - 1)
            _check_cauchy_schwarz(
                self.covariance * (n - 1),
                self.cross_sum,
                centred_y,
                centred_d,
                "the ratio metric (cross_sum)",
            )
            if self.denominator_sum == 0:
                raise InsufficientDataError(
                    "denominator_sum is 0: the ratio metric is undefined for this variant"
                )
        if self.has_covariate:
            assert self.covariate_cross_sum is not None
            centred_x = self.covariate_variance * (n - 1)
            _check_cauchy_schwarz(
                self.covariate_covariance * (n - 1),
                self.covariate_cross_sum,
                centred_y,
                centred_x,
                "CUPED (covariate_cross_sum)",
            )

    @classmethod
    def from_samples(
        cls,
        values: Any,
        *,
        denominator: Any = None,
        covariate: Any = None,
    ) -> Aggregate:
        """Aggregate per-unit arrays (vectorised); for notebooks and tests.

        In production the sums come from SQL; this is the same computation in numpy.
        """
        y = np.asarray(values, dtype=float)
        fields: dict[str, Any] = {
            "n": y.size,
            "sum": float(y.sum()),
            "sum_squares": float(y @ y),
        }
        if denominator is not None:
            d = np.asarray(denominator, dtype=float)
            if d.shape != y.shape:
                raise StatsError("denominator must have the same shape as values")
            fields |= {
                "denominator_sum": float(d.sum()),
                "denominator_sum_squares": float(d @ d),
                "cross_sum": float(y @ d),
            }
        if covariate is not None:
            x = np.asarray(covariate, dtype=float)
            if x.shape != y.shape:
                raise StatsError("covariate must have the same shape as values")
            fields |= {
                "covariate_sum": float(x.sum()),
                "covariate_sum_squares": float(x @ x),
                "covariate_cross_sum": float(y @ x),
            }
        return cls(**fields)

    @property
    def is_ratio(self) -> bool:
        """Whether the denominator fields are present (a ratio metric)."""
        return self.denominator_sum is not None

    @property
    def has_covariate(self) -> bool:
        """Whether the CUPED covariate fields are present."""
        return self.covariate_sum is not None

    @property
    def numerator_mean(self) -> float:
        """``sum / n``: the mean of the (numerator) metric per unit."""
        return self.sum / self.n

    @property
    def numerator_variance(self) -> float:
        """Sample variance of the (numerator) metric per unit."""
        return _centred_squares(self.sum, self.sum_squares, self.n, "the metric") / (self.n - 1)

    @property
    def denominator_mean(self) -> float:
        """``denominator_sum / n`` (ratio metrics)."""
        return self._require("denominator_sum") / self.n

    @property
    def denominator_variance(self) -> float:
        """Sample variance of the denominator per unit (ratio metrics)."""
        total = self._require("denominator_sum")
        squares = self._require("denominator_sum_squares")
        return _centred_squares(total, squares, self.n, "the denominator") / (self.n - 1)

    @property
    def covariance(self) -> float:
        """Sample covariance of numerator and denominator per unit (ratio metrics)."""
        denominator = self._require("denominator_sum")
        cross = self._require("cross_sum")
        return (cross - self.sum * denominator / self.n) / (self.n - 1)

    @property
    def covariate_mean(self) -> float:
        """Mean of the pre-experiment covariate per unit (CUPED)."""
        return self._require("covariate_sum") / self.n

    @property
    def covariate_variance(self) -> float:
        """Sample variance of the covariate per unit (CUPED)."""
        total = self._require("covariate_sum")
        squares = self._require("covariate_sum_squares")
        return _centred_squares(total, squares, self.n, "the covariate") / (self.n - 1)

    @property
    def covariate_covariance(self) -> float:
        """Sample covariance of the metric and the covariate per unit (CUPED)."""
        covariate = self._require("covariate_sum")
        cross = self._require("covariate_cross_sum")
        return (cross - self.sum * covariate / self.n) / (self.n - 1)

    @property
    def mean(self) -> float:
        """The metric: ``sum / n``, or ``sum / denominator_sum`` for a ratio metric."""
        if self.is_ratio:
            return self.sum / self._require("denominator_sum")
        return self.numerator_mean

    @property
    def unadjusted_mean(self) -> float:
        """Same as :attr:`mean` (see :attr:`CupedAggregate.unadjusted_mean`)."""
        return self.mean

    @property
    def variance(self) -> float:
        """Per-unit variance of the metric: sample variance, or the delta-method variance of
        the ratio (gbstats ``RatioStatistic``) scaled so that ``var(mean) = variance / n``."""
        if not self.is_ratio:
            return self.numerator_variance
        mean_m, mean_d = self.numerator_mean, self.denominator_mean
        variance = (
            self.numerator_variance / mean_d**2
            - 2 * self.covariance * mean_m / mean_d**3
            + mean_m**2 * self.denominator_variance / mean_d**4
        )
        return max(variance, 0.0)

    def _require(self, name: str) -> float:
        value = getattr(self, name)
        if value is None:
            kind = "a ratio metric" if name in _RATIO_FIELDS else "CUPED"
            raise StatsError(f"this aggregate has no {name}: it is needed for {kind}")
        return value


def ratio_aggregate(
    *,
    n: int,
    numerator_sum: float,
    numerator_sum_squares: float,
    denominator_sum: float,
    denominator_sum_squares: float,
    cross_sum: float,
) -> Aggregate:
    """An :class:`Aggregate` for the ratio metric ``numerator_sum / denominator_sum``.

    ``n`` counts units (the randomisation unit, e.g. customers), not denominator events;
    ``cross_sum`` is the sum over units of numerator times denominator.

    Examples
    --------
    >>> aov = ratio_aggregate(n=3, numerator_sum=60.0, numerator_sum_squares=1400.0,
    ...                       denominator_sum=3.0, denominator_sum_squares=5.0, cross_sum=70.0)
    >>> aov.mean
    20.0
    """
    return Aggregate(
        n=n,
        sum=numerator_sum,
        sum_squares=numerator_sum_squares,
        denominator_sum=denominator_sum,
        denominator_sum_squares=denominator_sum_squares,
        cross_sum=cross_sum,
    )


# --------------------------------------------------------------------------------------------
# CUPED
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CupedAggregate:
    """A variant's metric after CUPED (gbstats ``RegressionAdjustedStatistic``).

    ``mean`` is ``mean(y) - theta * mean(x)`` and ``variance`` is
    ``var(y) + theta**2 var(x) - 2 theta cov(x, y)``. Relative lift divides by the control's
    ``unadjusted_mean`` (the plain metric mean), as gbstats does.
    """

    n: int
    mean: float
    variance: float
    unadjusted_mean: float
    unadjusted_variance: float
    theta: float

    @property
    def variance_reduction(self) -> float:
        """Share of the per-unit variance removed by the adjustment (0 when nothing)."""
        if self.unadjusted_variance == 0:
            return 0.0
        return 1.0 - self.variance / self.unadjusted_variance


def cuped(control: Aggregate, treatment: Aggregate) -> tuple[CupedAggregate, CupedAggregate]:
    """Adjust a control/treatment pair with their pre-experiment covariate (CUPED).

    ``theta = cov(y, x) / var(x)`` is estimated on both variants pooled (the same for both,
    so the adjustment does not bias the difference); when the pooled metric or covariate has
    no variance, ``theta`` is 0 and the result equals the unadjusted metric (as gbstats). Pass
    the returned pair to :func:`frequentist` or :func:`bayesian`.

    Examples
    --------
    >>> c = Aggregate.from_samples([1.0, 2.0, 3.0, 5.0], covariate=[1.0, 2.0, 3.0, 4.0])
    >>> t = Aggregate.from_samples([2.0, 2.0, 4.0, 6.0], covariate=[1.0, 1.0, 3.0, 4.0])
    >>> adj_c, adj_t = cuped(c, t)
    >>> round(adj_c.theta, 4), adj_c.variance < c.variance
    (1.2316, True)
    """
    for name, aggregate in (("control", control), ("treatment", treatment)):
        if not isinstance(aggregate, Aggregate):
            raise StatsError(f"cuped() takes two Aggregate objects; {name} is {aggregate!r}")
        if aggregate.is_ratio:
            raise StatsError("CUPED is supported for mean metrics, not ratio metrics")
        if not aggregate.has_covariate:
            raise StatsError(
                f"the {name} aggregate has no covariate sums: set covariate_sum, "
                "covariate_sum_squares and covariate_cross_sum (pre-experiment values per unit)"
            )
    pooled = Aggregate(
        n=control.n + treatment.n,
        sum=control.sum + treatment.sum,
        sum_squares=control.sum_squares + treatment.sum_squares,
        covariate_sum=_add(control.covariate_sum, treatment.covariate_sum),
        covariate_sum_squares=_add(control.covariate_sum_squares, treatment.covariate_sum_squares),
        covariate_cross_sum=_add(control.covariate_cross_sum, treatment.covariate_cross_sum),
    )
    if pooled.covariate_variance == 0 or pooled.variance == 0:
        theta = 0.0
    else:
        theta = pooled.covariate_covariance / pooled.covariate_variance
    return _adjust(control, theta), _adjust(treatment, theta)


def _add(a: float | None, b: float | None) -> float:
    assert a is not None and b is not None
    return a + b


def _adjust(aggregate: Aggregate, theta: float) -> CupedAggregate:
    variance = (
        aggregate.variance
        + theta**2 * aggregate.covariate_variance
        - 2 * theta * aggregate.covariate_covariance
    )
    return CupedAggregate(
        n=aggregate.n,
        mean=aggregate.mean - theta * aggregate.covariate_mean,
        variance=max(variance, 0.0),
        unadjusted_mean=aggregate.mean,
        unadjusted_variance=aggregate.variance,
        theta=theta,
    )


# --------------------------------------------------------------------------------------------
# The effect: lift and its variance (shared by both engines)
# --------------------------------------------------------------------------------------------

AnyAggregate = Aggregate | CupedAggregate


@dataclass(frozen=True, slots=True)
class _Effect:
    lift: float
    variance: float
    dof: float
    n_control: int
    n_treatment: int
    control_mean: float
    treatment_mean: float
    control_unadjusted_mean: float


def _effect(control: AnyAggregate, treatment: AnyAggregate, *, relative: bool) -> _Effect:
    for name, aggregate in (("control", control), ("treatment", treatment)):
        if not isinstance(aggregate, Aggregate | CupedAggregate):
            raise StatsError(
                f"{name} must be an Aggregate (or a CupedAggregate from cuped()), "
                f"got {type(aggregate).__name__}"
            )
    if type(control) is not type(treatment):
        raise StatsError(
            "control and treatment must be the same kind: adjust both with "
            "cuped(control, treatment), or neither"
        )
    both_plain = isinstance(control, Aggregate) and isinstance(treatment, Aggregate)
    if both_plain and control.is_ratio != treatment.is_ratio:
        raise StatsError(
            "control and treatment must both be ratio metrics (denominator sums) or neither"
        )
    both_adjusted = isinstance(control, CupedAggregate) and isinstance(treatment, CupedAggregate)
    if both_adjusted and control.theta != treatment.theta:
        raise StatsError(
            "control and treatment were adjusted with different theta; adjust them "
            "together with cuped(control, treatment)"
        )

    n_c, n_t = control.n, treatment.n
    var_c, var_t = control.variance, treatment.variance
    for name, variance in (("control", var_c), ("treatment", var_t)):
        if not variance > 0:
            raise InsufficientDataError(
                f"the {name} variant has zero variance (every unit has the same value); "
                "the test is undefined until the metric varies"
            )
    mean_c, mean_t = control.mean, treatment.mean
    base_c, base_t = control.unadjusted_mean, treatment.unadjusted_mean
    if relative:
        if mean_c == 0 or base_c == 0:
            raise InsufficientDataError(
                "relative lift is undefined when the control mean is 0; "
                "use relative=False for the absolute difference"
            )
        lift = (mean_t - mean_c) / base_c
        variance = var_t / (base_c**2 * n_t) + var_c * base_t**2 / (base_c**4 * n_c)
    else:
        lift = mean_t - mean_c
        variance = var_t / n_t + var_c / n_c
    # Welch-Satterthwaite on the per-variant variances, for both lift types (as gbstats).
    dof = (var_t / n_t + var_c / n_c) ** 2 / (
        var_t**2 / (n_t**2 * (n_t - 1)) + var_c**2 / (n_c**2 * (n_c - 1))
    )
    return _Effect(
        lift=lift,
        variance=variance,
        dof=dof,
        n_control=n_c,
        n_treatment=n_t,
        control_mean=mean_c,
        treatment_mean=mean_t,
        control_unadjusted_mean=base_c,
    )


def _check_alpha(alpha: float) -> float:
    alpha = _as_finite(alpha, "alpha")
    if not 0 < alpha < 1:
        raise StatsError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    return alpha


# --------------------------------------------------------------------------------------------
# Frequentist
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrequentistResult:
    """Outcome of :func:`frequentist`.

    ``lift`` is relative (``0.05`` is +5%) or absolute per ``relative``; ``ci`` is the
    ``1 - alpha`` interval of the lift (a confidence sequence when ``sequential``); ``se`` is
    the standard error of the lift; ``dof`` the Welch-Satterthwaite degrees of freedom.
    ``adjusted_p_value`` is set by :func:`adjust_results`.
    """

    lift: float
    ci: tuple[float, float]
    p_value: float
    se: float
    dof: float
    relative: bool
    alpha: float
    sequential: bool
    control_mean: float
    treatment_mean: float
    adjusted_p_value: float | None = None

    @property
    def significant(self) -> bool:
        """Whether the (adjusted, when set) p-value is below ``alpha``."""
        p = self.p_value if self.adjusted_p_value is None else self.adjusted_p_value
        return p < self.alpha


def frequentist(
    control: AnyAggregate,
    treatment: AnyAggregate,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    sequential: bool = False,
    sequential_tuning: float = 5000,
) -> FrequentistResult:
    """Welch t-test of treatment against control (gbstats ``TwoSidedTTest``).

    The absolute lift is ``mean_t - mean_c``. The relative lift is ``mean_t / mean_c - 1``
    with delta-method variance ``var_t / (n_t mean_c**2) + var_c mean_t**2 / (n_c mean_c**4)``.
    The p-value and interval use Student's t with Welch-Satterthwaite degrees of freedom.

    With ``sequential=True`` the interval is an always-valid confidence sequence
    (Waudby-Smith et al. 2023, eq. 9; gbstats ``SequentialTwoSidedTTest``) and the p-value
    its e-value inverse, so results may be looked at any number of times. ``sequential_tuning``
    is the total sample size at which the sequence is tightest (gbstats default 5000).
    """
    alpha = _check_alpha(alpha)
    effect = _effect(control, treatment, relative=relative)
    se = math.sqrt(effect.variance)
    if not sequential:
        t_stat = effect.lift / se
        p_value = float(2 * _st.t.sf(abs(t_stat), effect.dof))
        half_width = float(_st.t.ppf(1 - alpha / 2, effect.dof)) * se
    else:
        tuning = _as_finite(sequential_tuning, "sequential_tuning")
        if tuning <= 0:
            raise StatsError(f"sequential_tuning must be positive, got {sequential_tuning}")
        total = effect.n_control + effect.n_treatment
        rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
        spread = total * rho2 + 1
        half_width = math.sqrt(effect.variance * total) * math.sqrt(
            2 * spread * math.log(math.sqrt(spread) / alpha) / (total**2 * rho2)
        )
        st2 = effect.lift**2 * total / effect.variance
        log_evalue = rho2 * st2 / (2 * spread) - 0.5 * math.log(spread)
        p_value = min(math.exp(-log_evalue), 1.0) if log_evalue > -700 else 1.0
    return FrequentistResult(
        lift=effect.lift,
        ci=(effect.lift - half_width, effect.lift + half_width),
        p_value=p_value,
        se=se,
        dof=effect.dof,
        relative=relative,
        alpha=alpha,
        sequential=sequential,
        control_mean=effect.control_mean,
        treatment_mean=effect.treatment_mean,
    )


# --------------------------------------------------------------------------------------------
# Multiple testing
# --------------------------------------------------------------------------------------------


def _p_array(p_values: Any) -> np.ndarray:
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise StatsError("p_values must be a one-dimensional sequence")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise StatsError("p_values must all be between 0 and 1")
    return p


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the input order.

    Controls the family-wise error rate under any dependence.

    >>> holm([0.01, 0.04, 0.03]).round(4).tolist()
    [0.03, 0.06, 0.06]
    """
    p = _p_array(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum((m - np.arange(m)) * p[order], 1.0))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (q-values), in the input order.

    Controls the false discovery rate for independent or positively dependent tests.

    >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(4).tolist()
    [0.03, 0.04, 0.04]
    """
    p = _p_array(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m / np.arange(1, m + 1))  # factor >= 1 exactly: never below p
    stepped = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


_ADJUSTERS = {"holm": holm, "bh": benjamini_hochberg, "benjamini_hochberg": benjamini_hochberg}

T = TypeVar("T")


def adjust_results(results: T, *, method: Literal["holm", "bh"] = "holm") -> T:
    """Correct the p-values of many comparisons at once (metrics x variants).

    ``results`` is a :class:`FrequentistResult`, or a dict / list / tuple nesting them to any
    depth (e.g. ``{metric: {variant: result}}``); all of them form one family. Returns the
    same structure with ``adjusted_p_value`` set on every result.
    """
    if method not in _ADJUSTERS:
        raise StatsError(f"method must be 'holm' or 'bh', got {method!r}")
    leaves: list[FrequentistResult] = []

    def collect(node: Any) -> None:
        if isinstance(node, FrequentistResult):
            leaves.append(node)
        elif isinstance(node, Mapping):
            for value in node.values():
                collect(value)
        elif isinstance(node, list | tuple):
            for value in node:
                collect(value)
        else:
            raise StatsError(
                "adjust_results takes FrequentistResult objects in dicts, lists or tuples; "
                f"found {type(node).__name__}"
            )

    collect(results)
    adjusted = iter(_ADJUSTERS[method]([r.p_value for r in leaves]).tolist())

    def rebuild(node: Any) -> Any:
        if isinstance(node, FrequentistResult):
            return replace(node, adjusted_p_value=next(adjusted))
        if isinstance(node, Mapping):
            return {key: rebuild(value) for key, value in node.items()}
        return type(node)(rebuild(value) for value in node)

    return rebuild(results)


# --------------------------------------------------------------------------------------------
# Bayesian
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prior:
    """Normal prior on the effect (gbstats ``GaussianPrior``).

    ``proper=False`` (the default, as gbstats) is a flat prior: the posterior is the Normal
    likelihood of the data. ``scale`` says whether ``mean`` and ``variance`` describe the
    relative lift (default) or the absolute difference; they are rescaled by the control mean
    when the analysis uses the other one, as gbstats does.
    """

    mean: float = 0.0
    variance: float = 1.0
    proper: bool = False
    scale: Literal["relative", "absolute"] = "relative"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _as_finite(self.mean, "prior mean"))
        variance = _as_finite(self.variance, "prior variance")
        if variance <= 0:
            raise StatsError(f"prior variance must be positive, got {self.variance}")
        object.__setattr__(self, "variance", variance)
        if self.scale not in ("relative", "absolute"):
            raise StatsError(f"prior scale must be 'relative' or 'absolute', got {self.scale!r}")


@dataclass(frozen=True, slots=True)
class BayesianResult:
    """Outcome of :func:`bayesian`.

    ``lift`` is the posterior mean of the effect, ``se`` its posterior standard deviation and
    ``ci`` the central ``1 - alpha`` credible interval. ``chance_to_win`` is P(effect > 0)
    (P(effect < 0) for inverse metrics). ``risk`` is ``(risk_control, risk_treatment)``: the
    expected loss, in lift units, of shipping control (``E[max(effect, 0)]``) or treatment
    (``E[max(-effect, 0)]``), swapped for inverse metrics.
    """

    lift: float
    ci: tuple[float, float]
    chance_to_win: float
    risk: tuple[float, float]
    se: float
    relative: bool
    alpha: float
    inverse: bool
    control_mean: float
    treatment_mean: float

    @property
    def risk_control(self) -> float:
        """Expected loss of keeping control."""
        return self.risk[0]

    @property
    def risk_treatment(self) -> float:
        """Expected loss of shipping the treatment."""
        return self.risk[1]


def bayesian(
    control: AnyAggregate,
    treatment: AnyAggregate,
    *,
    relative: bool = True,
    prior: Prior | None = None,
    alpha: float = 0.05,
    inverse: bool = False,
) -> BayesianResult:
    """Normal model of the effect with a Normal prior (gbstats ``EffectBayesianABTest``).

    The likelihood of the lift is Normal with the estimate and variance of
    :func:`frequentist`; the posterior combines it with ``prior`` by precision weighting. Chance
    to win, credible interval and risk (expected loss) are closed-form for the Normal
    posterior. ``inverse=True`` is for metrics where lower is better (fraud rate, time to pay).
    """
    alpha = _check_alpha(alpha)
    prior = Prior() if prior is None else prior
    if not isinstance(prior, Prior):
        raise StatsError(f"prior must be a Prior, got {type(prior).__name__}")
    effect = _effect(control, treatment, relative=relative)
    data_mean, data_variance = effect.lift, effect.variance

    if prior.proper:
        base = effect.control_unadjusted_mean
        prior_mean, prior_variance = prior.mean, prior.variance
        if relative and prior.scale == "absolute":
            prior_mean, prior_variance = prior.mean / abs(base), prior.variance / base**2
        elif not relative and prior.scale == "relative":
            if base == 0:
                raise InsufficientDataError(
                    "a relative-scale prior cannot be used for an absolute lift when the "
                    "control mean is 0; give the prior with scale='absolute'"
                )
            prior_mean, prior_variance = prior.mean * abs(base), prior.variance * base**2
        precision = 1 / data_variance + 1 / prior_variance
        mean = (data_mean / data_variance + prior_mean / prior_variance) / precision
    else:
        precision = 1 / data_variance
        mean = data_mean
    sd = math.sqrt(1 / precision)

    z = mean / sd
    chance = float(_st.norm.cdf(z))
    density = float(_st.norm.pdf(z))
    risk_control = mean * chance + sd * density  # E[max(effect, 0)]
    risk_treatment = -mean * float(_st.norm.cdf(-z)) + sd * density  # E[max(-effect, 0)]
    if inverse:
        chance = 1 - chance
        risk_control, risk_treatment = risk_treatment, risk_control
    quantile = float(_st.norm.ppf(1 - alpha / 2))
    return BayesianResult(
        lift=mean,
        ci=(mean - quantile * sd, mean + quantile * sd),
        chance_to_win=chance,
        risk=(risk_control, risk_treatment),
        se=sd,
        relative=relative,
        alpha=alpha,
        inverse=inverse,
        control_mean=effect.control_mean,
        treatment_mean=effect.treatment_mean,
    )


# --------------------------------------------------------------------------------------------
# Sample ratio mismatch
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Outcome of :func:`srm_check`: the p-value, whether it flags a mismatch, and the counts
    the configured weights predict."""

    p_value: float
    mismatch: bool
    expected: tuple[float, ...]


def _srm_inputs(counts: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
    observed = np.asarray(counts, dtype=float)
    w = np.asarray(weights, dtype=float)
    if observed.ndim != 1 or w.ndim != 1 or observed.size != w.size:
        raise StatsError("counts and weights must be flat sequences of the same length")
    if observed.size < 2:
        raise StatsError("the SRM check needs at least two variants")
    if not np.isfinite(observed).all() or (observed < 0).any():
        raise StatsError("counts must be finite and non-negative")
    if (observed != np.round(observed)).any():
        raise StatsError("counts must be whole numbers of units")
    if not np.isfinite(w).all() or (w <= 0).any():
        raise StatsError(
            "weights must be positive; drop variants with zero weight from counts and weights"
        )
    return observed, w


def srm_p_value(
    counts: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray
) -> float:
    """Chi-square goodness-of-fit p-value of the observed unit counts per variant against the
    configured weights (which need not sum to 1). 1.0 when there are no units yet.

    >>> round(srm_p_value([1000, 1100], [1, 1]), 4)
    0.0291
    """
    observed, w = _srm_inputs(counts, weights)
    total = observed.sum()
    if total == 0:
        return 1.0
    expected = w / w.sum() * total
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return float(_st.chi2.sf(statistic, observed.size - 1))


def srm_check(
    counts: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    *,
    threshold: float = SRM_THRESHOLD,
) -> SrmResult:
    """:func:`srm_p_value` with the verdict: ``mismatch`` when the p-value is below
    ``threshold`` (default :data:`SRM_THRESHOLD`)."""
    observed, w = _srm_inputs(counts, weights)
    p_value = srm_p_value(observed, w)
    expected = w / w.sum() * observed.sum()
    return SrmResult(
        p_value=p_value,
        mismatch=p_value < threshold,
        expected=tuple(float(e) for e in expected),
    )
