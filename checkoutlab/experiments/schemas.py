"""Experiment definitions: the pydantic family (``ExperimentCreate``, ``ExperimentUpdate``,
``ExperimentRead``) and the form configuration a variant applies.

Everything a merchant can get wrong is refused here with a message that says what to fix:
weights must be positive, variant keys unique, exactly one control, the targeting expression
must compile (its position is named), and a namespace range must lie within [0, 1).

A variant's form configuration can change the layout, the ordering policy, the theme, copy
and loyalty placement, and can *add* verification steps. It has no way to remove one: risk
comes first, so what the fraud scorer and the merchant rules require always stays required.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from checkoutlab.merchants.schemas import Layout, MerchantConfig, Theme, VerificationStep
from checkoutlab.profile.schema import COPY_SLOTS, CopyOverrides, LoyaltyPlacement

KEY_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,99}$"
_KEY_HELP = "lowercase letters, digits, '_' and '-', starting with a letter or digit"

OrderingPolicyName = MerchantConfig.model_fields["ordering_policy"].annotation


class Status(StrEnum):
    draft = "draft"
    running = "running"
    stopped = "stopped"
    shipped = "shipped"


class Metric(StrEnum):
    conversion = "conversion"
    revenue_per_session = "revenue_per_session"
    average_order_value = "average_order_value"
    fraud_rate = "fraud_rate"
    decline_rate = "decline_rate"
    time_to_pay = "time_to_pay"


PRIMARY_METRICS = frozenset({Metric.conversion})
SECONDARY_METRICS = frozenset({Metric.revenue_per_session, Metric.average_order_value})
GUARDRAIL_METRICS = frozenset({Metric.fraud_rate, Metric.decline_rate, Metric.time_to_pay})
# Metrics where lower is better (the Bayesian chance to win is computed for a decrease).
INVERSE_METRICS = GUARDRAIL_METRICS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FormConfig(_Strict):
    """What a variant changes in the generated form; unset fields keep the merchant default."""

    layout: Layout | None = None
    ordering_policy: OrderingPolicyName | None = Field(  # type: ignore[valid-type]
        default=None, description="merchant_order, context_rules or a bandit policy name"
    )
    theme: Theme | None = None
    copy_overrides: dict[str, Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=dict,
        max_length=len(COPY_SLOTS),
        description="text per form slot ("
        + ", ".join(COPY_SLOTS)
        + "), e.g. {'pay_button': 'Pay {amount} now'}",
    )
    loyalty_placement: LoyaltyPlacement | None = Field(
        default=None, description="above_methods, below_methods, summary or hidden"
    )
    verification_add: list[VerificationStep] = Field(
        default_factory=list,
        description="steps this variant adds; a variant can never remove a required step",
    )

    @field_validator("copy_overrides")
    @classmethod
    def _copy_keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(key for key in value if key not in COPY_SLOTS)
        if bad:
            raise ValueError(
                f"copy_overrides can set the form's text slots {list(COPY_SLOTS)}; unknown: {bad}"
            )
        CopyOverrides.model_validate(value)  # the slot's own length limit
        return value

    @field_validator("verification_add")
    @classmethod
    def _unique_steps(cls, value: list[VerificationStep]) -> list[VerificationStep]:
        return list(dict.fromkeys(value))


def _positive_weight(value: float) -> float:
    if not 0 < value < float("inf"):
        raise ValueError(f"weight must be a positive number, got {value}")
    return value


class Variant(_Strict):
    key: str = Field(pattern=KEY_PATTERN, description=_KEY_HELP)
    name: str | None = Field(default=None, max_length=120)
    control: bool = False
    weight: float = Field(default=1.0, description="relative share of traffic; positive")
    config: FormConfig = Field(default_factory=FormConfig)

    @field_validator("weight")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _positive_weight(value)


def _check_variants(variants: list[Variant]) -> list[Variant]:
    keys = [v.key for v in variants]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"variant keys must be unique; repeated: {duplicates}")
    controls = [v.key for v in variants if v.control]
    if len(controls) != 1:
        raise ValueError(
            f"exactly one variant must have control: true, found {len(controls)}"
            + (f" ({controls})" if controls else "")
        )
    return variants


Variants = Annotated[list[Variant], Field(min_length=2, max_length=10)]


class Namespace(_Strict):
    """Experiments whose ranges overlap in one namespace never run together: a unit hashes to
    one point of the namespace and belongs to the experiment whose range holds it."""

    name: str = Field(pattern=KEY_PATTERN, description=_KEY_HELP)
    start: float = Field(default=0.0, ge=0.0, lt=1.0)
    end: float = Field(default=1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Namespace:
        if self.end <= self.start:
            raise ValueError(f"namespace range is empty: start {self.start} >= end {self.end}")
        return self

    def overlaps(self, other: Namespace) -> bool:
        return self.name == other.name and self.start < other.end and other.start < self.end


class Guardrail(_Strict):
    metric: Literal["fraud_rate", "decline_rate", "time_to_pay"]
    max_relative_increase: float = Field(
        default=0.0,
        ge=0.0,
        description="tolerated relative increase before the guardrail fails (0.1 = +10%)",
    )


def _default_guardrails() -> list[Guardrail]:
    return [Guardrail(metric=m) for m in ("fraud_rate", "decline_rate", "time_to_pay")]


class Metrics(_Strict):
    primary: Literal["conversion"] = "conversion"
    secondary: list[Literal["revenue_per_session", "average_order_value"]] = Field(
        default_factory=lambda: ["revenue_per_session", "average_order_value"]
    )
    guardrails: list[Guardrail] = Field(default_factory=_default_guardrails)


class Allocation(_Strict):
    """``fixed``: the variants' weights. ``bandit``: Thompson sampling over the primary
    metric after an explore phase on the weights, never below ``min_share`` per variant."""

    type: Literal["fixed", "bandit"] = "fixed"
    min_share: float = Field(default=0.1, ge=0.0, le=0.5)
    explore_units: int = Field(default=1000, ge=0, description="units assigned by weight first")


def _check_targeting(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    from checkoutlab.profile.rules import compile_expression

    compile_expression(value)  # ValueError naming line and column
    return value


class ExperimentCreate(_Strict):
    key: str = Field(pattern=KEY_PATTERN, description=_KEY_HELP)
    hypothesis: str = Field(default="", max_length=2000)
    variants: Variants
    targeting: str | None = Field(
        default=None,
        max_length=2000,
        description="CEL over amount, risk, context and customer (as merchant rules); "
        "units for whom it is false or cannot be evaluated are not enrolled",
    )
    namespace: Namespace | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    allocation: Allocation = Field(default_factory=Allocation)
    seed: str | None = Field(
        default=None, max_length=64, description="hash seed; a random one if omitted"
    )

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[Variant]) -> list[Variant]:
        return _check_variants(value)

    @field_validator("targeting")
    @classmethod
    def _targeting(cls, value: str | None) -> str | None:
        return _check_targeting(value)


class ExperimentUpdate(_Strict):
    """Partial update. While running only ``hypothesis``, ``weights`` (sticky: assigned units
    keep their variant) and ``allocation`` may change; drafts may change anything."""

    hypothesis: str | None = Field(default=None, max_length=2000)
    variants: Variants | None = None
    weights: dict[str, float] | None = Field(
        default=None, description="new weight per variant key, e.g. {'control': 1, 'b': 3}"
    )
    targeting: str | None = Field(default=None, max_length=2000)
    namespace: Namespace | None = None
    metrics: Metrics | None = None
    allocation: Allocation | None = None

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[Variant] | None) -> list[Variant] | None:
        return None if value is None else _check_variants(value)

    @field_validator("targeting")
    @classmethod
    def _targeting(cls, value: str | None) -> str | None:
        return _check_targeting(value)

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        for key, weight in value.items():
            if not 0 < weight < float("inf"):
                raise ValueError(f"weight of '{key}' must be a positive number, got {weight}")
        return value


class ShipRequest(_Strict):
    variant: str = Field(description="the winning variant whose form becomes the default")


class ExperimentRead(BaseModel):
    object: Literal["experiment"] = "experiment"
    id: str
    key: str
    hypothesis: str
    status: Status
    variants: list[Variant]
    targeting: str | None
    namespace: Namespace | None
    metrics: Metrics
    allocation: Allocation
    seed: str
    shipped_variant: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None


class ExperimentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ExperimentRead]


def variant_by_key(variants: list[Variant], key: str) -> Variant | None:
    return next((v for v in variants if v.key == key), None)


def dump(model: BaseModel | None) -> Any:
    return None if model is None else model.model_dump(mode="json")
