"""River-backed ordering policies: construction, learning, propensities, eligibility, snapshots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import river
from river import proba, stats
from scipy import integrate
from scipy.stats import beta as beta_dist

from checkoutlab.bandits.features import amount_bucket, context_features
from checkoutlab.bandits.policies import (
    POLICY_CLASSES,
    BanditPolicy,
    EpsilonGreedyPolicy,
    LinUCBPolicy,
    LogisticSoftmaxPolicy,
    RandomOrderPolicy,
    SnapshotError,
    ThompsonSamplingPolicy,
    UCBPolicy,
    make_policy,
)
from checkoutlab.bandits.policy import OrderingPolicy, Ranking
from checkoutlab.merchants.schemas import MethodType as M

ALL = list(M)
IOS_NL = {
    "device": {"type": "mobile", "os": "ios", "apple_pay": True},
    "location": {"country": "NL"},
    "currency": "EUR",
    "amount": {"value": 4500, "currency": "EUR"},
    "customer": {"returning": False},
}
ANDROID_US = {
    "device": {"type": "mobile", "os": "android", "google_pay": True},
    "location": {"country": "US"},
    "currency": "USD",
    "amount": {"value": 2500, "currency": "USD"},
    "customer": {"returning": True, "last_method": "card"},
}


def every_policy(**overrides) -> list[BanditPolicy]:
    return [cls(seed=3, **overrides) for cls in POLICY_CLASSES.values()]


def trained(policy: BanditPolicy, rounds: int = 60) -> BanditPolicy:
    """Deterministic feedback: iDEAL converts in NL, Google Pay in the US, nothing else."""
    for i in range(rounds):
        for context, good in ((IOS_NL, M.ideal), (ANDROID_US, M.google_pay)):
            policy.update(context, good, 1.0)
            policy.update(context, ALL[i % len(ALL)] if ALL[i % len(ALL)] != good else M.card, 0.0)
    return policy


# -- construction: keyword arguments into river, around river 0.26's positional burn_in --------


def test_wrappers_build_river_objects_with_keyword_arguments() -> None:
    ts = ThompsonSamplingPolicy(prior_alpha=2.0, prior_beta=3.0, seed=1)
    assert isinstance(ts._river.reward_obj, proba.Beta)
    assert (ts._river.reward_obj.alpha, ts._river.reward_obj.beta) == (2.0, 3.0)
    assert ts._river.burn_in == 0 and ts._river.seed == 1

    eg = EpsilonGreedyPolicy(epsilon=0.2, decay=0.01, seed=1)
    assert (eg._river.epsilon, eg._river.decay, eg._river.burn_in) == (0.2, 0.01, 0)
    assert isinstance(eg._river.reward_obj, stats.Mean)

    ucb = UCBPolicy(delta=0.7, seed=1)
    assert (ucb._river.delta, ucb._river.burn_in, ucb._river.reward_scaler) == (0.7, 0, None)

    lin = LinUCBPolicy(alpha=2.0, beta=4.0, smoothing=None, seed=1)
    # river 0.26 passes burn_in positionally into reward_scaler; the wrapper undoes it.
    assert lin._river.reward_scaler is None and lin._river.burn_in == 0
    assert (lin._river.alpha, lin._river.beta) == (2.0, 4.0)


def test_policies_satisfy_the_ordering_protocol_and_make_policy() -> None:
    for policy in every_policy():
        assert isinstance(policy, BanditPolicy)
        ranking = policy.rank(ALL, IOS_NL)
        assert isinstance(ranking, Ranking) and ranking.policy == policy.name
        _: OrderingPolicy = policy
    assert isinstance(make_policy("ucb", delta=2.0), UCBPolicy)
    with pytest.raises(ValueError, match="unknown bandit policy 'nope'"):
        make_policy("nope")


@pytest.mark.parametrize("bad", [0.0, -0.1, 0.6])
def test_floor_must_be_positive_and_at_most_half(bad: float) -> None:
    with pytest.raises(ValueError, match="floor"):
        UCBPolicy(floor=bad)


# -- learning --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ThompsonSamplingPolicy, EpsilonGreedyPolicy, UCBPolicy])
def test_non_contextual_estimates_move_toward_the_rewarded_arm(cls) -> None:
    policy = cls(seed=0)
    for _ in range(30):
        policy.update({}, M.klarna, 1)
        policy.update({}, "card", 0)  # a string method is accepted
    estimates = policy.arm_estimates()
    assert estimates[M.klarna] > 0.9 and estimates[M.card] < 0.1
    probs = policy.probabilities([M.card, M.klarna], {}, rng=0)
    assert probs[M.klarna] > 0.9 > 0.1 > probs[M.card]
    # an arm never pulled is explored by UCB and Thompson, not by greedy
    unseen = policy.probabilities([M.card, M.klarna, M.ideal], {}, rng=0)[M.ideal]
    assert unseen > 0.9 if cls is UCBPolicy else unseen < 0.9
    assert policy.summary()["arms"]["klarna"]["pulls"] == 30
    assert policy.version.endswith(".60")


@pytest.mark.parametrize("cls", [LinUCBPolicy, LogisticSoftmaxPolicy])
def test_contextual_policies_learn_a_different_best_method_per_context(cls) -> None:
    policy = trained(cls(floor=0.01, seed=0), rounds=80)
    methods = [M.card, M.ideal, M.google_pay, M.klarna]
    nl = policy.probabilities(methods, IOS_NL)
    us = policy.probabilities(methods, ANDROID_US)
    assert max(nl, key=nl.get) is M.ideal
    assert max(us, key=us.get) is M.google_pay


def test_rewards_are_validated() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        ThompsonSamplingPolicy().update({}, M.card, 0.5)
    with pytest.raises(ValueError, match="0 or 1"):
        LogisticSoftmaxPolicy().update({}, M.card, 2)
    with pytest.raises(ValueError, match="finite"):
        UCBPolicy().update({}, M.card, math.nan)
    with pytest.raises(ValueError, match="unknown payment method 'paypal'"):
        UCBPolicy().update({}, "paypal", 1)
    EpsilonGreedyPolicy().update({}, M.card, 12.5)  # revenue rewards are fine for mean rewards


# -- propensities -----------------------------------------------------------------------------


@pytest.mark.parametrize("learned", [False, True])
def test_probabilities_sum_to_one_and_respect_the_floor(learned: bool) -> None:
    for policy in every_policy(floor=0.02):
        if learned:
            trained(policy)
        for methods in (ALL, [M.card, M.ideal], [M.sepa_debit, M.klarna, M.card]):
            probs = policy.probabilities(methods, IOS_NL, rng=1)
            assert list(probs) == methods
            assert sum(probs.values()) == pytest.approx(1.0)
            assert min(probs.values()) >= 0.02 - 1e-12, policy.name


def test_deterministic_policies_are_never_certain_with_a_floor() -> None:
    policy = trained(UCBPolicy(floor=0.01, seed=0))
    probs = policy.probabilities(ALL, IOS_NL)
    k = len(ALL)
    assert sorted(probs.values())[:-1] == pytest.approx([0.01] * (k - 1))
    assert max(probs.values()) == pytest.approx(1 - (k - 1) * 0.01)
    # floor * k > 1 is capped at uniform
    assert list(UCBPolicy(floor=0.5).probabilities(ALL, {}).values()) == pytest.approx([1 / k] * k)


def test_logged_propensity_is_the_probability_of_the_first_method() -> None:
    for policy in every_policy(floor=0.03):
        trained(policy, rounds=20)
        for seed in range(20):
            ranking = policy.rank(ALL, ANDROID_US, rng=seed)
            probs = policy.probabilities(ALL, ANDROID_US, rng=seed)
            assert ranking.propensity == pytest.approx(probs[ranking.order[0]]), policy.name


def test_epsilon_greedy_choice_frequencies_match_the_closed_form() -> None:
    policy = EpsilonGreedyPolicy(epsilon=0.3, floor=0.01, seed=0)
    for _ in range(10):
        policy.update({}, M.ideal, 1)
        policy.update({}, M.card, 0)
    methods = [M.card, M.ideal, M.klarna]
    rng = np.random.default_rng(0)
    firsts = [policy.rank(methods, {}, rng=rng).order[0] for _ in range(6000)]
    exact = policy.probabilities(methods, {})
    assert exact[M.ideal] == pytest.approx(0.01 + 0.97 * (0.7 + 0.1))
    for method in methods:
        assert firsts.count(method) / len(firsts) == pytest.approx(exact[method], abs=0.02)


def _exact_win_probability(params: list[tuple[float, float]], i: int) -> float:
    a, b = params[i]
    others = [p for j, p in enumerate(params) if j != i]

    def integrand(x: float) -> float:
        return beta_dist.pdf(x, a, b) * np.prod([beta_dist.cdf(x, pa, pb) for pa, pb in others])

    return integrate.quad(integrand, 0, 1)[0]


def test_thompson_monte_carlo_propensity_matches_choice_frequencies() -> None:
    policy = ThompsonSamplingPolicy(n_draws=200, floor=0.01, seed=4)
    outcomes = {M.ideal: (6, 4), M.card: (5, 5), M.klarna: (3, 4)}
    for arm, (wins, losses) in outcomes.items():
        for _ in range(wins):
            policy.update({}, arm, 1)
        for _ in range(losses):
            policy.update({}, arm, 0)
    methods = list(outcomes)
    params = [policy.posterior(arm) for arm in methods]
    assert params[0] == (7.0, 5.0)  # Beta(1, 1) prior + 6 wins, 4 losses
    estimate = policy.probabilities(methods, {})
    assert policy.probabilities(methods, {}) == estimate  # seeded by the snapshot: reproducible
    rng = np.random.default_rng(0)
    firsts = [policy.rank(methods, {}, rng=rng).order[0] for _ in range(5000)]
    for i, method in enumerate(methods):
        exact = 0.01 + 0.97 * _exact_win_probability(params, i)
        # 200 draws: MC standard error <= 0.035; 5000 choices: <= 0.007
        assert estimate[method] == pytest.approx(exact, abs=0.08)
        assert firsts.count(method) / len(firsts) == pytest.approx(exact, abs=0.025)


def test_wrappers_pick_what_river_itself_would_pull() -> None:
    methods = [M.card, M.ideal, M.klarna, M.google_pay]
    ucb = trained(UCBPolicy(seed=0))
    ev = ucb._evaluate(methods, {}, np.random.default_rng(0))
    assert methods[ev.p_base.index(max(ev.p_base))] == ucb._river.pull(methods)

    greedy = trained(EpsilonGreedyPolicy(epsilon=0.0, seed=0))
    assert greedy.probabilities(methods, {})[greedy._river.pull(methods)] > 0.9

    lin = trained(LinUCBPolicy(seed=0))
    ev = lin._evaluate(methods, IOS_NL, np.random.default_rng(0))
    pulled = lin._river.pull(methods, context=context_features(IOS_NL))
    assert methods[ev.p_base.index(max(ev.p_base))] == pulled


# -- eligibility --------------------------------------------------------------------------------


def test_only_eligible_methods_appear_and_the_set_may_change() -> None:
    rng = np.random.default_rng(0)
    for policy in every_policy():
        trained(policy, rounds=10)
        for _ in range(40):
            k = int(rng.integers(1, len(ALL) + 1))
            methods = [ALL[i] for i in rng.choice(len(ALL), size=k, replace=False)]
            ranking = policy.rank(methods, IOS_NL, rng=rng)
            assert sorted(ranking.order) == sorted(methods), policy.name
            assert 0 < ranking.propensity <= 1
        single = policy.rank([M.bank_transfer], IOS_NL)
        assert single.order == [M.bank_transfer] and single.propensity == 1.0


def test_duplicates_and_unknown_methods() -> None:
    policy = UCBPolicy()
    assert policy.rank([M.card, "card", M.ideal], {}).order.count(M.card) == 1
    with pytest.raises(ValueError, match="unknown payment method 'paypal'"):
        policy.rank([M.card, "paypal"], {})
    with pytest.raises(ValueError, match="no eligible payment methods"):
        policy.rank([], {})


def test_ranking_does_not_change_the_learned_state() -> None:
    for policy in every_policy():
        trained(policy, rounds=5)
        before = policy.state_dict()["version"], policy.summary()
        for seed in range(5):
            policy.rank(ALL, IOS_NL, rng=seed)
            policy.probabilities(ALL, ANDROID_US)
        assert (policy.state_dict()["version"], policy.summary()) == before


# -- reproducibility and snapshots ----------------------------------------------------------------


def test_per_call_rng_makes_a_decision_reproducible() -> None:
    for policy in every_policy():
        trained(policy, rounds=5)
        runs = [policy.rank(ALL, ANDROID_US, rng=np.random.default_rng(42)) for _ in range(2)]
        assert runs[0] == runs[1]
        assert policy.rank(ALL, ANDROID_US, rng=7) == policy.rank(ALL, ANDROID_US, rng=7)


def test_state_round_trip_gives_identical_rankings() -> None:
    for policy in every_policy():
        trained(policy, rounds=15)
        state = json.loads(json.dumps(policy.state_dict()))  # fits a JSON column
        assert state["version"] == policy.version and state["policy"] == policy.name
        restored = type(policy).from_state(state)
        assert restored.version == policy.version
        for seed in range(10):
            for context in (IOS_NL, ANDROID_US):
                assert restored.rank(ALL, context, rng=seed) == policy.rank(ALL, context, rng=seed)
        # both keep learning identically
        policy.update(IOS_NL, M.card, 1)
        restored.update(IOS_NL, M.card, 1)
        assert restored.probabilities(ALL, IOS_NL) == policy.probabilities(ALL, IOS_NL)


def test_from_state_refuses_another_class_or_river_version() -> None:
    state = UCBPolicy().state_dict()
    with pytest.raises(SnapshotError, match="not a ThompsonSamplingPolicy"):
        ThompsonSamplingPolicy.from_state(state)
    assert isinstance(BanditPolicy.from_state(state), UCBPolicy)
    with pytest.raises(SnapshotError, match=r"river 0\.1"):
        UCBPolicy.from_state({**state, "river_version": "0.1"})
    with pytest.raises(SnapshotError, match="unsupported snapshot format"):
        UCBPolicy.from_state({**state, "format": 99})
    patch = ".".join([*river.__version__.split(".")[:2], "99"])
    assert isinstance(UCBPolicy.from_state({**state, "river_version": patch}), UCBPolicy)


def test_version_changes_with_config_and_updates() -> None:
    a, b = UCBPolicy(delta=1.0), UCBPolicy(delta=2.0)
    assert a.version != b.version and a.version.endswith(".0")
    assert UCBPolicy(delta=1.0).version == a.version
    a.update({}, M.card, 1)
    assert a.version.endswith(".1")


def test_random_order_is_uniform() -> None:
    policy = RandomOrderPolicy(seed=0)
    assert list(policy.probabilities(ALL, {}).values()) == pytest.approx([1 / len(ALL)] * len(ALL))
    firsts = [policy.rank(ALL, {}).order[0] for _ in range(3500)]
    assert min(firsts.count(m) for m in ALL) > 400


# -- features ------------------------------------------------------------------------------------


def test_context_features_are_sparse_one_hot_and_tolerate_missing_parts() -> None:
    x = context_features(ANDROID_US)
    assert x == {
        "bias": 1.0,
        "device=mobile": 1.0,
        "os=android": 1.0,
        "device_os=mobile/android": 1.0,
        "google_pay_ready": 1.0,
        "country=US": 1.0,
        "currency=USD": 1.0,
        "amount=20-100": 1.0,
        "returning": 1.0,
        "last=card": 1.0,
    }
    assert context_features({}) == {"bias": 1.0}
    assert context_features({"device": None, "location": {"country": None}}) == {"bias": 1.0}


def test_amount_buckets_use_the_currency_exponent() -> None:
    assert amount_bucket(1999, "EUR") == "<20"
    assert amount_bucket(1999, "JPY") == "500-2000"  # yen have no minor unit
    assert amount_bucket(250_000, "USD") == "2000+"
