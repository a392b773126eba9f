"""River bandits behind the ``OrderingPolicy`` seam, with a logged propensity for every decision.

The *action* of an ordering decision is the payment method placed first; the rest of the order
follows the policy's scores for the other eligible methods (ties keep the merchant's order).
Learning state lives in river objects (``river.bandit`` policies and ``river.linear_model``
models); this module adds what river does not have: a full ranking, the exact probability of
every first method, a per-call seedable random generator, and snapshots.

Randomisation
-------------
Each policy defines a *base* distribution ``p_base`` over the ``k`` eligible methods, then mixes
in the **exploration floor** ``f`` (constructor argument ``floor``; per call
``f_eff = min(floor, 1/k)``): with probability ``k * f_eff`` the first method is drawn uniformly,
otherwise from ``p_base``. The logged propensity of the first method ``a`` is therefore exactly::

    propensity(a) = f_eff + (1 - k * f_eff) * p_base(a)        >= f_eff > 0

``p_base`` per policy:

- :class:`EpsilonGreedyPolicy` (river ``EpsilonGreedy``): ``epsilon_t / k`` everywhere plus
  ``1 - epsilon_t`` on the arm with the highest mean reward (river's rule: first maximum in the
  merchant's order; ``epsilon_t`` is river's ``current_epsilon`` with decay). Exact.
- :class:`UCBPolicy` (river ``UCB``) and :class:`LinUCBPolicy` (river ``LinUCBDisjoint``):
  deterministic argmax of river's upper confidence bound, uniform among exact ties. Exact.
- :class:`LogisticSoftmaxPolicy` (one river ``LogisticRegression`` per arm): softmax of the
  predicted conversion probabilities divided by ``temperature``. Exact.
- :class:`ThompsonSamplingPolicy` (river ``ThompsonSampling`` with ``proba.Beta`` rewards): the
  decision is one Thompson draw (one Beta posterior sample per arm from the per-call
  generator, argmax). ``p_base`` has no closed form; it is a **Monte-Carlo estimate from
  ``n_draws`` (default 200) independent posterior draws**: the share of draws each arm wins.
  Those draws are seeded from (policy seed, number of updates, eligible set), so the estimate
  is reproducible from the snapshot, and cached until the next update (serving reuses it).
- :class:`RandomOrderPolicy`: a uniformly random permutation (propensity ``1/k``), a baseline.

The rest of the order: methods other than the first sorted by the policy's score, highest first
(mean reward, UCB, Thompson draw of this decision, predicted conversion).

Arms are :class:`~checkoutlab.merchants.schemas.MethodType` values. The eligible set may change
from call to call: only the ``methods`` passed to :meth:`BanditPolicy.rank` are scored and
returned, and an arm never seen before starts from the river prior. ``rank`` and
``probabilities`` never change the learned state; only :meth:`BanditPolicy.update` does.

Snapshots
---------
``version`` is ``"<config hash>.<number of updates>"``. :meth:`BanditPolicy.state_dict` returns a
JSON-serialisable dict (metadata plus a base64 pickle of the policy, river objects included);
:meth:`BanditPolicy.from_state` restores it. Pickle: load snapshots only from the platform's
own database, never from user input.

>>> from checkoutlab.merchants.schemas import MethodType as M
>>> policy = ThompsonSamplingPolicy(seed=7)
>>> policy.update({}, M.ideal, 1)
>>> ranking = policy.rank([M.card, M.ideal], {}, rng=1)
>>> sorted(ranking.order) == sorted([M.card, M.ideal]), 0 < ranking.propensity <= 1
(True, True)
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import math
import pickle
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import river
from river import bandit, linear_model, optim, proba, stats

from checkoutlab.bandits.features import context_features
from checkoutlab.bandits.policy import Ranking
from checkoutlab.merchants.schemas import MethodType

RNGLike = np.random.Generator | int | None

SNAPSHOT_FORMAT = 1
_ARM_CODES = {arm: code for code, arm in enumerate(MethodType)}


class SnapshotError(ValueError):
    """A snapshot that cannot be restored into the requested policy class."""


def eligible_arms(methods: list[MethodType] | list[str]) -> list[MethodType]:
    """The methods as ``MethodType``, duplicates dropped, the caller's order kept."""
    arms = list(dict.fromkeys(m if type(m) is MethodType else _arm(m) for m in methods))
    if not arms:
        raise ValueError("no eligible payment methods to rank: pass at least one")
    return arms


