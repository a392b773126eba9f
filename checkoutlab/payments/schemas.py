"""Request and response models of the payments routes (the trusted, server-side inputs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from babel.numbers import list_currencies
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from checkoutlab.merchants.schemas import MethodType

_ISO_4217 = frozenset(list_currencies())
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$"
# Counts and money below are strict JSON integers: lax mode would read ``true`` as 1 and
# "25" as 25, so a merchant's type bug would silently create a 0.01 EUR session, not a 400.


def iso_currency(value: str) -> str:
    code = value.strip().upper()
    if code not in _ISO_4217:
        raise ValueError(f"'{value}' is not an ISO 4217 currency code (e.g. EUR, USD, JPY)")
    return code


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LineItem(_In):
    sku: str = Field(pattern=SKU_PATTERN)
    quantity: int = Field(ge=1, le=10_000, strict=True)
    name: str | None = Field(default=None, max_length=200)
    unit_amount: int | None = Field(default=None, ge=0, strict=True)


class CheckoutSessionCreate(_In):
    amount: int = Field(
        gt=0, le=99_999_999, strict=True, description="minor units, e.g. 1999 for 19.99 EUR"
    )
    currency: str = Field(min_length=3, max_length=3)
    line_items: list[LineItem] = Field(default_factory=list, max_length=100)
    customer: str | None = Field(default=None, max_length=200, description="your customer id")
    loyalty_balance: int = Field(
        default=0, ge=0, strict=True, description="loyalty points the customer holds"
    )
    expires_in: int | None = Field(
        default=None, ge=60, le=24 * 3600, strict=True, description="seconds"
    )
    metadata: dict[str, str] = Field(default_factory=dict, max_length=20)

    @field_validator("currency")
    @classmethod
    def _iso(cls, value: str) -> str:
        return iso_currency(value)


class PaymentRead(BaseModel):
    id: str
    object: Literal["payment"] = "payment"
    status: str
    amount: int
    currency: str
    method_type: str
    card: dict[str, str | None] | None = None
    gateway: str
    decline_code: str | None = None
    message: str | None = None
    next_action: dict[str, Any] | None = None
    created_at: datetime


class CheckoutSessionRead(BaseModel):
    id: str
    object: Literal["checkout_session"] = "checkout_session"
    client_secret: str | None = None
    status: str
    amount: int
    currency: str
    line_items: list[LineItem]
    customer: str | None
    loyalty_balance: int
    metadata: dict[str, str]
    created_at: datetime
    expires_at: datetime
    payments: list[PaymentRead] = Field(default_factory=list)


class InventoryLevel(_In):
    sku: str = Field(pattern=SKU_PATTERN)
    quantity: int = Field(ge=0, le=10_000_000, strict=True)


class InventoryUpdate(_In):
    items: list[InventoryLevel] = Field(min_length=1, max_length=1000)


class InventoryRead(BaseModel):
    object: Literal["inventory"] = "inventory"
    items: list[InventoryLevel]


class CardDetails(_In):
    number: SecretStr
    exp_month: int
    exp_year: int
    cvc: SecretStr


PAYMENT_METHOD_ID_PATTERN = r"^pm_[A-Za-z0-9_]{1,250}$"
"""A gateway PaymentMethod id, as Stripe.js ``createPaymentMethod`` returns it."""


class PaymentMethodIn(_In):
    """Either raw ``card`` details (sandbox: tokenized on arrival) or a gateway ``token``.

    The widget's Stripe.js mode sends ``{"type": "card", "token": "pm_..."}`` so that the
    card number never reaches the platform; sending both is ambiguous and refused.
    """

    type: MethodType
    card: CardDetails | None = None
    token: str | None = Field(
        default=None,
        pattern=PAYMENT_METHOD_ID_PATTERN,
        description="a payment method id from the gateway's browser SDK, e.g. pm_1Q0PsI...",
    )

    @model_validator(mode="after")
    def _card_or_token(self) -> PaymentMethodIn:
        if self.card is not None and self.token is not None:
            raise ValueError("send either card or token, not both")
        if self.card is not None and self.type is not MethodType.card:
            raise ValueError(f"card details are for card payments, not {self.type.value}")
        return self


class BillingAddress(_In):
    line1: str = Field(min_length=1, max_length=200)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Za-z]{2}$")


class VerificationIn(_In):
    cvv: SecretStr | None = None
    billing_address: BillingAddress | None = None
    biometric_assertion: str | None = Field(default=None, max_length=4096)


class ConfirmRequest(_In):
    client_secret: str = Field(max_length=200)
    profile_token: str = Field(max_length=8192)
    payment_method: PaymentMethodIn
    verification: VerificationIn = Field(default_factory=VerificationIn)
    redeem_points: bool = False


class ChallengeRequest(_In):
    client_secret: str = Field(max_length=200)
    outcome: Literal["succeeded", "failed"] = Field(
        description="sandbox only: the result of the simulated 3-D Secure challenge"
    )
