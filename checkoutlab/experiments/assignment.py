"""Deterministic, sticky assignment of units to experiment variants.

A unit (the customer reference, or the checkout session id for guests) hashes with the
experiment's seed to a bucket in [0, 1) — SHA-256, so every server and every language agrees —
and the bucket falls into one variant's share of the cumulative weights. The first assignment
is stored (``experiment_assignments``, unique per experiment and unit) and reused, so a weight
change on a running experiment only affects units that have not been assigned yet.

Namespaces make experiments mutually exclusive: the unit hashes with the namespace name to a
second point in [0, 1), and only the experiment whose namespace range holds that point may
enrol it (ranges of running experiments in one namespace never overlap: ``start`` refuses).

The profile builder calls :func:`assign` once per profile; it returns the variant, its
assignment probability (logged as the decision's propensity) and the variant's form
configuration. :func:`apply_verification` is the only way a variant touches verification: it
adds steps and can never remove one the fraud scorer or the merchant rules require.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import celpy
import numpy as np
from celpy import celtypes
from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from checkoutlab.db import utcnow
from checkoutlab.experiments.models import AssignmentRecord, Experiment
from checkoutlab.experiments.schemas import (
    Allocation,
    FormConfig,
    Namespace,
    Status,
    Variant,
    variant_by_key,
)

log = logging.getLogger(__name__)
_SCALE = float(2**64)


def bucket(*parts: str) -> float:
    """A uniform point in [0, 1) from the SHA-256 of ``parts`` (joined by ':').

    >>> bucket("seed", "cus_1") == bucket("seed", "cus_1")
    True
    >>> 0 <= bucket("seed", "cus_1") < 1
    True
    """
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def choose(variants: Sequence[Variant], point: float, shares: Sequence[float] | None = None):
    """The variant whose slice of the cumulative shares holds ``point``, with its share.

    ``shares`` default to the normalised weights.
    """
    if shares is None:
        total = sum(v.weight for v in variants)
        shares = [v.weight / total for v in variants]
    cumulative = 0.0
    for variant, share in zip(variants, shares, strict=True):
        cumulative += share
        if point < cumulative:
            return variant, share
    return variants[-1], shares[-1]  # rounding: the cumulative sum may end just below 1


def in_namespace(namespace: Namespace | None, unit_id: str) -> bool:
    if namespace is None:
        return True
    point = bucket("namespace", namespace.name, unit_id)
    return namespace.start <= point < namespace.end


def unit_id_for(*, customer_ref: str | None, session_id: str) -> str:
    """Customers keep their variant across sessions; guests are randomised per session."""
    return f"cus:{customer_ref}" if customer_ref else f"ses:{session_id}"


@dataclass(frozen=True)
class Assignment:
    """What the builder needs: key, variant, probability and the variant's form changes."""

    key: str
    variant: str
    probability: float
    config: FormConfig = field(default_factory=FormConfig)
    experiment_id: str = ""


_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def targeted(expression: str | None, activation: dict[str, Any]) -> bool:
    """Whether the CEL ``expression`` is true for ``activation``; an expression that cannot be
    evaluated (a missing field) or is not boolean does not enrol the unit."""
    if not expression:
        return True
    program = _PROGRAMS.get(expression)
    if program is None:
        from checkoutlab.profile.rules import compile_expression

        program = _PROGRAMS[expression] = _ENV.program(compile_expression(expression))
    try:
        result = program.evaluate(celpy.json_to_cel(activation))
    except celpy.CELEvalError:
        return False
    return isinstance(result, celtypes.BoolType) and bool(result)


def shares_for(db: Session, experiment: Experiment, variants: Sequence[Variant]) -> list[float]:
    """Current allocation shares: the weights, or Thompson sampling for a bandit."""
    total = sum(v.weight for v in variants)
    weights = [v.weight / total for v in variants]
    allocation = Allocation.model_validate(experiment.allocation)
    if allocation.type == "fixed":
        return weights
    return thompson_shares(db=db, experiment=experiment, weights=weights, allocation=allocation)


_BANDIT_CACHE: dict[str, tuple[float, list[float]]] = {}
BANDIT_REFRESH_SECONDS = 30.0