def _arm(method: MethodType | str) -> MethodType:
    try:
        return MethodType(method)
    except ValueError:
        known = ", ".join(m.value for m in MethodType)
        raise ValueError(f"unknown payment method {method!r}; known: {known}") from None


def _minor(version: str | None) -> str:
    """``"0.26"`` of ``"0.26.1"``: pickled river objects are only trusted within a minor."""
    return ".".join(str(version).split(".")[:2])


def _generator(rng: RNGLike, default: np.random.Generator) -> np.random.Generator:
    if rng is None:
        return default
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _uniform_over_max(scores: list[float]) -> list[float]:
    """Uniform distribution over the positions holding the maximum score (exact ties)."""
    best = max(scores)
    ties = scores.count(best)
    return [1.0 / ties if s == best else 0.0 for s in scores]


# The hot path works on plain lists: for k <= 7 arms they beat numpy's per-call overhead.
@dataclass(frozen=True, slots=True)
class _Evaluation:
    scores: list[float]  # ranking scores for the eligible arms, higher first
    p_base: list[float]  # the base policy's probability of each arm being first
    choice: int | None = None  # the base policy's own decision, when it was sampled already


def _sample(probabilities: list[float], u: float) -> int:
    """Inverse-CDF draw of an index from ``probabilities`` with one uniform ``u``."""
    threshold = u * sum(probabilities)
    cumulative = 0.0
    for i, p in enumerate(probabilities):
        cumulative += p
        if threshold < cumulative:
            return i
    return max(i for i, p in enumerate(probabilities) if p > 0)  # rounding at the top end


