"""Off-policy estimators: formulas on hand-made arrays, validation, bias on simulated logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checkoutlab.bandits.ope import (
    bootstrap_interval,
    dm,
    dr,
    effective_sample_size,
    evaluate,
    ipw,
    policy_probabilities,
    snipw,
)
from checkoutlab.bandits.policies import LogisticSoftmaxPolicy, RandomOrderPolicy
from checkoutlab.bandits.policy import MerchantOrderPolicy
from checkoutlab.bandits.simulate import decision_log, generate_stream, true_policy_value
from checkoutlab.merchants.schemas import MethodType as M

REWARD = np.array([1.0, 0.0, 1.0, 1.0])
PSCORE = np.array([0.5, 0.25, 0.2, 1.0])
TARGET = np.array([1.0, 0.5, 0.1, 0.0])
HAT = np.array([0.6, 0.2, 0.4, 0.9])
EXPECTED = np.array([0.5, 0.3, 0.45, 0.7])


def test_estimators_follow_their_formulas() -> None:
    w = TARGET / PSCORE  # [2, 2, 0.5, 0]
    assert ipw(REWARD, PSCORE, TARGET) == pytest.approx((2 + 0 + 0.5 + 0) / 4)
    assert snipw(REWARD, PSCORE, TARGET) == pytest.approx(2.5 / 4.5)
    assert dm(EXPECTED) == pytest.approx(np.mean(EXPECTED))
    residual = w * (REWARD - HAT)  # [0.8, -0.4, 0.3, 0]
    assert dr(REWARD, PSCORE, TARGET, HAT, EXPECTED) == pytest.approx(
        np.mean(EXPECTED) + np.mean(residual)
    )
    assert dr(REWARD, PSCORE, TARGET, HAT, EXPECTED) == pytest.approx(0.4875 + 0.175)


def test_on_policy_data_reduces_ipw_to_the_mean_and_dr_to_it_with_a_perfect_model() -> None:
    p = np.full(4, 0.3)
    assert ipw(REWARD, p, p) == snipw(REWARD, p, p) == pytest.approx(REWARD.mean())
    assert dr(REWARD, p, p, REWARD, REWARD) == pytest.approx(REWARD.mean())
    assert effective_sample_size(p, p) == pytest.approx(4.0)


def test_effective_sample_size() -> None:
    assert effective_sample_size(PSCORE, TARGET) == pytest.approx(4.5**2 / 8.25)
    assert effective_sample_size([0.5, 0.5], [0.0, 0.0]) == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1, 0], [0.5], [0.5, 0.5]), "same length"),
        (([1, 0], [0.5, 0.0], [0.5, 0.5]), r"pscore must be in \(0, 1\]: row 1"),
        (([1, 0], [0.5, 1.2], [0.5, 0.5]), r"pscore must be in \(0, 1\]"),
        (([1, 0], [0.5, 0.5], [0.5, 1.5]), r"target_pscore must be in \[0, 1\]"),
        (([1, np.nan], [0.5, 0.5], [0.5, 0.5]), "reward contains NaN"),
        (([], [], []), "reward is empty"),
        (([[1, 0]], [[0.5, 0.5]], [[0.5, 0.5]]), "one-dimensional"),
    ],
)
def test_inputs_are_validated_with_clear_errors(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        ipw(*args)


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    pscore = rng.uniform(0.2, 1.0, n)
    target = rng.uniform(0.0, 1.0, n)
    reward = (rng.random(n) < 0.4).astype(float)
    low, high = bootstrap_interval(ipw, reward, pscore, target, n_boot=300, seed=3)
    assert low < ipw(reward, pscore, target) < high
    assert (low, high) == bootstrap_interval(ipw, reward, pscore, target, n_boot=300, seed=3)
    wide = bootstrap_interval(ipw, reward, pscore, target, alpha=0.01, n_boot=300, seed=3)
    assert wide[0] <= low and wide[1] >= high
    # any callable works; it sees resampled 1-D arrays
    low_m, high_m = bootstrap_interval(lambda r: float(np.median(r)), reward, n_boot=50)
    assert low_m <= high_m
    with pytest.raises(ValueError, match="pscore must be in"):
        bootstrap_interval(ipw, reward, np.zeros(n), target)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_interval(ipw, reward, pscore, target, alpha=1.5)


@pytest.fixture(scope="module")
def simulated_logs():
    """A frozen, known logging policy on 3000 shoppers; the target is another frozen policy.

    ``rest_weight=0``: conversion depends on the first method only, the action OPE replays,
    so the target's true value is exact.
    """
    stream = generate_stream(5000, seed=11, shift_at=1.0, rest_weight=0.0)
    logger = LogisticSoftmaxPolicy(temperature=0.1, floor=0.03, seed=1)
    target = LogisticSoftmaxPolicy(temperature=0.03, floor=0.01, seed=2)
    decision_log(logger, stream, learn=True, rounds=range(0, 600))
    decision_log(target, stream, learn=True, rounds=range(0, 2000))
    evaluated = range(2000, 5000)
    logs = decision_log(logger, stream, rounds=evaluated)
    truth = true_policy_value(target, stream, rounds=evaluated)
    logged_truth = true_policy_value(logger, stream, rounds=evaluated)
    return logs, target, truth, logged_truth


def test_ope_estimates_cover_the_true_value_of_a_known_policy(simulated_logs) -> None:
    logs, target, truth, logged_truth = simulated_logs
    table = evaluate(logs, target, n_boot=400, seed=0).set_index("estimator")
    assert list(table.index) == ["ipw", "snipw", "dm", "dr", "logged"]
    assert truth - logged_truth > 0.02  # the target is genuinely better than the logger
    for name in ("ipw", "snipw", "dr"):
        row = table.loc[name]
        assert row.low <= truth <= row.high, (name, truth, row.to_dict())
        assert 0 < row.ess < len(logs)
    assert table.loc["dm", "estimate"] == pytest.approx(truth, abs=0.03)
    assert table.loc["logged", "low"] <= logged_truth <= table.loc["logged", "high"]
    # DR's interval is no wider than IPW's: the reward model removes variance
    width = table["high"] - table["low"]
    assert width["dr"] <= width["ipw"]


def test_evaluate_scores_deterministic_policies_and_validates_the_log(simulated_logs) -> None:
    logs = simulated_logs[0].iloc[:300]
    table = evaluate(logs, MerchantOrderPolicy(), n_boot=50)
    assert table.set_index("estimator").loc["ipw", "estimate"] >= 0
    probs = policy_probabilities(MerchantOrderPolicy(), [M.card, M.ideal], {})
    assert probs == {M.card: 1.0, M.ideal: 0.0}
    uniform = policy_probabilities(RandomOrderPolicy(), [M.card, M.ideal], {})
    assert uniform == {M.card: 0.5, M.ideal: 0.5}

    with pytest.raises(ValueError, match=r"missing columns \['propensity'\]"):
        evaluate(logs.drop(columns="propensity"), MerchantOrderPolicy())
    bad = logs.copy()
    bad.loc[bad.index[3], "propensity"] = 0.0
    with pytest.raises(ValueError, match=r"pscore must be in \(0, 1\]: row 3"):
        evaluate(bad, MerchantOrderPolicy())
    bad = logs.copy()
    bad.at[bad.index[0], "first_method"] = "klarna"
    bad.at[bad.index[0], "methods"] = [M.card]
    with pytest.raises(ValueError, match="row 0: first_method 'klarna' is not among"):
        evaluate(bad, MerchantOrderPolicy())
    with pytest.raises(ValueError, match="empty"):
        evaluate(logs.iloc[:0], MerchantOrderPolicy())
    with pytest.raises(TypeError, match="DataFrame"):
        evaluate(logs.to_dict("records"), MerchantOrderPolicy())


def test_evaluate_accepts_non_binary_rewards(simulated_logs) -> None:
    logs = simulated_logs[0].iloc[:300].copy()
    logs["reward"] = logs["reward"] * 42.5  # revenue
    table = evaluate(logs, RandomOrderPolicy(), n_boot=50).set_index("estimator")
    assert isinstance(table, pd.DataFrame) and table.loc["dr", "estimate"] > 0
