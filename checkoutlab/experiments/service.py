"""Experiment service functions: create, update, lifecycle (start, stop, ship), read.

Lifecycle: ``draft → running → stopped → shipped`` (a stopped experiment may be restarted; a
running one may be shipped directly, which stops it). Any other transition is a 409.
Shipping makes the winner's form configuration the merchant's default (layout, ordering
policy, theme).
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from checkoutlab.db import new_id, utcnow
from checkoutlab.errors import Conflict, InvalidRequest, NotFound
from checkoutlab.experiments.models import Experiment
from checkoutlab.experiments.schemas import (
    ExperimentCreate,
    ExperimentRead,
    ExperimentUpdate,
    Namespace,
    Status,
    Variant,
    dump,
    variant_by_key,
)
from checkoutlab.merchants import service as merchants

_TRANSITIONS: dict[str, set[str]] = {
    "start": {Status.draft, Status.stopped},
    "stop": {Status.running},
    "ship": {Status.running, Status.stopped},
}
_PAST = {"start": "started", "stop": "stopped", "ship": "shipped"}
_RUNNING_EDITABLE = {"hypothesis", "weights", "allocation"}


def read(experiment: Experiment) -> ExperimentRead:
    return ExperimentRead.model_validate(experiment, from_attributes=True)


def get(*, db: Session, merchant_id: str, key: str) -> Experiment:
    experiment = db.scalar(
        select(Experiment).where(Experiment.merchant_id == merchant_id, Experiment.key == key)
    )
    if experiment is None:
        raise NotFound(f"No such experiment: '{key}'", param="key")
    return experiment


def find(*, db: Session, key: str, merchant_id: str | None = None) -> Experiment:
    """By key; without ``merchant_id`` the key must be unique across merchants (CLI, notebooks)."""
    if merchant_id is not None:
        return get(db=db, merchant_id=merchant_id, key=key)
    found = list(db.scalars(select(Experiment).where(Experiment.key == key).limit(2)))
    if not found:
        raise NotFound(f"No such experiment: '{key}'", param="key")
    if len(found) > 1:
        raise InvalidRequest(
            f"Several merchants have an experiment '{key}': pass the merchant id.",
            code="merchant_required",
            param="merchant",
        )
    return found[0]


def list_(*, db: Session, merchant_id: str, status: Status | None = None) -> list[Experiment]:
    query = select(Experiment).where(Experiment.merchant_id == merchant_id)
    if status is not None:
        query = query.where(Experiment.status == status)
    return list(db.scalars(query.order_by(Experiment.created_at.desc(), Experiment.id)))


def create(*, db: Session, merchant_id: str, data: ExperimentCreate) -> Experiment:
    experiment = Experiment(
        id=new_id("exp"),
        merchant_id=merchant_id,
        key=data.key,
        hypothesis=data.hypothesis,
        status=Status.draft,
        variants=[v.model_dump(mode="json") for v in data.variants],
        targeting=data.targeting,
        namespace=dump(data.namespace),
        metrics=data.metrics.model_dump(mode="json"),
        allocation=data.allocation.model_dump(mode="json"),
        seed=data.seed or secrets.token_hex(8),
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    db.add(experiment)
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise Conflict(
            f"An experiment with key '{data.key}' already exists.",
            code="experiment_exists",
            param="key",
        ) from exc
    return experiment


def update(*, db: Session, experiment: Experiment, data: ExperimentUpdate) -> Experiment:
    changes = data.model_dump(exclude_unset=True)
    status = Status(experiment.status)
    if status in (Status.stopped, Status.shipped):
        allowed = {"hypothesis"}
    elif status is Status.running:
        allowed = _RUNNING_EDITABLE
    else:
        allowed = set(changes)
    refused = sorted(set(changes) - allowed)
    if refused:
        raise Conflict(
            f"Cannot change {', '.join(refused)} of a {status.value} experiment; "
            f"only {', '.join(sorted(allowed))} may change "
            "(create a new experiment to test something else).",
            code="experiment_locked",
            param=refused[0],
        )
    if data.hypothesis is not None:
        experiment.hypothesis = data.hypothesis
    variants = [Variant.model_validate(v) for v in experiment.variants]
    if data.variants is not None:
        variants = data.variants
    if data.weights is not None:
        unknown = sorted(set(data.weights) - {v.key for v in variants})
        if unknown:
            raise InvalidRequest(
                f"weights name unknown variants {unknown}; variants are "
                f"{[v.key for v in variants]}",
                param="weights",
            )
        variants = [
            v.model_copy(update={"weight": data.weights.get(v.key, v.weight)}) for v in variants
        ]
    experiment.variants = [v.model_dump(mode="json") for v in variants]
    if "targeting" in changes:
        experiment.targeting = data.targeting
    if "namespace" in changes:
        experiment.namespace = dump(data.namespace)
    if data.metrics is not None:
        experiment.metrics = data.metrics.model_dump(mode="json")
    if data.allocation is not None:
        experiment.allocation = data.allocation.model_dump(mode="json")
    experiment.updated_at = utcnow()
    db.commit()
    return experiment


def _transition(experiment: Experiment, action: str) -> None:
    if experiment.status not in _TRANSITIONS[action]:
        allowed = " or ".join(sorted(s.value for s in _TRANSITIONS[action]))
        raise Conflict(
            f"Cannot {action} experiment '{experiment.key}': it is {experiment.status} "
            f"(only a {allowed} experiment can be {_PAST[action]}).",
            code="invalid_transition",
        )


def _check_namespace(db: Session, experiment: Experiment) -> None:
    if not experiment.namespace:
        return
    mine = Namespace.model_validate(experiment.namespace)
    others = db.scalars(
        select(Experiment).where(
            Experiment.merchant_id == experiment.merchant_id,
            Experiment.status == Status.running,
            Experiment.id != experiment.id,
        )
    )
    for other in others:
        if other.namespace and mine.overlaps(Namespace.model_validate(other.namespace)):
            raise Conflict(
                f"Namespace '{mine.name}' range [{mine.start}, {mine.end}) overlaps running "
                f"experiment '{other.key}'; give this experiment a disjoint range or stop "
                f"'{other.key}' first.",
                code="namespace_conflict",
                param="namespace",
            )


def start(*, db: Session, experiment: Experiment) -> Experiment:
    _transition(experiment, "start")
    _check_namespace(db, experiment)
    experiment.status = Status.running
    experiment.started_at = experiment.started_at or utcnow()
    experiment.stopped_at = None
    experiment.updated_at = utcnow()
    db.commit()
    return experiment


def stop(*, db: Session, experiment: Experiment) -> Experiment:
    _transition(experiment, "stop")
    experiment.status = Status.stopped
    experiment.stopped_at = utcnow()
    experiment.updated_at = utcnow()
    db.commit()
    return experiment


def ship(*, db: Session, experiment: Experiment, variant: str) -> Experiment:
    """Stop the experiment and make ``variant``'s form the merchant's default."""
    _transition(experiment, "ship")
    variants = [Variant.model_validate(v) for v in experiment.variants]
    winner = variant_by_key(variants, variant)
    if winner is None:
        raise InvalidRequest(
            f"No variant '{variant}' in experiment '{experiment.key}'; "
            f"variants are {[v.key for v in variants]}.",
            param="variant",
        )
    merchant = merchants.get(db=db, merchant_id=experiment.merchant_id)
    config = merchants.config_of(merchant)
    form = winner.config
    changes: dict[str, object] = {}
    if form.layout is not None:
        changes["layout"] = form.layout
    if form.theme is not None:
        changes["theme"] = form.theme
    if form.copy_overrides:
        changes["copy_overrides"] = config.copy_overrides.model_dump() | form.copy_overrides
    if form.loyalty_placement is not None:
        changes["loyalty_placement"] = form.loyalty_placement
    if form.ordering_policy is not None and form.ordering_policy != config.ordering_policy:
        changes["ordering_policy"] = form.ordering_policy
        changes["ordering_params"] = {}
    new_config = type(config).model_validate(config.model_dump() | changes)
    merchant.config = new_config.model_dump(mode="json")
    now = utcnow()
    experiment.status = Status.shipped
    experiment.shipped_variant = winner.key
    experiment.stopped_at = experiment.stopped_at or now
    experiment.updated_at = now
    db.commit()
    return experiment