class BanditPolicy(ABC):
    """Shared ranking, propensity, learning and snapshot logic; subclasses wrap river.

    Parameters
    ----------
    floor
        Exploration floor: the minimum probability of every eligible method being first
        (capped at ``1/k`` for ``k`` eligible methods). Must be in ``(0, 0.5]``.
    seed
        Seed of the policy's own generator, used when ``rank`` gets no ``rng``.
    """

    name: ClassVar[str]

    def __init__(self, *, floor: float = 0.01, seed: int | None = None) -> None:
        if not 0.0 < floor <= 0.5:
            raise ValueError(f"floor must be in (0, 0.5], got {floor!r}")
        self.floor = floor
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.n_updates = 0
        self.pulls: Counter[MethodType] = Counter()
        self._reward_means: dict[MethodType, stats.Mean] = {}

    # -- hooks -------------------------------------------------------------------------------

    @abstractmethod
    def _evaluate(
        self, arms: list[MethodType], context: dict[str, Any], gen: np.random.Generator
    ) -> _Evaluation: ...

    @abstractmethod
    def _learn(self, context: dict[str, Any], arm: MethodType, reward: float) -> None: ...

    def _check_reward(self, reward: float) -> float:
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"reward must be a finite number, got {reward!r}")
        return reward

    # -- OrderingPolicy ----------------------------------------------------------------------

    def rank(
        self, methods: list[MethodType], context: dict[str, Any], *, rng: RNGLike = None
    ) -> Ranking:
        """Order the eligible ``methods``; ``propensity`` is P(first method) under the policy.

        ``rng`` (a ``numpy.random.Generator`` or an int seed) makes one call reproducible;
        without it the policy's own seeded generator is used.
        """
        arms = eligible_arms(methods)
        if len(arms) == 1:
            return Ranking(arms, 1.0, self.name, self.version)
        gen = _generator(rng, self._rng)
        ev = self._evaluate(arms, context, gen)
        k = len(arms)
        floor = min(self.floor, 1.0 / k)
        if gen.random() < k * floor:
            first = int(gen.integers(k))
        elif ev.choice is not None:
            first = ev.choice
        else:
            first = _sample(ev.p_base, gen.random())
        propensity = floor + (1.0 - k * floor) * ev.p_base[first]
        scores = ev.scores
        rest = sorted((j for j in range(k) if j != first), key=lambda j: -scores[j])
        return Ranking([arms[first], *(arms[j] for j in rest)], propensity, self.name, self.version)

    def probabilities(
        self, methods: list[MethodType], context: dict[str, Any], *, rng: RNGLike = None
    ) -> dict[MethodType, float]:
        """P(method is placed first) for every eligible method; sums to 1."""
        arms = eligible_arms(methods)
        if len(arms) == 1:
            return {arms[0]: 1.0}
        ev = self._evaluate(arms, context, _generator(rng, self._rng))
        k = len(arms)
        floor = min(self.floor, 1.0 / k)
        return {
            arm: floor + (1.0 - k * floor) * prob for arm, prob in zip(arms, ev.p_base, strict=True)
        }

    def update(
        self, context: dict[str, Any], first_method: MethodType | str, reward: float
    ) -> None:
        """Learn from one outcome: ``reward`` (1 converted, 0 not) of the method shown first."""
        arm = _arm(first_method)
        reward = self._check_reward(reward)
        self._learn(context, arm, reward)
        self.n_updates += 1
        self.pulls[arm] += 1
        self._reward_means.setdefault(arm, stats.Mean()).update(reward)

    # -- introspection and snapshots ---------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """Constructor arguments, stored verbatim (river style)."""
        names = inspect.signature(type(self).__init__).parameters
        return {n: getattr(self, n) for n in names if n != "self"}

    @property
    def config_id(self) -> str:
        """Short hash of the class and its constructor arguments (fixed after construction)."""
        cached = self.__dict__.get("_config_id")
        if cached is None:
            config = json.dumps([type(self).__name__, self.params()], sort_keys=True, default=str)
            digest = hashlib.blake2b(config.encode(), digest_size=4).hexdigest()
            cached = self.__dict__["_config_id"] = digest
        return cached

    @property
    def version(self) -> str:
        """``<config_id>.<updates learned>``: changes whenever the learned state does."""
        return f"{self.config_id}.{self.n_updates}"

    def arm_estimates(self) -> dict[MethodType, float]:
        """The policy's current value estimate per learned arm (posterior or running mean)."""
        return {arm: mean.get() for arm, mean in self._reward_means.items()}

    def summary(self) -> dict[str, Any]:
        """JSON-ready view for ``/v1/bandits/{policy}``: arms, pulls, estimates, version."""
        estimates = self.arm_estimates()
        return {
            "policy": self.name,
            "version": self.version,
            "params": self.params(),
            "updates": self.n_updates,
            "arms": {
                arm.value: {
                    "pulls": self.pulls[arm],
                    "mean_reward": self._reward_means[arm].get(),
                    "estimate": estimates.get(arm),
                }
                for arm in sorted(self.pulls, key=lambda a: a.value)
            },
        }

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot: metadata plus the pickled policy (base64)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "class": type(self).__name__,
            "policy": self.name,
            "version": self.version,
            "params": json.loads(json.dumps(self.params(), default=str)),
            "updates": self.n_updates,
            "river_version": river.__version__,
            "payload": base64.b64encode(pickle.dumps(self, protocol=5)).decode("ascii"),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BanditPolicy:
        """Restore a :meth:`state_dict` snapshot; call on a subclass to also check its type."""
        if state.get("format") != SNAPSHOT_FORMAT:
            raise SnapshotError(f"unsupported snapshot format {state.get('format')!r}")
        if _minor(state.get("river_version")) != _minor(river.__version__):
            raise SnapshotError(
                f"snapshot was written with river {state.get('river_version')}, this process "
                f"runs river {river.__version__}: retrain or replay the decision log"
            )
        policy = pickle.loads(base64.b64decode(state["payload"]))  # noqa: S301 - own database
        if not isinstance(policy, cls):
            raise SnapshotError(f"snapshot holds a {type(policy).__name__}, not a {cls.__name__}")
        return policy

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args}) version={self.version}"


