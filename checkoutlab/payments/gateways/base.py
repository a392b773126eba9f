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
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from checkoutlab.payments.cards import CardInput

__all__ = [
    "ActionOutcome",
    "ChargeRequest",
    "ChargeStatus",
    "Gateway",
    "GatewayResult",
    "RefundResult",
    "RefundStatus",
    "TokenizedCard",
    "WebhookEvent",
    "WebhookEventType",
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
    outcome_unknown: bool = Field(
        default=False,
        description="no definitive answer although the gateway may have acted (timeout, "
        "HTTP 500, unreadable or interrupted answer): reconcile with retrieve() before "
        "trying another gateway, or the shopper could be charged twice",
    )

    @model_validator(mode="after")
    def _action_matches_status(self) -> GatewayResult:
        # Confirm relies on this pairing to decide whether to hand the shopper a challenge.
        if (self.status == "requires_action") != (self.next_action is not None):
            raise ValueError("next_action is set exactly when status is 'requires_action'")
        return self


RefundStatus = Literal["succeeded", "pending", "failed"]
"""``pending``: accepted by the gateway, settled later (Adyen always; its webhook tells)."""


class RefundResult(_Frozen):
    """A gateway's answer to a refund request; transport failures are results too."""

    status: RefundStatus
    reference: str | None = Field(default=None, description="the gateway's refund id")
    payment_reference: str = Field(description="the refunded payment's gateway reference")
    amount: int = Field(ge=0, description="minor units")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    failure_code: str | None = None
    message: str | None = None
    retryable: bool = False


WebhookEventType = Literal[
    "payment_succeeded",
    "payment_failed",
    "refund_succeeded",
    "refund_failed",
    "dispute_created",
    "other",
]


class WebhookEvent(_Frozen):
    """A provider notification, verified and translated into the platform's vocabulary."""

    id: str = Field(description="stable per provider event: handle each id once")
    gateway: str
    type: WebhookEventType
    provider_type: str = Field(description='e.g. "payment_intent.succeeded", "AUTHORISATION"')
    reference: str | None = Field(default=None, description="the payment's gateway reference")
    merchant_reference: str | None = Field(
        default=None,
        description="the ChargeRequest.idempotency_key (payment id) when the provider echoes it",
    )
    amount: int | None = None
    currency: str | None = None
    reason: str | None = Field(
        default=None,
        description="decline code (payment_failed), failure reason (refund_failed), "
        "dispute reason (dispute_created)",
    )
    livemode: bool = False
    data: dict[str, Any] = Field(default_factory=dict, description="the provider's object")


class Gateway(abc.ABC):
    """A payment gateway adapter.

    Implementations set :attr:`name` (the key used by
    :func:`checkoutlab.payments.gateways.get_gateway` and stored on each payment) and must be
    safe to share between requests: API workers are stateless, so any per-payment state
    lives at the gateway, addressed by ``reference`` and the idempotency key.
    """

    name: str
    server_side_methods: bool = False
    """Takes raw card details (``tokenize_card``) and non-card methods without a browser
    token; only the sandbox does: provider adapters need their browser SDK's token."""
    encrypted_card_fields: bool = False
    """Takes card fields encrypted in the browser by the provider's SDK (Adyen Web's
    client-side encryption) as the payment method; only Adyen does."""

    def accepts_token(self, token: str) -> bool:
        """Whether ``token`` (a browser SDK's payment method id) can be charged here.

        Routing drops gateways that cannot use the shopper's token instead of failing over
        to them, since a token belongs to the gateway (account) whose SDK created it.
        """
        return False

    def with_timeout(self, seconds: float) -> Gateway:
        """This gateway with every network call bounded by ``seconds`` (confirm's budget).

        Provider adapters keep their configuration in ``self.settings``, a pydantic model
        with a ``timeout`` field that is their constructor's one argument; they get a copy
        whose connect and read timeouts fit the remaining budget (never above their own).
        Adapters without network calls (no ``settings.timeout``) return themselves.
        """
        settings = getattr(self, "settings", None)
        current = getattr(settings, "timeout", None)
        if not isinstance(settings, BaseModel) or not isinstance(current, int | float):
            return self
        timeout = max(0.05, min(float(current), seconds))
        if timeout == current:
            return self
        return type(self)(settings.model_copy(update={"timeout": timeout}))  # type: ignore[call-arg]

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

    # Optional capabilities. The defaults keep adapters that predate them working; the
    # provider adapters (Stripe, Adyen) override them.

    def submit_action_details(
        self, *, reference: str, request: ChargeRequest, details: Mapping[str, Any]
    ) -> GatewayResult:
        """Finish a next action with the data the provider's client SDK returned.

        Some providers authorise only once the server forwards what the shopper's browser
        produced (Adyen: the ``details`` of ``onAdditionalDetails`` or the redirect's
        ``redirectResult``); the answer may be another action (a challenge after a
        fingerprint). Gateways whose provider keeps the action's result itself complete
        with :meth:`complete_action` instead.
        """
        raise NotImplementedError(
            f"The {self.name} gateway does not take action details; "
            "finish the action with complete_action(outcome=...)."
        )

    def retrieve(self, *, request: ChargeRequest, reference: str | None = None) -> GatewayResult:
        """Reconcile an attempt whose outcome is unknown (timeout, 5xx, unreadable answer).

        Answers what the gateway holds for this attempt, so failover never tries a second
        gateway while the first may have charged. The default re-sends ``charge(request)``:
        the contract above makes ``charge`` idempotent per ``idempotency_key``, so the
        gateway answers with the stored outcome, or performs the attempt once if the first
        request never arrived. Adapters may look the payment up by ``reference`` instead.
        The answer can itself be a transport failure: the outcome is then still unknown.
        """
        return self.charge(request)

    def refund(
        self, *, reference: str, amount: int, currency: str, idempotency_key: str
    ) -> RefundResult:
        """Refund ``amount`` (minor units) of the payment ``reference``; retry-safe by key.

        Raises :class:`~checkoutlab.errors.InvalidRequest` for refunds the gateway refuses
        as invalid (more than was captured, a payment that did not succeed).
        """
        raise NotImplementedError(f"The {self.name} gateway does not support refunds.")

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> list[WebhookEvent]:
        """Verify a provider webhook's signature on the raw body and translate its events.

        Raises :class:`~checkoutlab.errors.InvalidRequest` (code ``invalid_signature``) when
        the signature is missing, wrong or too old, and for a body that is not a webhook.
        A list, because one delivery can carry several events (Adyen's format allows it).
        """
        raise NotImplementedError(f"The {self.name} gateway does not receive webhooks.")
