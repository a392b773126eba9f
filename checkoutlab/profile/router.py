from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from checkoutlab.deps import PublicMerchant, SessionDep, SettingsDep
from checkoutlab.payments import sessions
from checkoutlab.profile import builder
from checkoutlab.profile.context import ContextIn
from checkoutlab.profile.schema import PaymentProfile

router = APIRouter(tags=["payment profile"])


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
) -> PaymentProfile:
    """Build the payment profile for a checkout session (publishable key, from the browser)."""
    checkout = sessions.by_client_secret(
        db=db, merchant_id=merchant.id, client_secret=body.client_secret
    )
    return builder.build(
        db=db,
        merchant=merchant,
        checkout=checkout,
        context_in=body.context,
        headers={k.lower(): v for k, v in request.headers.items()},
        secret=settings.secret_key,
        services=request.app.state.profile_services,
    )


@router.get("/v1/schemas/payment_profile.json")
def payment_profile_schema() -> dict[str, Any]:
    """JSON Schema of the PaymentProfile contract."""
    schema = PaymentProfile.model_json_schema()
    schema["$id"] = "/v1/schemas/payment_profile.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
