"""Off-policy evaluation of ordering policies from the decision log.

Estimators follow Open Bandit Pipeline's names and definitions; each returns the estimated
value (expected reward per decision) of a *target* policy from data logged by another one:

- ``pscore``: the logging policy's probability of the logged action (the method shown first),
- ``target_pscore``: the target policy's probability of that same action in that context,
- ``reward_hat_logged``: a reward model's prediction for the logged action,
- ``expected_reward_target``: the reward model's expectation under the target policy,
  ``sum_a target(a | x) * reward_hat(x, a)``.

With importance weights ``w = target_pscore / pscore``::

    ipw   = mean(w * reward)
    snipw = sum(w * reward) / sum(w)
    dm    = mean(expected_reward_target)
    dr    = mean(expected_reward_target + w * (reward - reward_hat_logged))

>>> import numpy as np
>>> reward, pscore = np.array([1.0, 0, 1]), np.array([0.5, 0.5, 0.25])
>>> target = np.array([1.0, 0, 0.5])
>>> ipw(reward, pscore, target), snipw(reward, pscore, target)
(1.3333333333333333, 1.0)

:func:`evaluate` replays a decision log against a policy and returns all of them with
percentile-bootstrap intervals and the effective sample size of the importance weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from checkoutlab.bandits.features import context_features
from checkoutlab.merchants.schemas import MethodType

ArrayLike = Any

# --- validation ---------------------------------------------------------------------------


def _array(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: off-policy evaluation needs at least one decision")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _arrays(**named: ArrayLike) -> list[np.ndarray]:
    arrays = [_array(name, values) for name, values in named.items()]
    lengths = {name: len(a) for name, a in zip(named, arrays, strict=True)}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"arrays must have the same length, got {detail}")
    return arrays


def _check_pscores(pscore: np.ndarray, target_pscore: np.ndarray | None = None) -> None:
    bad = (pscore <= 0) | (pscore > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"pscore must be in (0, 1]: row {i} has {pscore[i]!r} "
            f"({int(bad.sum())} bad rows); log propensities of randomized policies only"
        )
    if target_pscore is not None:
        bad = (target_pscore < 0) | (target_pscore > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"target_pscore must be in [0, 1]: row {i} has {target_pscore[i]!r}")


# --- estimators: a validated public function over a core that also takes 2-D batches -------


def _ipw(reward, pscore, target_pscore):
    return np.mean(target_pscore / pscore * reward, axis=-1)


def _snipw(reward, pscore, target_pscore):
    w = target_pscore / pscore
    total = np.sum(w, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.sum(w * reward, axis=-1) / total, np.nan)


def _dm(expected_reward_target):
    return np.mean(expected_reward_target, axis=-1)


def _dr(reward, pscore, target_pscore, reward_hat_logged, expected_reward_target):
    w = target_pscore / pscore
    return np.mean(expected_reward_target + w * (reward - reward_hat_logged), axis=-1)


def ipw(reward: ArrayLike, pscore: ArrayLike, target_pscore: ArrayLike) -> float:
    """Inverse propensity weighting: ``mean(target_pscore / pscore * reward)``."""
    r, p, q = _arrays(reward=reward, pscore=pscore, target_pscore=target_pscore)
    _check_pscores(p, q)
    return float(_ipw(r, p, q))


def snipw(reward: ArrayLike, pscore: ArrayLike, target_pscore: ArrayLike) -> float:
    """Self-normalized IPW: ``sum(w * reward) / sum(w)``; NaN when every weight is 0."""
    r, p, q = _arrays(reward=reward, pscore=pscore, target_pscore=target_pscore)
    _check_pscores(p, q)
    return float(_snipw(r, p, q))


def dm(expected_reward_target: ArrayLike) -> float:
    """Direct method: the reward model's mean expected reward under the target policy."""
    (e,) = _arrays(expected_reward_target=expected_reward_target)
    return float(_dm(e))


def dr(
    reward: ArrayLike,
    pscore: ArrayLike,
    target_pscore: ArrayLike,
    reward_hat_logged: ArrayLike,
    expected_reward_target: ArrayLike,
) -> float:
    """Doubly robust: DM plus the importance-weighted residual of the logged action."""
    r, p, q, h, e = _arrays(
        reward=reward,
        pscore=pscore,
        target_pscore=target_pscore,
        reward_hat_logged=reward_hat_logged,
        expected_reward_target=expected_reward_target,
    )
    _check_pscores(p, q)
    return float(_dr(r, p, q, h, e))


