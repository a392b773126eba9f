"""``/v1/experiments`` (secret key): thin views over :mod:`checkoutlab.experiments.service`.

Another merchant's experiment answers 404; a publishable key answers 403.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from checkoutlab.deps import SecretMerchant, SessionDep
from checkoutlab.experiments import service
from checkoutlab.experiments.schemas import (
    ExperimentCreate,
    ExperimentList,
    ExperimentRead,
    ExperimentUpdate,
    ShipRequest,
    Status,
)

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


@router.post("", response_model=ExperimentRead, status_code=201)
def create_experiment(
    body: ExperimentCreate, merchant: SecretMerchant, db: SessionDep
) -> ExperimentRead:
    """Create a draft experiment."""
    return service.read(service.create(db=db, merchant_id=merchant.id, data=body))


@router.get("", response_model=ExperimentList)
def list_experiments(
    merchant: SecretMerchant, db: SessionDep, status: Status | None = Query(default=None)
) -> ExperimentList:
    experiments = service.list_(db=db, merchant_id=merchant.id, status=status)
    return ExperimentList(data=[service.read(e) for e in experiments])


@router.get("/{key}", response_model=ExperimentRead)
def get_experiment(key: str, merchant: SecretMerchant, db: SessionDep) -> ExperimentRead:
    return service.read(service.get(db=db, merchant_id=merchant.id, key=key))


@router.patch("/{key}", response_model=ExperimentRead)
def update_experiment(
    key: str, body: ExperimentUpdate, merchant: SecretMerchant, db: SessionDep
) -> ExperimentRead:
    """Update; a running experiment accepts hypothesis, weights (sticky) and allocation only."""
    experiment = service.get(db=db, merchant_id=merchant.id, key=key)
    return service.read(service.update(db=db, experiment=experiment, data=body))


@router.post("/{key}/start", response_model=ExperimentRead)
def start_experiment(key: str, merchant: SecretMerchant, db: SessionDep) -> ExperimentRead:
    experiment = service.get(db=db, merchant_id=merchant.id, key=key)
    return service.read(service.start(db=db, experiment=experiment))


@router.post("/{key}/stop", response_model=ExperimentRead)
def stop_experiment(key: str, merchant: SecretMerchant, db: SessionDep) -> ExperimentRead:
    experiment = service.get(db=db, merchant_id=merchant.id, key=key)
    return service.read(service.stop(db=db, experiment=experiment))


@router.post("/{key}/ship", response_model=ExperimentRead)
def ship_experiment(
    key: str, body: ShipRequest, merchant: SecretMerchant, db: SessionDep
) -> ExperimentRead:
    """Stop and make the variant's form configuration the merchant's default."""
    experiment = service.get(db=db, merchant_id=merchant.id, key=key)
    return service.read(service.ship(db=db, experiment=experiment, variant=body.variant))


@router.get("/{key}/results")
def experiment_results(
    key: str,
    merchant: SecretMerchant,
    db: SessionDep,
    sequential: bool = Query(default=False, description="always-valid intervals for peeking"),
    cuped: bool = Query(
        default=False, description="add the primary metric adjusted by pre-experiment conversion"
    ),
) -> dict[str, Any]:
    """Per-variant metrics, lifts, intervals, p-values, chance to win, SRM, guardrails and a
    daily time series (and CUPED-adjusted conversion with ``?cuped=true``)."""
    from checkoutlab.experiments.analysis import analyze_experiment

    experiment = service.get(db=db, merchant_id=merchant.id, key=key)
    result = analyze_experiment(db=db, experiment=experiment, sequential=sequential, cuped=cuped)
    return result.to_dict()