class ThompsonSamplingPolicy(BanditPolicy):
    """Beta-Bernoulli Thompson sampling (river ``ThompsonSampling(reward_obj=proba.Beta(...))``).

    Rewards must be 0 or 1. Posterior parameters are read from river's per-arm ``proba.Beta``;
    draws are vectorised with numpy. The logged propensity is a Monte-Carlo estimate from
    ``n_draws`` independent posterior draws (module docstring).

    Parameters
    ----------
    prior_alpha, prior_beta
        Beta prior of every arm's conversion rate.
    n_draws
        Posterior draws per call for the Monte-Carlo propensity estimate.
    floor, seed
        See :class:`BanditPolicy`.
    """

    name = "thompson"

    def __init__(
        self,
        *,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        n_draws: int = 200,
        floor: float = 0.01,
        seed: int | None = None,
    ) -> None:
        super().__init__(floor=floor, seed=seed)
        if n_draws < 1:
            raise ValueError(f"n_draws must be at least 1, got {n_draws!r}")
        self.prior_alpha = prior_alpha
        self.prior_beta = prior_beta
        self.n_draws = n_draws
        self._mc_entropy = int(np.random.SeedSequence(seed).entropy)
        self._mc_cache: dict[Any, Any] = {}
        self._river = bandit.ThompsonSampling(
            reward_obj=proba.Beta(alpha=prior_alpha, beta=prior_beta), burn_in=0, seed=seed
        )

    def posterior(self, arm: MethodType) -> tuple[float, float]:
        """(alpha, beta) of the arm's Beta posterior; the prior for an unseen arm."""
        dist = self._river._rewards.get(arm)
        if dist is None:
            return float(self.prior_alpha), float(self.prior_beta)
        return float(dist.alpha), float(dist.beta)

    def arm_estimates(self) -> dict[MethodType, float]:
        return {arm: a / (a + b) for arm in self.pulls for a, b in [self.posterior(arm)]}

    def win_shares(self, arms: list[MethodType]) -> list[float]:
        """Monte-Carlo P(arm has the highest posterior draw), from ``n_draws`` draws.

        The estimate is a deterministic function of the snapshot (seed, updates) and the
        eligible set: its draws come from a generator seeded with those, so a logged
        propensity can be recomputed offline, and it is cached until the next ``update``.
        """
        key = tuple(arms)
        cache = self._mc_cache
        if cache.get("updates") != self.n_updates:
            cache.clear()
            cache["updates"] = self.n_updates
        shares = cache.get(key)
        if shares is None:
            codes = [_ARM_CODES[arm] for arm in arms]
            mc = np.random.default_rng([self._mc_entropy, self.n_updates, *codes])
            draws = np.empty((self.n_draws, len(arms)))
            for j, arm in enumerate(arms):  # scalar parameters sample faster than broadcast
                a, b = self.posterior(arm)
                draws[:, j] = mc.beta(a, b, size=self.n_draws)
            wins = np.bincount(draws.argmax(axis=1), minlength=len(arms)) / self.n_draws
            shares = cache[key] = wins.tolist()
        return shares

    def _evaluate(self, arms, context, gen):
        params = [self.posterior(arm) for arm in arms]
        decision = gen.beta([a for a, _ in params], [b for _, b in params]).tolist()
        return _Evaluation(
            scores=decision, p_base=self.win_shares(arms), choice=decision.index(max(decision))
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_mc_cache"] = {}
        return state

    def _check_reward(self, reward):
        reward = super()._check_reward(reward)
        if reward not in (0.0, 1.0):
            raise ValueError(f"Thompson sampling with Beta rewards needs 0 or 1, got {reward!r}")
        return reward

    def _learn(self, context, arm, reward):
        self._river.update(arm, reward)


class EpsilonGreedyPolicy(BanditPolicy):
    """Epsilon-greedy over mean rewards (river ``EpsilonGreedy``), exact propensities.

    Parameters
    ----------
    epsilon
        Exploration probability (uniform over the eligible methods).
    decay
        river's exponential decay of epsilon with the number of updates.
    floor, seed
        See :class:`BanditPolicy`.
    """

    name = "epsilon_greedy"

    def __init__(
        self,
        *,
        epsilon: float = 0.1,
        decay: float = 0.0,
        floor: float = 0.01,
        seed: int | None = None,
    ) -> None:
        super().__init__(floor=floor, seed=seed)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = epsilon
        self.decay = decay
        self._river = bandit.EpsilonGreedy(
            epsilon=epsilon, decay=decay, reward_obj=stats.Mean(), burn_in=0, seed=seed
        )

    def arm_estimates(self) -> dict[MethodType, float]:
        return {arm: self._river._rewards[arm].get() for arm in self.pulls}

    def _evaluate(self, arms, context, gen):
        rewards = self._river._rewards
        # river scores an unseen arm with a fresh reward object: Mean() == 0.
        means = [r.get() if (r := rewards.get(arm)) is not None else 0.0 for arm in arms]
        eps = float(self._river.current_epsilon)
        p_base = [eps / len(arms)] * len(arms)
        p_base[means.index(max(means))] += 1.0 - eps  # first maximum, as river's max()
        return _Evaluation(scores=means, p_base=p_base)

    def _learn(self, context, arm, reward):
        self._river.update(arm, reward)


class UCBPolicy(BanditPolicy):
    """UCB over mean rewards (river ``UCB``): deterministic, so the floor adds exploration.

    Scores are river's bound ``mean + delta * sqrt(2 ln n / n_arm)``, infinite for an arm not
    yet pulled; the first method is the argmax (uniform among exact ties, as river).

    Parameters
    ----------
    delta
        Width of the confidence bound (1 is UCB1); rewards are 0/1 so no scaling is needed.
    floor, seed
        See :class:`BanditPolicy`.
    """

    name = "ucb"

    def __init__(self, *, delta: float = 1.0, floor: float = 0.01, seed: int | None = None):
        super().__init__(floor=floor, seed=seed)
        self.delta = delta
        self._river = bandit.UCB(
            delta=delta, reward_obj=stats.Mean(), reward_scaler=None, burn_in=0, seed=seed
        )

    def arm_estimates(self) -> dict[MethodType, float]:
        return {arm: self._river._rewards[arm].get() for arm in self.pulls}

    def _evaluate(self, arms, context, gen):
        ucb = self._river
        log_n = math.log(ucb._n) if ucb._n else 0.0
        scores = [
            r.get() + self.delta * math.sqrt(2.0 * log_n / ucb._counts[arm])
            if (r := ucb._rewards.get(arm)) is not None
            else math.inf
            for arm in arms
        ]
        return _Evaluation(scores=scores, p_base=_uniform_over_max(scores))

    def _learn(self, context, arm, reward):
        self._river.update(arm, reward)


class LinUCBPolicy(BanditPolicy):
    """Contextual LinUCB, disjoint (river ``LinUCBDisjoint``): one Bayesian linear regression
    per arm over :func:`~checkoutlab.bandits.features.context_features`.

    Score of an arm: ``mu + sigma`` of its predictive distribution (river's rule); the first
    method is the argmax (uniform among exact ties), so the floor adds exploration.

    river 0.26's ``LinUCBDisjoint.__init__`` passes ``burn_in`` positionally into
    ``reward_scaler``; the wrapper builds it with keywords and resets both attributes.

    Parameters
    ----------
    alpha, beta, smoothing
        river's ``BayesianLinearRegression`` prior precision, noise precision and forgetting.
    floor, seed
        See :class:`BanditPolicy`.
    """

    name = "linucb"

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        smoothing: float | None = None,
        floor: float = 0.01,
        seed: int | None = None,
    ) -> None:
        super().__init__(floor=floor, seed=seed)
        self.alpha = alpha
        self.beta = beta
        self.smoothing = smoothing
        self._river = bandit.LinUCBDisjoint(
            alpha=alpha,
            beta=beta,
            smoothing=smoothing,
            reward_obj=stats.Mean(),
            burn_in=0,
            seed=seed,
        )
        # river 0.26: super().__init__(reward_obj, burn_in) puts burn_in into reward_scaler.
        self._river.reward_scaler = None
        self._river.burn_in = 0
        self._prior = linear_model.BayesianLinearRegression(
            alpha=alpha, beta=beta, smoothing=smoothing
        )

    def _evaluate(self, arms, context, gen):
        x = context_features(context)
        models = self._river._bayes_lin_regs
        scores = []
        for arm in arms:
            dist = models.get(arm, self._prior).predict_one(x, with_dist=True)
            scores.append(dist.mu + dist.sigma)
        return _Evaluation(scores=scores, p_base=_uniform_over_max(scores))

    def arm_estimates(self) -> dict[MethodType, float]:
        return {arm: self._river._rewards[arm].get() for arm in self.pulls}

    def _learn(self, context, arm, reward):
        self._river.update(arm, context_features(context), reward)


