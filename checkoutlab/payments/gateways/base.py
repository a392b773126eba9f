"""The contract every payment gateway adapter implements (sandbox now; Stripe, Adyen later).

Confirm, routing and failover are written against :class:`Gateway` only, so adding a
gateway never touches them. Three rules make that work:

- **Declines are results, not exceptions.** ``charge`` and ``complete_action`` return a
  :class:`GatewayResult` for every answer the gateway gives, including declines and
  transport failures (``status="failed"``, ``retryable=True``), because failover needs to
  inspect the answer and decide. Adapters raise only for caller mistakes
  (:class:`~checkoutlab.errors.InvalidRequest`) and, in ``tokenize_card``, for card details
  that fail :func:`~checkoutlab.payments.cards.validate_card`
  (:class:`~checkoutlab.errors.CardError`).
- **The full card number stops at ``tokenize_card``.** Everything downstream sees a
  :class:`TokenizedCard` (gateway token, brand, last four), which is safe to store.
- **Retries are safe.** ``ChargeRequest.idempotency_key`` is passed to the gateway's own
  idempotency mechanism, so a retried confirm never charges twice.
"""

from __future__ import annotations

import abc
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from checkoutlab.payments.cards import CardInput

__all__ = [
    "ActionOutcome",
    "ChargeRequest",
    "ChargeStatus",
    "Gateway",
    "GatewayResult",
    "TokenizedCard",
]

ChargeStatus = Literal["succeeded", "failed", "requires_action", "processing"]
"""``processing``: accepted but settled later (bank transfer, some debits); wait for a webhook."""

ActionOutcome = Literal["succeeded", "failed"]
"""How the shopper's next action (a 3-D Secure challenge) ended."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TokenizedCard(_Frozen):
    """What remains of a card after tokenization: all of it may be stored and logged."""

    payment_method: str = Field(description="the gateway's payment method id, e.g. pm_card_visa")
    brand: str
    last4: str = Field(pattern=r"^\d{4}$")
    exp_month: int = Field(ge=1, le=12)
    exp_year: int


class ChargeRequest(_Frozen):
    """One attempt to take money; the amount always comes from the session, never the browser."""

    amount: int = Field(ge=0, description="minor units of currency (cents for USD)")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, upper case")
    payment_method: str = Field(min_length=1)
    idempotency_key: str = Field(
        min_length=1,
        max_length=255,
        description=(
            "unique per payment attempt across all merchants (e.g. the payment id): gateways "
            "scope keys per gateway account, not per Checkout Lab merchant"
        ),
    )
    three_ds_required: bool = Field(
        default=False, description="the payment profile demands 3-D Secure for this payment"
    )
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("currency", mode="before")
    @classmethod
    def _upper_currency(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class GatewayResult(_Frozen):
    """A gateway's answer in one vocabulary, whatever the gateway.

    ``decline_code`` follows Stripe's decline codes (``card_declined``,
    ``insufficient_funds``, ``processing_error``, ``authentication_failed``, ...), so fraud
    labels and dashboards do not depend on which gateway took the payment. ``message`` is
    safe to show the shopper. ``retryable`` tells failover that another attempt (same or
    other gateway) may succeed: true for processing and network errors, false for issuer
    declines, where retrying only annoys the issuer.
    """

    status: ChargeStatus
    reference: str | None = Field(default=None, description="the gateway's payment id")
    decline_code: str | None = None
    message: str | None = None
    next_action: dict[str, Any] | None = Field(
        default=None,
        description='what the shopper must do next, e.g. {"type": "three_ds_challenge", ...}',
    )
    retryable: bool = False

    @model_validator(mode="after")
    def _action_matches_status(self) -> GatewayResult:
        # Confirm relies on this pairing to decide whether to hand the shopper a challenge.
        if (self.status == "requires_action") != (self.next_action is not None):
            raise ValueError("next_action is set exactly when status is 'requires_action'")
        return self


class Gateway(abc.ABC):
    """A payment gateway adapter.

    Implementations set :attr:`name` (the key used by
    :func:`checkoutlab.payments.gateways.get_gateway` and stored on each payment) and must be
    safe to share between requests: API workers are stateless, so any per-payment state
    lives at the gateway, addressed by ``reference`` and the idempotency key.
    """

    name: str

    @abc.abstractmethod
    def tokenize_card(self, card: CardInput) -> TokenizedCard:
        """Exchange raw card details for a gateway token; the full number goes no further.

        Raises :class:`~checkoutlab.errors.CardError` when the card fails validation.
        """

    @abc.abstractmethod
    def charge(self, request: ChargeRequest) -> GatewayResult:
        """Attempt the payment. Returns declines and transport failures as results."""

    @abc.abstractmethod
    def complete_action(
        self, *, reference: str, request: ChargeRequest, outcome: ActionOutcome
    ) -> GatewayResult:
        """Finish a payment that answered ``requires_action`` once the shopper has acted.

        ``request`` is the original charge request (same idempotency key), so adapters can
        stay stateless. ``outcome`` is how the challenge ended, as reported by the widget or
        the gateway's redirect.
        """
