"""A checkout simulator for method ordering, and a side-by-side bandit benchmark.

The simulator draws shoppers (device, OS, wallets, country, currency, basket size, returning
customer and last method) and the methods they are eligible for (the platform's own rules in
``checkoutlab.profile.methods``, listed in the merchant's static order). Conversion depends on
the method shown first and, mildly, on the second one::

    P(convert | order) = sigmoid(base(x) + u(first | x) + rest_weight * u(second | x))

with method utilities ``u`` that depend on context: iOS shoppers convert more with Apple Pay,
Android with Google Pay, Dutch with iDEAL, German with SEPA or Klarna, large baskets with bank
transfer or Klarna, a returning customer with the method used last time. Half-way
(``shift_at``) preferences shift: a Klarna push in Germany overtakes SEPA, Google Pay loses
its edge on Android (card autofill improved), large baskets move from bank transfer to Klarna.

The best achievable conversion puts the two highest-utility methods first, so the regret of a
decision is ``best - P(convert | order chosen)`` (expected, not realised, so it has no outcome
noise). :func:`simulate` runs every policy on the **same** stream of shoppers, and the outcome
of showing method ``m`` first in round ``t`` uses the same uniform draw ``U[t, m]`` for every
policy (``converted = U[t, m] < P``), so differences between policies are not luck of the draw.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from checkoutlab.bandits.features import context_features
from checkoutlab.bandits.policies import (
    EpsilonGreedyPolicy,
    LinUCBPolicy,
    LogisticSoftmaxPolicy,
    RandomOrderPolicy,
    ThompsonSamplingPolicy,
    UCBPolicy,
    eligible_arms,
)
from checkoutlab.bandits.policy import ContextRulesPolicy, MerchantOrderPolicy, Ranking
from checkoutlab.merchants.schemas import MethodType
from checkoutlab.profile.methods import is_eligible

M = MethodType
ARMS: list[MethodType] = list(MethodType)
ARM_INDEX = {arm: i for i, arm in enumerate(ARMS)}

#: The simulated merchant's static order (what ``merchant_order`` shows).
MERCHANT_ORDER: list[MethodType] = [
    M.card,
    M.apple_pay,
    M.google_pay,
    M.klarna,
    M.bank_transfer,
    M.sepa_debit,
    M.ideal,
]

COUNTRIES = ["US", "GB", "DE", "NL", "FR", "ES", "JP"]
COUNTRY_P = [0.25, 0.12, 0.22, 0.16, 0.10, 0.07, 0.08]
CURRENCY = {"US": "USD", "GB": "GBP", "DE": "EUR", "NL": "EUR", "FR": "EUR", "ES": "EUR"}
CURRENCY["JP"] = "JPY"
LOCALE = {"US": "en", "GB": "en", "DE": "de", "NL": "en", "FR": "fr", "ES": "es", "JP": "ja"}
MINOR_PER_MAJOR = {"USD": 100, "GBP": 100, "EUR": 100, "JPY": 1}  # JPY amounts as yen
YEN_PER_UNIT = 150.0


def _sigmoid(z: np.ndarray | float) -> Any:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Stream:
    """A simulated stream of checkouts: contexts, eligible methods and the ground truth."""

    contexts: list[dict[str, Any]]
    methods: list[list[MethodType]]
    utility: np.ndarray  # (n, n_arms) logit shift of each method shown first; nan if ineligible
    base: np.ndarray  # (n,) base logit
    uniforms: np.ndarray  # (n, n_arms) common random numbers for the outcomes
    shift_round: int
    rest_weight: float
    best: np.ndarray = field(init=False)  # (n,) best achievable conversion probability

    def __post_init__(self) -> None:
        top = np.sort(np.where(np.isnan(self.utility), -np.inf, self.utility), axis=1)[:, ::-1]
        second = np.where(np.isfinite(top[:, 1]), top[:, 1], 0.0)
        self.best = _sigmoid(self.base + top[:, 0] + self.rest_weight * second)

    def __len__(self) -> int:
        return len(self.contexts)

    def conversion(self, t: int, order: list[MethodType]) -> float:
        """Expected conversion of showing ``order`` in round ``t``."""
        u = self.utility[t]
        z = self.base[t] + u[ARM_INDEX[order[0]]]
        if len(order) > 1:
            z += self.rest_weight * u[ARM_INDEX[order[1]]]
        if math.isnan(z):
            raise ValueError(f"round {t}: order {order} shows a method the shopper cannot use")
        return float(1.0 / (1.0 + math.exp(-z)))

    def outcome(self, t: int, order: list[MethodType]) -> tuple[float, float]:
        """(reward 0/1, expected conversion) of ``order`` in round ``t``."""
        p = self.conversion(t, order)
        return float(self.uniforms[t, ARM_INDEX[order[0]]] < p), p

    def first_method_values(self, t: int) -> dict[MethodType, float]:
        """Conversion with each eligible method first, ignoring the rest of the order."""
        u = self.utility[t]
        return {m: float(_sigmoid(self.base[t] + u[ARM_INDEX[m]])) for m in self.methods[t]}


def _utilities(
    *,
    phase2: np.ndarray,
    kind: np.ndarray,
    os_name: np.ndarray,
    country: np.ndarray,
    major: np.ndarray,
) -> np.ndarray:
    """Logit shift of each method shown first (before eligibility and last-method bonus)."""
    n = len(kind)
    u = np.zeros((n, len(ARMS)))
    handheld = kind != "desktop"
    ios, android = os_name == "ios", os_name == "android"
    large, small = major > 300, major < 30
    very_large = major > 800
    euro = np.isin(country, ["DE", "NL", "FR", "ES"])
    de, nl = country == "DE", country == "NL"

    u[:, ARM_INDEX[M.card]] = np.where(handheld, np.where(phase2, 0.1, -0.3), 0.0)
    u[:, ARM_INDEX[M.apple_pay]] = np.where(
        ios & handheld, 0.9, np.where(os_name == "macos", 0.3, 0)
    )
    u[:, ARM_INDEX[M.google_pay]] = np.where(
        android, np.where(phase2, -0.1, 0.7), np.where(kind == "desktop", 0.1, 0.0)
    )
    u[:, ARM_INDEX[M.ideal]] = np.where(nl, 1.1, np.where(euro, -0.8, 0.0))
    u[:, ARM_INDEX[M.sepa_debit]] = np.where(
        de, np.where(phase2, 0.1, 0.7), np.where(nl, -0.2, -0.1)
    )
    klarna = np.where(de, np.where(phase2, 1.2, 0.4), np.isin(country, ["US", "GB"]) * 0.1)
    klarna = klarna + np.where(large, np.where(phase2, 1.0, 0.5), 0.0) - 0.4 * small
    u[:, ARM_INDEX[M.klarna]] = klarna
    u[:, ARM_INDEX[M.bank_transfer]] = (
        -0.6 + np.where(very_large, np.where(phase2, 0.6, 1.6), 0.0) + 0.3 * (country == "JP")
    )
    return u


def generate_stream(
    n_rounds: int, seed: int = 0, *, shift_at: float = 0.5, rest_weight: float = 0.25
) -> Stream:
    """Draw ``n_rounds`` checkouts; preferences shift after ``shift_at`` of the rounds."""
    if n_rounds < 1:
        raise ValueError(f"n_rounds must be at least 1, got {n_rounds}")
    if not 0.0 <= shift_at <= 1.0:
        raise ValueError(f"shift_at must be in [0, 1], got {shift_at}")
    if not 0.0 <= rest_weight < 1.0:
        raise ValueError(f"rest_weight must be in [0, 1), got {rest_weight}")
    rng = np.random.default_rng(seed)
    n = n_rounds
    country = rng.choice(COUNTRIES, size=n, p=COUNTRY_P)
    kind = rng.choice(["mobile", "desktop", "tablet"], size=n, p=[0.55, 0.38, 0.07])
    handheld = kind != "desktop"
    ios_share = np.where(country == "JP", 0.7, 0.5)
    os_name = np.where(
        handheld,
        np.where(rng.random(n) < ios_share, "ios", "android"),
        np.where(rng.random(n) < 0.4, "macos", "windows"),
    )
    apple_pay = ((os_name == "ios") & (rng.random(n) < 0.9)) | (
        (os_name == "macos") & (rng.random(n) < 0.5)
    )
    google_pay = ((os_name == "android") & (rng.random(n) < 0.85)) | (
        np.isin(os_name, ["windows", "macos"]) & (rng.random(n) < 0.35)
    )
    major = np.exp(rng.normal(math.log(70.0), 1.1, size=n))
    returning = rng.random(n) < 0.4
    shift_round = round(shift_at * n)
    phase2 = np.arange(n) >= shift_round

    utility = _utilities(phase2=phase2, kind=kind, os_name=os_name, country=country, major=major)
    base = -0.5 + 0.3 * returning - 0.2 * handheld - 0.15 * np.log(major / 70.0)
    uniforms = rng.random((n, len(ARMS)))
    last_pick = rng.random(n)

    contexts: list[dict[str, Any]] = []
    methods: list[list[MethodType]] = []
    for t in range(n):
        currency = CURRENCY[country[t]]
        value = major[t] * (YEN_PER_UNIT if currency == "JPY" else MINOR_PER_MAJOR[currency])
        context: dict[str, Any] = {
            "device": {
                "type": str(kind[t]),
                "os": str(os_name[t]),
                "biometric": bool(handheld[t]),
                "apple_pay": bool(apple_pay[t]),
                "google_pay": bool(google_pay[t]),
                "payment_request": bool(apple_pay[t] or google_pay[t]),
            },
            "network": {"proxy": False},
            "location": {
                "country": str(country[t]),
                "locale": LOCALE[country[t]],
                "timezone": None,
            },
            "currency": currency,
            "amount": {"value": round(value), "currency": currency},
        }
        eligible = [m for m in MERCHANT_ORDER if is_eligible(m, currency=currency, context=context)]
        last = None
        if returning[t]:
            last = eligible[int(last_pick[t] * len(eligible))]
            utility[t, ARM_INDEX[last]] += 0.4  # habit: the method that worked last time
        context["customer"] = {
            "returning": bool(returning[t]),
            "payments_count": int(returning[t]) * 3,
            "average_amount": round(value) if returning[t] else None,
            "last_method": last.value if last else None,
            "disputes": 0,
        }
        ineligible = [ARM_INDEX[m] for m in ARMS if m not in eligible]
        utility[t, ineligible] = np.nan
        contexts.append(context)
        methods.append(eligible)
    return Stream(contexts, methods, utility, base, uniforms, shift_round, rest_weight)


class VowpalWabbitPolicy:
    """Vowpal Wabbit ``--cb_explore_adf`` behind the ordering API (benchmark only).

    Shared features are :func:`context_features`, one action namespace per method, with
    ``-q sa`` interactions. The first method is sampled from VW's pmf; the rest follow the pmf
    (ties in the merchant's order). ``update`` must follow the ``rank`` it answers (VW needs
    the whole multi-line example and the probability of the action it learns from).
    Requires the optional ``vowpalwabbit`` package.
    """

    name = "vw_cb_explore_adf"
    version = "vw"

    def __init__(self, args: str = "--cb_explore_adf --epsilon 0.05 -q sa", seed: int = 0):
        import vowpalwabbit

        self.args = args
        self._vw = vowpalwabbit.Workspace(f"{args} --quiet --random_seed {seed}")
        self._rng = np.random.default_rng(seed)
        self._pending: tuple[list[str], list[MethodType], int, float] | None = None

    @staticmethod
    def _lines(context: dict[str, Any], arms: list[MethodType]) -> list[str]:
        shared = " ".join(context_features(context))
        return [f"shared |s {shared}", *(f"|a method={arm.value}" for arm in arms)]

    def rank(self, methods: list[MethodType], context: dict[str, Any]) -> Ranking:
        arms = eligible_arms(methods)
        lines = self._lines(context, arms)
        pmf = [float(p) for p in self._vw.predict(lines)]
        total = sum(pmf)
        u, cumulative, first = self._rng.random() * total, 0.0, len(arms) - 1
        for i, p in enumerate(pmf):
            cumulative += p
            if u < cumulative:
                first = i
                break
        self._pending = (lines, arms, first, pmf[first] / total)
        rest = sorted((j for j in range(len(arms)) if j != first), key=lambda j: -pmf[j])
        order = [arms[first], *(arms[j] for j in rest)]
        return Ranking(order, pmf[first] / total, self.name, self.version)

    def update(self, context: dict[str, Any], first_method: MethodType, reward: float) -> None:
        if self._pending is None or self._pending[1][self._pending[2]] != first_method:
            raise RuntimeError("VowpalWabbitPolicy.update must follow the rank() it answers")
        lines, _, first, prob = self._pending
        labelled = list(lines)
        labelled[first + 1] = f"0:{-float(reward)}:{prob} {lines[first + 1]}"
        self._vw.learn(labelled)
        self._pending = None

    def close(self) -> None:
        self._vw.finish()


def vowpalwabbit_available() -> bool:
    try:
        import vowpalwabbit  # noqa: F401
    except ImportError:
        return False
    return True


def default_policies(seed: int = 0) -> dict[str, Any]:
    """The river policies the benchmark compares, with the settings it reports."""
    return {
        "thompson": ThompsonSamplingPolicy(floor=0.002, seed=seed),
        "epsilon_greedy": EpsilonGreedyPolicy(epsilon=0.05, floor=0.002, seed=seed),
        "ucb": UCBPolicy(delta=0.5, floor=0.002, seed=seed),
        "linucb": LinUCBPolicy(alpha=1.0, beta=5.0, floor=0.002, seed=seed),
        "logistic_softmax": LogisticSoftmaxPolicy(
            temperature=0.02, learning_rate=0.05, floor=0.002, seed=seed
        ),
    }


def baseline_policies(seed: int = 0) -> dict[str, Any]:
    """Random order, the merchant's static order and the hand-written context rules."""
    return {
        "random_order": RandomOrderPolicy(seed=seed),
        "merchant_order": MerchantOrderPolicy(),
        "context_rules": ContextRulesPolicy(),
    }


