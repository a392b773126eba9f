"""Request and response models of the payments routes (the trusted, server-side inputs)."""

from __future__ import annotations

import json
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
    unit_amount: int | None = Field(default=None, ge=0, le=99_999_999, strict=True)


class CheckoutSessionCreate(_In):
    amount: int = Field(
        gt=0, le=99_999_999, strict=True, description="minor units, e.g. 1999 for 19.99 EUR"
    )
    currency: str = Field(min_length=3, max_length=3)
    line_items: list[LineItem] = Field(default_factory=list, max_length=100)
    customer: str | None = Field(default=None, max_length=200, description="your customer id")
    loyalty_balance: int = Field(
        default=0,
        ge=0,
        le=2_147_483_647,  # the column is a 32-bit integer on PostgreSQL
        strict=True,
        description="loyalty points the customer holds",
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


ENCRYPTED_FIELD_MAX = 5000
"""Adyen Web's encrypted values are a few kB at most; a cap keeps bodies bounded."""


def _encrypted(alias: str) -> Any:
    return Field(alias=alias, min_length=1, max_length=ENCRYPTED_FIELD_MAX)


class AdyenEncryptedCard(_In):
    """The card fields Adyen Web encrypts in the browser (client-side encryption).

    Opaque to the platform: it never decrypts them, only forwards them to Adyen. They are
    ``SecretStr`` so that they never appear in logs, error answers or reprs, and they are
    never stored (the payment keeps a marker instead of the payment method).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)

    encrypted_card_number: SecretStr = _encrypted("encryptedCardNumber")
    encrypted_expiry_month: SecretStr = _encrypted("encryptedExpiryMonth")
    encrypted_expiry_year: SecretStr = _encrypted("encryptedExpiryYear")
    encrypted_security_code: SecretStr | None = Field(
        default=None, alias="encryptedSecurityCode", min_length=1, max_length=ENCRYPTED_FIELD_MAX
    )
    holder_name: str | None = Field(default=None, alias="holderName", max_length=100)

    def state_data(self) -> dict[str, str]:
        """Adyen's ``paymentMethod`` object (``type: scheme``) with the encrypted values."""
        method = {
            "type": "scheme",
            "encryptedCardNumber": self.encrypted_card_number.get_secret_value(),
            "encryptedExpiryMonth": self.encrypted_expiry_month.get_secret_value(),
            "encryptedExpiryYear": self.encrypted_expiry_year.get_secret_value(),
        }
        if self.encrypted_security_code is not None:
            method["encryptedSecurityCode"] = self.encrypted_security_code.get_secret_value()
        if self.holder_name:
            method["holderName"] = self.holder_name
        return method


class PaymentMethodIn(_In):
    """Raw ``card`` details (sandbox: tokenized on arrival), a gateway ``token``, or
    Adyen Web's encrypted card fields (``adyen``): exactly one of them for a card.

    The widget's Stripe.js mode sends ``{"type": "card", "token": "pm_..."}`` and its Adyen
    mode ``{"type": "card", "adyen": {"encryptedCardNumber": ...}}``, so that the card number
    never reaches the platform in the clear; sending two is ambiguous and refused.
    """

    type: MethodType
    card: CardDetails | None = None
    token: str | None = Field(
        default=None,
        pattern=PAYMENT_METHOD_ID_PATTERN,
        description="a payment method id from the gateway's browser SDK, e.g. pm_1Q0PsI...",
    )
    adyen: AdyenEncryptedCard | None = Field(
        default=None, description="Adyen Web's encrypted card fields (state.data.paymentMethod)"
    )

    @model_validator(mode="after")
    def _card_or_token(self) -> PaymentMethodIn:
        given = [name for name in ("card", "token", "adyen") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"send one of card, token or adyen, not {' and '.join(given)}")
        if given and given[0] in ("card", "adyen") and self.type is not MethodType.card:
            raise ValueError(f"{given[0]} details are for card payments, not {self.type.value}")
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


ACTION_DETAILS_MAX = 16_384
"""Bytes of Adyen Web's action details (a threeDSResult or redirectResult) accepted."""


class ChallengeRequest(_In):
    client_secret: str = Field(max_length=200)
    outcome: Literal["succeeded", "failed"] | None = Field(
        default=None,
        description="how the challenge ended as the widget saw it (sandbox, Stripe); "
        "required unless details are sent",
    )
    details: dict[str, Any] | None = Field(
        default=None,
        description="Adyen: the state.data of Adyen Web's onAdditionalDetails "
        '({"details": {"threeDSResult": ...}}), forwarded to /payments/details',
    )

    @model_validator(mode="after")
    def _outcome_or_details(self) -> ChallengeRequest:
        if self.outcome is None and self.details is None:
            raise ValueError("send outcome, or details (Adyen Web's onAdditionalDetails)")
        if self.details is not None:
            inner = self.details.get("details", self.details)
            if not isinstance(inner, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in inner.items()
            ):
                raise ValueError("details must map names to strings, as Adyen Web returns them")
            if len(json.dumps(self.details)) > ACTION_DETAILS_MAX:
                raise ValueError(f"details are larger than {ACTION_DETAILS_MAX} bytes")
        return self