class LogisticSoftmaxPolicy(BanditPolicy):
    """Contextual: one river ``LogisticRegression`` per arm, softmax (Boltzmann) exploration.

    Each arm's model predicts the conversion probability of showing that method first from
    :func:`~checkoutlab.bandits.features.context_features`; an arm never pulled predicts 0.5
    (an untrained model), which makes new methods tried early. ``p_base`` is the softmax of the
    predictions divided by ``temperature`` (in conversion-rate units: an arm 0.1 behind the best
    with ``temperature=0.02`` is shown first ``e^-5`` times as often). Constant-step SGD keeps
    the models tracking drifting preferences.

    Parameters
    ----------
    temperature
        Softmax temperature, > 0.
    learning_rate
        Constant SGD step of every arm's model (weights and intercept).
    l2
        L2 penalty of every arm's model.
    floor, seed
        See :class:`BanditPolicy`.
    """

    name = "logistic_softmax"

    def __init__(
        self,
        *,
        temperature: float = 0.02,
        learning_rate: float = 0.05,
        l2: float = 0.0,
        floor: float = 0.005,
        seed: int | None = None,
    ) -> None:
        super().__init__(floor=floor, seed=seed)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = temperature
        self.learning_rate = learning_rate
        self.l2 = l2
        self._models: dict[MethodType, linear_model.LogisticRegression] = {}

    def _new_model(self) -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression(
            optimizer=optim.SGD(lr=self.learning_rate),
            l2=self.l2,
            intercept_lr=self.learning_rate,
        )

    def predict(self, arms: list[MethodType], context: dict[str, Any]) -> list[float]:
        """Predicted conversion probability of each arm shown first in this context."""
        x = context_features(context)
        return [m.predict_proba_one(x)[True] if (m := self._models.get(a)) else 0.5 for a in arms]

    def _evaluate(self, arms, context, gen):
        scores = self.predict(arms, context)
        best = max(scores)
        weights = [math.exp((s - best) / self.temperature) for s in scores]
        total = sum(weights)
        return _Evaluation(scores=scores, p_base=[w / total for w in weights])

    def _check_reward(self, reward):
        reward = super()._check_reward(reward)
        if reward not in (0.0, 1.0):
            raise ValueError(f"logistic models need a 0 or 1 reward, got {reward!r}")
        return reward

    def _learn(self, context, arm, reward):
        model = self._models.get(arm)
        if model is None:
            model = self._models[arm] = self._new_model()
        model.learn_one(context_features(context), reward == 1.0)


