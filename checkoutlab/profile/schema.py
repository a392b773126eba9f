"""The PaymentProfile contract (DESIGN.md), served as JSON Schema at
``/v1/schemas/payment_profile.json``.

Everything the element generator, the widget and confirm need to agree on is in here;
confirm re-reads the signed token, never the browser's copy of this object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from checkoutlab.merchants.schemas import (
    CopyOverrides,
    Layout,
    LoyaltyPlacement,
    MethodType,
    Theme,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PresentmentFX(_Model):
    """The amount shown in the shopper's currency; the charge stays in the session currency."""

    currency: str
    value: int = Field(description="minor units of the presentment currency")
    display: str
    rate: float
    rate_date: str
    source: str


class Amount(_Model):
    value: int = Field(ge=0, description="minor units, from the merchant's server")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    display: str
    presentment: PresentmentFX | None = None


class Risk(_Model):
    score: float = Field(ge=0, le=1, description="calibrated probability of fraud")
    risk_score: int = Field(ge=0, le=99)
    level: Literal["normal", "elevated", "highest"]
    model: str
    model_version: str
    degraded: bool = False
    reasons: list[str] = Field(default_factory=list)


class PaymentMethod(_Model):
    type: MethodType
    config: dict[str, Any] = Field(default_factory=dict, description="element configuration")


class Verification(_Model):
    cvv: bool = False
    avs: bool = False
    three_ds: bool = False
    biometric: bool = False

    def required(self) -> list[str]:
        return [name for name, on in self.model_dump().items() if on]


class Loyalty(_Model):
    enabled: bool = False
    program: str | None = None
    balance_points: int = 0
    balance_value: int = Field(default=0, description="minor units the balance is worth")
    balance_display: str | None = None
    can_redeem: bool = False


class InventoryLine(_Model):
    sku: str
    requested: int
    available: int | None


class Inventory(_Model):
    in_stock: bool = True
    lines: list[InventoryLine] = Field(default_factory=list)


class ExperimentAssignment(_Model):
    key: str
    variant: str
    probability: float | None = None


class Ordering(_Model):
    policy: str
    policy_version: str
    propensity: float = Field(ge=0, le=1, description="probability of the first method")


COPY_SLOTS: tuple[str, ...] = tuple(CopyOverrides.model_fields)
"""The text slots copy may replace: a closed list, so copy changes only words the templates
already place (escaped), never the form's structure."""


class UI(_Model):
    layout: Layout
    locale: Literal["en", "de", "fr", "es", "ja"]
    theme: Theme
    copy_overrides: CopyOverrides = Field(
        default_factory=CopyOverrides, description="experiment copy for the form's text slots"
    )
    loyalty_placement: LoyaltyPlacement = Field(
        default="below_methods",
        description="where the loyalty section goes; 'hidden' leaves it out of the form",
    )


class PaymentProfile(_Model):
    id: str
    token: str
    session_id: str
    amount: Amount
    risk: Risk
    methods: list[PaymentMethod]
    verification: Verification
    loyalty: Loyalty
    inventory: Inventory
    experiment: ExperimentAssignment | None = None
    ordering: Ordering
    ui: UI
    expires_at: datetime
