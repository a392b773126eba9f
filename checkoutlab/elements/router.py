"""``POST /v1/elements``: render the form a signed profile calls for and log the exposure."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from checkoutlab.deps import PublicMerchant, SessionDep, SettingsDep
from checkoutlab.elements.render import RenderedElements, render_elements
from checkoutlab.errors import NotFound
from checkoutlab.events.service import insert_server_event, server_event_row
from checkoutlab.profile.models import Decision
from checkoutlab.profile.schema import PaymentProfile
from checkoutlab.profile.signing import verify

router = APIRouter(tags=["elements"])


class ElementsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=8192)


# The columns rendering needs: not the decision's context and features, the larger part.
_DECISION = select(
    Decision.id,
    Decision.session_id,
    Decision.profile,
    Decision.experiment_key,
    Decision.variant,
    Decision.assignment_probability,
)


@router.post("/v1/elements", response_model=RenderedElements)
def create_elements(
    body: ElementsRequest, merchant: PublicMerchant, db: SessionDep, settings: SettingsDep
) -> Response:
    """Render the form for a profile; the profile is re-read from the decision log, not the body."""
    claims = verify(body.token, secret=settings.secret_key, merchant_id=merchant.id)
    decision = (
        db.connection()
        .execute(
            _DECISION.where(Decision.id == claims.decision_id, Decision.merchant_id == merchant.id)
        )
        .first()
    )
    if decision is None:
        raise NotFound("No such payment profile", param="token")
    profile = PaymentProfile.model_validate({**decision.profile, "token": body.token})
    rendered = render_elements(profile)
    properties: dict[str, Any] = {"layout": profile.ui.layout.value, "locale": profile.ui.locale}
    if decision.experiment_key is not None:
        # the exposure: analysis and off-policy readers need the probability the unit had
        properties["experiment"] = {
            "key": decision.experiment_key,
            "variant": decision.variant,
            "probability": decision.assignment_probability,
        }
    insert_server_event(
        db=db,
        row=server_event_row(
            merchant_id=merchant.id,
            type="elements_rendered",
            session_id=decision.session_id,
            decision_id=decision.id,
            properties=properties,
        ),
    )
    db.commit()
    # serialized here as FastAPI would for response_model, without validating it again
    return Response(rendered.model_dump_json(by_alias=True), media_type="application/json")
