"""Merchant configuration: the JSON a merchant saves with ``merchants config set``.

Rules are validated here (CEL compiled at save time) so a broken expression is refused
with its position instead of failing silently on a shopper's checkout.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)


class MethodType(StrEnum):
    card = "card"
    apple_pay = "apple_pay"
    google_pay = "google_pay"
    bank_transfer = "bank_transfer"
    sepa_debit = "sepa_debit"
    ideal = "ideal"
    klarna = "klarna"


class VerificationStep(StrEnum):
    cvv = "cvv"
    avs = "avs"
    three_ds = "three_ds"
    biometric = "biometric"


class Layout(StrEnum):
    tabs = "tabs"
    accordion = "accordion"
    list = "list"


ALL_METHODS: list[MethodType] = list(MethodType)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RiskThresholds(_Strict):
    """risk_score (0-99) at or above which a level applies."""

    elevated: int = Field(default=65, ge=0, le=99)
    highest: int = Field(default=75, ge=0, le=99)

    @model_validator(mode="after")
    def _ordered(self) -> RiskThresholds:
        if self.highest < self.elevated:
            raise ValueError("risk_thresholds.highest must be >= risk_thresholds.elevated")
        return self


class LoyaltyProgram(_Strict):
    enabled: bool = False
    name: str = Field(default="Rewards", max_length=60)
    points_per_unit: float = Field(default=1.0, ge=0, description="points per major currency unit")
    redemption_value: int = Field(
        default=1, ge=0, description="minor currency units one point is worth when redeemed"
    )


_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def _hex_color(value: str) -> str:
    if not _HEX_COLOR.fullmatch(value):
        raise ValueError(f"{value!r} is not a colour: use six-digit hex like '#635bff'")
    return value


# Checked by a validator (not ``pattern=``) so the error names the format, not a regex;
# the JSON Schema still carries the pattern.
HexColor = Annotated[
    str, AfterValidator(_hex_color), Field(json_schema_extra={"pattern": _HEX_COLOR.pattern})
]


class Theme(_Strict):
    """Appearance variables; rendered as CSS custom properties, never as raw CSS."""

    primary_color: HexColor = "#635bff"
    background_color: HexColor = "#ffffff"
    text_color: HexColor = "#1a1f36"
    border_radius_px: int = Field(default=6, ge=0, le=24)
    font_family: str = Field(
        default="system-ui, sans-serif", pattern=r"^[A-Za-z0-9 ,\-\"']{1,120}$"
    )


class RuleAction(_Strict):
    require: list[VerificationStep] = Field(default_factory=list)
    prioritize: MethodType | None = None
    hide: MethodType | None = None
    set_layout: Layout | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> RuleAction:
        if not (self.require or self.prioritize or self.hide or self.set_layout):
            raise ValueError("a rule's 'then' needs one of require, prioritize, hide, set_layout")
        return self


class Rule(_Strict):
    """``when`` is a CEL expression over ``amount``, ``risk``, ``context``, ``customer``."""

    when: str = Field(min_length=1, max_length=2000)
    then: RuleAction

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str) -> str:
        from checkoutlab.profile.rules import compile_expression

        compile_expression(value)  # raises ValueError with line and column
        return value


GatewayName = Literal["sandbox", "stripe", "adyen"]
"""Gateways a merchant can route to; their credentials are platform settings (config.py)."""


def _unique_gateways(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("a gateway may appear only once in a route")
    return value


GatewayRoute = Annotated[
    list[GatewayName], Field(min_length=1, max_length=5), AfterValidator(_unique_gateways)
]


class GatewayRule(_Strict):
    """Route payments matching ``when`` (CEL) to ``gateways``, tried in this order.

    ``when`` sees ``amount`` {value (minor units), currency}, ``method`` (e.g. "card"),
    ``country`` (billing address country, when sent) and ``card`` {brand} (cards entered
    in the form). The first matching rule wins; none matching: the merchant's ``gateways``.
    """

    when: str = Field(min_length=1, max_length=2000)
    gateways: GatewayRoute

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str) -> str:
        from checkoutlab.profile.rules import compile_expression

        compile_expression(value)  # raises ValueError with line and column
        return value


LoyaltyPlacement = Literal["above_methods", "below_methods", "summary", "hidden"]


class CopyOverrides(_Strict):
    """Replacement text for known slots; an unset slot keeps the translated default.

    ``pay_button`` may contain ``{amount}``, replaced by the formatted amount. A merchant's
    own copy (set directly, or by shipping an experiment's winner) and a variant's copy use
    the same slots; the variant's wins slot by slot.
    """

    heading: str | None = Field(default=None, max_length=120)
    pay_button: str | None = Field(default=None, max_length=60)
    footer_note: str | None = Field(default=None, max_length=300)


class MerchantConfig(_Strict):
    enabled_methods: list[MethodType] = Field(default_factory=lambda: list(ALL_METHODS))
    default_order: list[MethodType] | None = Field(
        default=None, description="order of payment methods; enabled_methods order if omitted"
    )
    allowed_origins: list[Annotated[str, Field(pattern=r"^https?://[^/\s]+$")]] = Field(
        default_factory=list
    )
    risk_thresholds: RiskThresholds = Field(default_factory=RiskThresholds)
    loyalty: LoyaltyProgram = Field(default_factory=LoyaltyProgram)
    theme: Theme = Field(default_factory=Theme)
    layout: Layout = Layout.tabs
    copy_overrides: CopyOverrides = Field(default_factory=CopyOverrides)
    loyalty_placement: LoyaltyPlacement = "below_methods"
    default_locale: Literal["en", "de", "fr", "es", "ja"] = "en"
    ordering_policy: Literal[
        "merchant_order",
        "context_rules",
        "thompson",
        "epsilon_greedy",
        "ucb",
        "linucb",
        "logistic_softmax",
        "random_order",
    ] = Field(
        default="context_rules",
        description="merchant_order, context_rules, or a learning bandit "
        "(checkoutlab.bandits.policies.POLICY_CLASSES)",
    )
    ordering_params: dict[str, Any] = Field(
        default_factory=dict,
        description="constructor arguments of a bandit ordering_policy, e.g. {'epsilon': 0.2}",
    )
    rules: list[Rule] = Field(default_factory=list, max_length=200)
    gateways: GatewayRoute | None = Field(
        default=None,
        description="gateways in failover order; None = the platform's (CHECKOUTLAB_GATEWAY)",
    )
    gateway_rules: list[GatewayRule] = Field(
        default_factory=list,
        max_length=50,
        description="CEL routing rules; the first that matches chooses the gateways",
    )

    @model_validator(mode="after")
    def _ordering_params_valid(self) -> MerchantConfig:
        from checkoutlab.bandits.policies import POLICY_CLASSES
        from checkoutlab.bandits.serving import policy_config_id  # validates, cached

        if self.ordering_policy not in POLICY_CLASSES:
            if self.ordering_params:
                raise ValueError(
                    f"ordering_params apply to bandit policies only; "
                    f"'{self.ordering_policy}' takes none"
                )
            return self
        try:
            policy_config_id(self.ordering_policy, self.ordering_params)
        except TypeError as exc:  # an unknown keyword: name the accepted ones
            accepted = list(POLICY_CLASSES[self.ordering_policy]().params())
            raise ValueError(
                f"ordering_params for '{self.ordering_policy}' accept {accepted}: {exc}"
            ) from None
        except ValueError as exc:
            raise ValueError(f"ordering_params for '{self.ordering_policy}': {exc}") from None
        return self

    @model_validator(mode="after")
    def _order_consistent(self) -> MerchantConfig:
        if not self.enabled_methods:
            raise ValueError("enabled_methods must name at least one payment method")
        if len(set(self.enabled_methods)) != len(self.enabled_methods):
            raise ValueError("enabled_methods contains duplicates")
        if self.default_order is not None:
            unknown = [m.value for m in self.default_order if m not in self.enabled_methods]
            if unknown:
                raise ValueError(f"default_order names methods that are not enabled: {unknown}")
            if len(set(self.default_order)) != len(self.default_order):
                raise ValueError("default_order contains duplicates")
        return self

    def ordered_methods(self) -> list[MethodType]:
        """Merchant's default order; enabled methods not listed keep their relative order last."""
        order = list(self.default_order or [])
        return order + [m for m in self.enabled_methods if m not in order]