@dataclass
class SimulationResult:
    """Per-policy summary table and cumulative regret curves of one :func:`simulate` run."""

    summary: pd.DataFrame
    regret: pd.DataFrame  # index: round (1-based), one column of cumulative regret per policy
    n_rounds: int
    seed: int
    shift_round: int
    best_conversion: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rounds": self.n_rounds,
            "seed": self.seed,
            "shift_round": self.shift_round,
            "best_conversion": self.best_conversion,
            "policies": self.summary.to_dict(orient="records"),
            "notes": self.notes,
        }


def simulate(
    policies: Mapping[str, Any] | None = None,
    n_rounds: int = 20_000,
    seed: int = 0,
    *,
    baselines: bool = True,
    vw: bool | str | None = None,
    shift_at: float = 0.5,
    rest_weight: float = 0.25,
    stream: Stream | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Run ``policies`` (default: :func:`default_policies`) side by side on one stream.

    Parameters
    ----------
    policies
        name → object with ``rank(methods, context) -> Ranking`` and, if it learns,
        ``update(context, first_method, reward)``. Policies learn online after every round.
    baselines
        Also run random order, the merchant's static order and the context rules.
    vw
        Vowpal Wabbit ``--cb_explore_adf``: ``True`` to require it, ``None`` to include it
        when ``vowpalwabbit`` is installed (a note says when it is not), ``False`` to skip,
        or a string of VW arguments.
    stream
        A pre-generated :func:`generate_stream` (``n_rounds`` and ``seed`` then only label).
    progress
        Called with the number of rounds done, every 1000 rounds.
    """
    stream = stream or generate_stream(n_rounds, seed, shift_at=shift_at, rest_weight=rest_weight)
    n = len(stream)
    runners: dict[str, Any] = {}
    if baselines:
        runners.update(baseline_policies(seed))
    runners.update(default_policies(seed) if policies is None else policies)
    notes: list[str] = []
    created: list[VowpalWabbitPolicy] = []
    if vw is not False:
        if vowpalwabbit_available():
            args = vw if isinstance(vw, str) else "--cb_explore_adf --epsilon 0.05 -q sa"
            runners["vw_cb_explore_adf"] = VowpalWabbitPolicy(args, seed=seed)
            created.append(runners["vw_cb_explore_adf"])
            notes.append(f"vw args: {args}")
        elif vw:
            raise RuntimeError("Vowpal Wabbit requested but `vowpalwabbit` is not installed")
        else:
            notes.append("Vowpal Wabbit skipped: `pip install vowpalwabbit` to compare with it")

    names = list(runners)
    regret = np.zeros((n, len(names)))
    rewards = np.zeros(len(names))
    expected = np.zeros(len(names))
    seconds = np.zeros(len(names))
    clock = time.perf_counter
    for t in range(n):
        context, methods = stream.contexts[t], stream.methods[t]
        best = stream.best[t]
        for j, name in enumerate(names):
            policy = runners[name]
            began = clock()
            ranking = policy.rank(methods, context)
            spent = clock() - began
            reward, p = stream.outcome(t, ranking.order)
            update = getattr(policy, "update", None)
            if update is not None:
                began = clock()
                update(context, ranking.order[0], reward)
                spent += clock() - began
            seconds[j] += spent
            rewards[j] += reward
            expected[j] += p
            regret[t, j] = best - p
        if progress is not None and (t + 1) % 1000 == 0:
            progress(t + 1)
    for policy in created:  # the caller's own policies stay usable (and theirs to close)
        policy.close()

    cumulative = np.cumsum(regret, axis=0)
    half = stream.shift_round
    summary = pd.DataFrame(
        {
            "policy": names,
            "conversion": rewards / n,
            "expected_conversion": expected / n,
            "cumulative_regret": cumulative[-1],
            "regret_before_shift": cumulative[half - 1] if half > 0 else 0.0,
            "regret_after_shift": cumulative[-1] - (cumulative[half - 1] if half > 0 else 0.0),
            "decisions_per_s": n / np.maximum(seconds, 1e-12),
        }
    )
    curves = pd.DataFrame(cumulative, columns=names, index=pd.RangeIndex(1, n + 1, name="round"))
    return SimulationResult(
        summary=summary,
        regret=curves,
        n_rounds=n,
        seed=seed,
        shift_round=half,
        best_conversion=float(stream.best.mean()),
        notes=notes,
    )


def plot_regret(result: SimulationResult, path: str, *, title: str | None = None) -> None:
    """Write the cumulative regret curves of ``result`` to an image file (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    order = result.summary.sort_values("cumulative_regret", ascending=False)["policy"]
    step = max(1, result.n_rounds // 2000)
    curves = result.regret.iloc[::step]
    for name in order:
        ax.plot(curves.index, curves[name], label=name, linewidth=1.6)
    ax.axvline(result.shift_round, color="grey", linestyle="--", linewidth=1)
    ax.text(
        result.shift_round, ax.get_ylim()[1] * 0.97, " preference shift", color="grey", va="top"
    )
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative expected regret (conversions)")
    ax.set_title(title or f"Method ordering: {result.n_rounds:,} checkouts, seed {result.seed}")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def decision_log(
    policy: Any, stream: Stream, *, learn: bool = False, rounds: range | None = None
) -> pd.DataFrame:
    """Serve ``stream`` with ``policy`` and return the decision log that OPE replays.

    Columns: ``context``, ``methods``, ``first_method``, ``order``, ``propensity``, ``reward``,
    ``expected_reward``. With ``learn=False`` the policy is frozen (a known logging policy).
    """
    rows = []
    for t in rounds or range(len(stream)):
        context, methods = stream.contexts[t], stream.methods[t]
        ranking = policy.rank(methods, context)
        reward, p = stream.outcome(t, ranking.order)
        if learn:
            policy.update(context, ranking.order[0], reward)
        rows.append(
            {
                "context": context,
                "methods": methods,
                "first_method": ranking.order[0],
                "order": ranking.order,
                "propensity": ranking.propensity,
                "reward": reward,
                "expected_reward": p,
            }
        )
    return pd.DataFrame(rows)


def true_policy_value(policy: Any, stream: Stream, rounds: range | None = None) -> float:
    """Expected conversion of ``policy`` (with ``probabilities``) over the stream's shoppers.

    Exact for the first-method action: needs ``stream.rest_weight == 0`` (the reward then
    depends on the first method only, which is what off-policy evaluation replays).
    """
    if stream.rest_weight != 0:
        raise ValueError("true_policy_value needs a stream generated with rest_weight=0")
    total, count = 0.0, 0
    for t in rounds or range(len(stream)):
        probs = policy.probabilities(stream.methods[t], stream.contexts[t])
        values = stream.first_method_values(t)
        total += sum(prob * values[m] for m, prob in probs.items())
        count += 1
    return total / count