def thompson_shares(
    *, db: Session, experiment: Experiment, weights: list[float], allocation: Allocation
) -> list[float]:
    """Thompson-sampling shares over variants for the primary metric (conversion per session).

    During the explore phase (fewer than ``explore_units`` assigned units) the weights apply.
    Then each variant's share is ``min_share + (1 - k min_share) P(variant is best)``, with
    P(best) from Beta(1 + conversions, 1 + sessions - conversions) posteriors estimated by
    seeded Monte Carlo (so every server computes the same shares from the same data), refreshed
    every :data:`BANDIT_REFRESH_SECONDS`. Conversions are counted by SQL per variant.
    """
    now = time.monotonic()
    cached = _BANDIT_CACHE.get(experiment.id)
    if cached is not None and now - cached[0] < BANDIT_REFRESH_SECONDS:
        return cached[1]
    assigned = db.scalar(
        select(func.count()).where(AssignmentRecord.experiment_id == experiment.id)
    )
    if (assigned or 0) < allocation.explore_units:
        return weights
    from checkoutlab.payments.models import Payment
    from checkoutlab.profile.models import Decision

    converted = (
        select(Payment.session_id)
        .where(Payment.merchant_id == experiment.merchant_id, Payment.status == "succeeded")
        .scalar_subquery()
    )
    rows = db.execute(
        select(
            Decision.variant,
            func.count(distinct(Decision.session_id)),
            func.count(distinct(case((Decision.session_id.in_(converted), Decision.session_id)))),
        )
        .where(
            Decision.merchant_id == experiment.merchant_id,
            Decision.experiment_key == experiment.key,
        )
        .group_by(Decision.variant)
    ).all()
    counts = {variant: (int(n), int(c)) for variant, n, c in rows}
    keys = [v["key"] for v in experiment.variants]
    trials = np.array([counts.get(k, (0, 0))[0] for k in keys], dtype=float)
    wins = np.array([counts.get(k, (0, 0))[1] for k in keys], dtype=float)
    seed = int.from_bytes(
        hashlib.sha256(f"{experiment.seed}:{int(trials.sum())}".encode()).digest()[:8], "big"
    )
    rng = np.random.default_rng(seed)
    draws = rng.beta(1 + wins, 1 + trials - wins, size=(4000, len(keys)))
    p_best = np.bincount(draws.argmax(axis=1), minlength=len(keys)) / draws.shape[0]
    k = len(keys)
    floor = min(allocation.min_share, 1.0 / k)
    shares = (floor + (1 - k * floor) * p_best).tolist()
    _BANDIT_CACHE[experiment.id] = (now, shares)
    return shares


def _insert_if_absent(db: Session, row: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: two servers racing on a new unit store one row."""
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(AssignmentRecord).values(**row)
    db.execute(statement.on_conflict_do_nothing(index_elements=["experiment_id", "unit_id"]))


def assign_to(
    db: Session, experiment: Experiment, unit_id: str, *, store: bool = True
) -> Assignment:
    """Assign ``unit_id`` to a variant of ``experiment`` (no targeting or namespace check)."""
    variants = [Variant.model_validate(v) for v in experiment.variants]
    stored = db.scalar(
        select(AssignmentRecord).where(
            AssignmentRecord.experiment_id == experiment.id, AssignmentRecord.unit_id == unit_id
        )
    )
    if stored is None:
        variant, share = choose(
            variants, bucket(experiment.seed, unit_id), shares_for(db, experiment, variants)
        )
        if store:
            _insert_if_absent(
                db,
                {
                    "experiment_id": experiment.id,
                    "unit_id": unit_id,
                    "variant": variant.key,
                    "probability": share,
                    "assigned_at": utcnow(),
                },
            )
            stored = db.scalar(
                select(AssignmentRecord).where(
                    AssignmentRecord.experiment_id == experiment.id,
                    AssignmentRecord.unit_id == unit_id,
                )
            )
        if stored is None:
            return Assignment(experiment.key, variant.key, share, variant.config, experiment.id)
    chosen = variant_by_key(variants, stored.variant)
    if chosen is None:  # a variant removed from a draft that had test assignments
        chosen = variants[0]
    return Assignment(
        experiment.key, stored.variant, stored.probability, chosen.config, experiment.id
    )


def running(db: Session, merchant_id: str) -> list[Experiment]:
    return list(
        db.scalars(
            select(Experiment)
            .where(Experiment.merchant_id == merchant_id, Experiment.status == Status.running)
            .order_by(Experiment.started_at, Experiment.id)
        )
    )


def assign(
    db: Session, merchant_id: str, unit_id: str, context: dict[str, Any]
) -> Assignment | None:
    """The builder hook: the unit's variant in the first running experiment that targets it.

    ``context`` is the activation of the merchant rules (``amount``, ``risk``, ``context``,
    ``customer``). Never raises for a shopper: a broken experiment is logged and skipped.
    The assignment row joins the caller's transaction (the builder commits it with the
    decision).
    """
    for experiment in running(db, merchant_id):
        try:
            namespace = (
                Namespace.model_validate(experiment.namespace) if experiment.namespace else None
            )
            if not in_namespace(namespace, unit_id):
                continue
            if not targeted(experiment.targeting, context):
                continue
            return assign_to(db, experiment, unit_id)
        except Exception:  # fail safe: the checkout goes on without the experiment
            log.exception("experiment %s could not assign unit", experiment.key)
    return None


def apply_verification(verification: Any, assignment: Assignment | None) -> Any:
    """``verification`` (a profile ``Verification``) plus the variant's added steps.

    Steps are only ever switched on: a variant cannot remove what risk requires.
    """
    if assignment is None or not assignment.config.verification_add:
        return verification
    steps = verification.model_dump()
    for step in assignment.config.verification_add:
        steps[step.value] = True
    return type(verification)(**steps)