class RandomOrderPolicy(BanditPolicy):
    """Baseline: a uniformly random order (propensity ``1/k``); learns nothing."""

    name = "random_order"

    def __init__(self, *, floor: float = 0.01, seed: int | None = None) -> None:
        super().__init__(floor=floor, seed=seed)

    def _evaluate(self, arms, context, gen):
        scores = gen.random(len(arms)).tolist()
        k = len(arms)
        return _Evaluation(scores=scores, p_base=[1.0 / k] * k, choice=scores.index(max(scores)))

    def _learn(self, context, arm, reward):
        return None


POLICY_CLASSES: dict[str, type[BanditPolicy]] = {
    cls.name: cls
    for cls in (
        ThompsonSamplingPolicy,
        EpsilonGreedyPolicy,
        UCBPolicy,
        LinUCBPolicy,
        LogisticSoftmaxPolicy,
        RandomOrderPolicy,
    )
}


def make_policy(name: str, **params: Any) -> BanditPolicy:
    """Build a policy from its ``name`` (``thompson``, ``ucb``, ``linucb``, ...) and params."""
    try:
        cls = POLICY_CLASSES[name]
    except KeyError:
        raise ValueError(
            f"unknown bandit policy {name!r}; known: {', '.join(sorted(POLICY_CLASSES))}"
        ) from None
    return cls(**params)
