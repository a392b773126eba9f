from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from checkoutlab.deps import PublicMerchant, SessionDep, SettingsDep
from checkoutlab.observability.metrics import observe_profile
from checkoutlab.payments import sessions
from checkoutlab.profile import builder
from checkoutlab.profile.context import ContextIn
from checkoutlab.profile.schema import PaymentProfile

router = APIRouter(tags=["payment profile"])
log = logging.getLogger(__name__)


class ProfileRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_secret: str = Field(max_length=200)
    context: ContextIn = Field(default_factory=ContextIn)


@router.post("/v1/payment_profile", response_model=PaymentProfile)
def create_payment_profile(
    body: ProfileRequest,
    request: Request,
    merchant: PublicMerchant,
    db: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Build the payment profile for a checkout session (publishable key, from the browser)."""
    checkout = sessions.by_client_secret(
        db=db, merchant_id=merchant.id, client_secret=body.client_secret
    )
    profile = builder.build(
        db=db,
        merchant=merchant,
        checkout=checkout,
        context_in=body.context,
        headers={k.lower(): v for k, v in request.headers.items()},
        secret=settings.secret_key,
        services=request.app.state.profile_services,
    )
    experiment = profile.experiment
    # links this request's id to the decision id the learner and the payment logs name
    log.info(
        "profile %s served for session %s (risk %s)",
        profile.id,
        checkout.id,
        profile.risk.level,
        extra={"decision_id": profile.id, "session_id": checkout.id},
    )
    observe_profile(
        risk_level=profile.risk.level,
        experiment=experiment.key if experiment else None,
        variant=experiment.variant if experiment else None,
        degraded=profile.risk.degraded,
    )
    # The builder made a valid PaymentProfile: serialize it here, in this worker thread, the
    # way FastAPI would for ``response_model`` (the schema it documents), instead of having
    # FastAPI validate it again and serialize it in another trip through the thread pool.
    return Response(profile.model_dump_json(by_alias=True), media_type="application/json")


@router.get("/v1/schemas/payment_profile.json")
def payment_profile_schema() -> dict[str, Any]:
    """JSON Schema of the PaymentProfile contract."""
    schema = PaymentProfile.model_json_schema()
    schema["$id"] = "/v1/schemas/payment_profile.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
