from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from checkoutlab.deps import SecretMerchant, SessionDep
from checkoutlab.fraud import outcomes
from checkoutlab.fraud.outcomes import OutcomeCreate, OutcomeRead

router = APIRouter(tags=["fraud labels"])


@router.post("/v1/outcomes", status_code=201, response_model=OutcomeRead)
def create_outcome(body: OutcomeCreate, merchant: SecretMerchant, db: SessionDep) -> JSONResponse:
    """Report a fraud report, dispute or refund for a payment (secret key).

    201 when stored, 200 with the stored outcome when the same label was already reported.
    """
    outcome, created = outcomes.record(db=db, merchant_id=merchant.id, data=body)
    return JSONResponse(outcome.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("/v1/outcomes", response_model=list[OutcomeRead])
def list_outcomes(
    merchant: SecretMerchant, db: SessionDep, payment_id: str = Query(max_length=40)
) -> list[OutcomeRead]:
    return outcomes.list_for_payment(db=db, merchant_id=merchant.id, payment_id=payment_id)
