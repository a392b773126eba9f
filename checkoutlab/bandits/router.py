"""``GET /v1/bandits/{policy}`` (secret key): the calling merchant's bandit and its freshness."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from checkoutlab.bandits.policies import POLICY_CLASSES
from checkoutlab.bandits.serving import PolicyProvider, describe
from checkoutlab.deps import SecretMerchant, SessionDep
from checkoutlab.errors import NotFound
from checkoutlab.merchants import service as merchants

router = APIRouter(tags=["bandits"])


class Posterior(BaseModel):
    alpha: float
    beta: float
    mean: float


class ArmRead(BaseModel):
    method: str
    pulls: int = Field(description="decisions with this method first whose reward was learned")
    mean_reward: float | None = Field(description="observed mean reward; null before a pull")
    estimate: float | None = Field(
        description="the policy's value estimate (posterior mean for Thompson sampling)"
    )
    posterior: Posterior | None = Field(description="Beta posterior (Thompson sampling only)")


class ServingRead(BaseModel):
    policy: str = Field(description="what this API worker serves (merchant_order when degraded)")
    version: str
    snapshot: int
    degraded: bool
    error: str | None
    checked_at: datetime = Field(description="when this worker last confirmed the newest snapshot")
    staleness_seconds: float = Field(description="seconds since that check")
    max_staleness_seconds: float = Field(description="the refresh bound (checked every half)")
    refresh_error: str | None


class BanditRead(BaseModel):
    object: str = "bandit"
    policy: str
    configured: bool = Field(description="whether it is the merchant's ordering_policy now")
    config_id: str
    params: dict[str, Any]
    version: str = Field(description="<config_id>.<updates>")
    snapshot: int = Field(description="snapshot number of this chain; 0 before the first")
    updates: int
    updated_at: datetime | None = Field(description="when the learner wrote the snapshot")
    arms: list[ArmRead]
    error: str | None = Field(description="why the snapshot could not be restored, if not")
    serving: ServingRead | None = Field(
        description="this API worker's copy and its staleness; null when it does not serve it"
    )
    max_staleness_seconds: float | None


@router.get("/v1/bandits/{policy}", response_model=BanditRead)
def get_bandit(
    merchant: SecretMerchant,
    db: SessionDep,
    request: Request,
    policy: str = Path(max_length=40, description="thompson, epsilon_greedy, ucb, linucb, ..."),
) -> dict[str, Any]:
    """The calling merchant's bandit: arms, pulls, estimates, version, serving staleness."""
    if policy not in POLICY_CLASSES:
        raise NotFound(
            f"No such bandit policy: '{policy}'. Bandits: {', '.join(sorted(POLICY_CLASSES))}.",
            param="policy",
        )
    provider: PolicyProvider | None = getattr(request.app.state, "bandit_provider", None)
    found = describe(
        db=db,
        merchant_id=merchant.id,
        config=merchants.config_of(merchant),
        policy=policy,
        provider=provider,
    )
    if found is None:
        raise NotFound(
            f"This merchant has no '{policy}' bandit: set ordering_policy to '{policy}' in the "
            "merchant configuration to start one.",
            param="policy",
        )
    return found