def effective_sample_size(pscore: ArrayLike, target_pscore: ArrayLike) -> float:
    """Kish effective sample size of the importance weights: ``sum(w)^2 / sum(w^2)``."""
    p, q = _arrays(pscore=pscore, target_pscore=target_pscore)
    _check_pscores(p, q)
    w = q / p
    squares = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / squares if squares > 0 else 0.0


_CORES: dict[Callable[..., float], Callable[..., Any]] = {
    ipw: _ipw,
    snipw: _snipw,
    dm: _dm,
    dr: _dr,
}


def bootstrap_interval(
    estimator: Callable[..., float],
    *arrays: ArrayLike,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap ``(low, high)`` interval of ``estimator(*arrays)``.

    Rows (decisions) are resampled with replacement, the same rows for every array. The
    estimators of this module run vectorised over all resamples; any other callable taking
    the 1-D arrays is called once per resample.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot!r}")
    if not arrays:
        raise ValueError("bootstrap_interval needs the estimator's arrays")
    data = _arrays(**{f"array {i}": a for i, a in enumerate(arrays)})
    estimator(*data)  # validates the inputs (pscore range, ...) once, with a clear error
    n = len(data[0])
    rng = np.random.default_rng(seed)
    core = _CORES.get(estimator)
    values = np.empty(n_boot)
    if core is not None:
        chunk = max(1, 2_000_000 // n)  # bound the memory of the resampled index matrix
        for start in range(0, n_boot, chunk):
            size = min(chunk, n_boot - start)
            idx = rng.integers(0, n, size=(size, n))
            values[start : start + size] = core(*(a[idx] for a in data))
    else:
        for b in range(n_boot):
            idx = rng.integers(0, n, size=n)
            values[b] = estimator(*(a[idx] for a in data))
    low, high = np.nanquantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


# --- replaying a decision log -------------------------------------------------------------

REQUIRED_COLUMNS = ("context", "methods", "first_method", "propensity", "reward")


def policy_probabilities(
    policy: Any, methods: list[MethodType], context: dict[str, Any]
) -> dict[MethodType, float]:
    """P(first method) under ``policy``: its ``probabilities`` method, or, for a
    deterministic policy (``rank`` propensity 1.0), all mass on the method it ranks first."""
    probabilities = getattr(policy, "probabilities", None)
    if probabilities is not None:
        return {MethodType(m): float(p) for m, p in probabilities(methods, context).items()}
    ranking = policy.rank(methods, context)
    if ranking.propensity != 1.0:
        raise TypeError(
            f"{type(policy).__name__} is randomized but has no probabilities(methods, context)"
        )
    return {MethodType(m): float(m == ranking.order[0]) for m in methods}


def _design(context: dict[str, Any], method: MethodType) -> dict[str, float]:
    """Reward-model features: per-method copies of the context features (disjoint model)."""
    x = {f"{method.value}|{k}": v for k, v in context_features(context).items()}
    x[f"method={method.value}"] = 1.0
    return x


def _fit_reward_model(contexts, methods, rewards, binary: bool):
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline

    rows = [_design(c, m) for c, m in zip(contexts, methods, strict=True)]
    if binary and len(set(rewards)) < 2:
        constant = float(rewards[0])
        return lambda xs: np.full(len(xs), constant)
    model = make_pipeline(
        DictVectorizer(),
        LogisticRegression(C=1.0, max_iter=500) if binary else Ridge(alpha=1.0),
    )
    model.fit(rows, np.asarray(rewards, dtype=int if binary else float))
    if binary:
        return lambda xs: model.predict_proba(xs)[:, 1]
    return model.predict


def reward_model_predictions(
    decisions: pd.DataFrame,
    target: list[dict[MethodType, float]],
    *,
    n_folds: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted reward model: (``reward_hat_logged``, ``expected_reward_target``).

    One scikit-learn model over per-method context features (logistic for 0/1 rewards,
    ridge otherwise), fitted on ``n_folds - 1`` folds and predicting the held-out one, so no
    decision is scored by a model that saw its own reward.
    """
    n = len(decisions)
    contexts = decisions["context"].tolist()
    logged = [MethodType(m) for m in decisions["first_method"]]
    rewards = decisions["reward"].to_numpy(dtype=float)
    binary = bool(np.isin(rewards, (0.0, 1.0)).all())
    folds = np.random.default_rng(seed).permutation(n) % max(1, min(n_folds, n))
    hat_logged = np.empty(n)
    expected_target = np.empty(n)
    for fold in np.unique(folds):
        test = np.flatnonzero(folds == fold)
        train = np.flatnonzero(folds != fold) if n_folds > 1 and n > 1 else test
        predict = _fit_reward_model(
            [contexts[i] for i in train], [logged[i] for i in train], rewards[train], binary
        )
        hat_logged[test] = predict([_design(contexts[i], logged[i]) for i in test])
        pairs = [(i, m, p) for i in test for m, p in target[i].items() if p > 0]
        preds = predict([_design(contexts[i], m) for i, m, _ in pairs])
        sums = dict.fromkeys(test.tolist(), 0.0)
        for (i, _, p), pred in zip(pairs, preds, strict=True):
            sums[i] += p * pred
        expected_target[test] = [sums[i] for i in test]
    return hat_logged, expected_target


def evaluate(
    decisions: pd.DataFrame,
    policy: Any,
    *,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    n_folds: int = 2,
) -> pd.DataFrame:
    """Replay a decision log against ``policy`` and estimate its value.

    ``decisions`` has one row per logged decision with columns ``context`` (dict),
    ``methods`` (the eligible methods), ``first_method`` (the logged action), ``propensity``
    (the logging policy's probability of it) and ``reward``. The target probability of each
    logged action comes from :func:`policy_probabilities`; DM and DR use a cross-fitted
    reward model (:func:`reward_model_predictions`).

    Returns one row per estimator (``logged`` is the logging policy's own mean reward) with
    columns ``estimator``, ``estimate``, ``low``, ``high`` (``1 - alpha`` bootstrap interval)
    and ``ess`` (effective sample size of the importance weights; ``n`` for DM and logged).
    """
    if not isinstance(decisions, pd.DataFrame):
        raise TypeError("decisions must be a pandas DataFrame")
    missing = [c for c in REQUIRED_COLUMNS if c not in decisions.columns]
    if missing:
        raise ValueError(
            f"decision log is missing columns {missing}; needs {list(REQUIRED_COLUMNS)}"
        )
    if decisions.empty:
        raise ValueError("decision log is empty: nothing to evaluate")
    decisions = decisions.reset_index(drop=True)
    for i, (first, methods) in enumerate(
        zip(decisions["first_method"], decisions["methods"], strict=True)
    ):
        if first not in methods:
            raise ValueError(f"row {i}: first_method {first!r} is not among its methods {methods}")

    reward = _array("reward", decisions["reward"])
    pscore = _array("propensity", decisions["propensity"])
    _check_pscores(pscore)
    target = [
        policy_probabilities(policy, list(methods), context)
        for methods, context in zip(decisions["methods"], decisions["context"], strict=True)
    ]
    target_pscore = np.array(
        [
            probs.get(MethodType(first), 0.0)
            for probs, first in zip(target, decisions["first_method"], strict=True)
        ]
    )
    hat_logged, expected_target = reward_model_predictions(
        decisions, target, n_folds=n_folds, seed=seed
    )

    n = len(decisions)
    ess = effective_sample_size(pscore, target_pscore)
    boot = {"alpha": alpha, "n_boot": n_boot, "seed": seed}
    rows = [
        ("ipw", ipw, (reward, pscore, target_pscore), ess),
        ("snipw", snipw, (reward, pscore, target_pscore), ess),
        ("dm", dm, (expected_target,), float(n)),
        ("dr", dr, (reward, pscore, target_pscore, hat_logged, expected_target), ess),
        ("logged", dm, (reward,), float(n)),  # the logging policy's own mean reward
    ]
    table = []
    for name, estimator, arrays, size in rows:
        low, high = bootstrap_interval(estimator, *arrays, **boot)
        table.append(
            {
                "estimator": name,
                "estimate": estimator(*arrays),
                "low": low,
                "high": high,
                "ess": size,
            }
        )
    return pd.DataFrame(table, columns=["estimator", "estimate", "low", "high", "ess"])
