"""Stripe adapter: PaymentIntents through the official SDK's ``StripeClient``.

**Card data (PCI DSS SAQ-A).** In Stripe mode the card number never reaches the platform:
the widget collects it with Stripe.js Elements and the server receives a PaymentMethod id
(``pm_...``). :meth:`StripeGateway.tokenize_card` therefore refuses raw card details.

**One attempt.** :meth:`~StripeGateway.charge` creates and confirms a PaymentIntent in one
call (``confirm=true``) with the attempt's idempotency key, card payment methods only and
``confirmation_method=manual``: when 3-D Secure is needed the intent answers
``requires_action``; the widget runs Stripe.js ``handleNextAction`` with the intent's
``client_secret`` (or follows ``redirect_url`` when a ``return_url`` is configured) and then
:meth:`~StripeGateway.complete_action` retrieves the intent and confirms it from the server,
so the platform, not the browser, decides when money moves.

**Errors.** A ``CardError`` is a decline with Stripe's ``decline_code`` (``generic_decline``
is reported as the platform's ``card_declined``); only ``processing_error``,
``issuer_not_available`` and ``try_again_later`` are retryable. Transport problems are
retryable failures whose outcome at Stripe is unknown:

- ``gateway_timeout``: no answer within ``timeout`` (Stripe may have acted);
- ``gateway_unavailable``: connection failure, 5xx, 409 (same key still in progress), 429,
  or rejected credentials;
- ``gateway_invalid_response``: an answer that is not a readable API object.

**Reconciliation.** Stripe cannot look a PaymentIntent up by idempotency key, and search is
eventually consistent (documented as unsuitable right after a write), so
:meth:`~StripeGateway.retrieve` re-sends the identical create request with the same
``Idempotency-Key``: Stripe answers with the stored result of the first request (headers
``Idempotent-Replayed: true``), or, if the first never arrived, performs it once now. With a
known reference it reads ``GET /v1/payment_intents/{id}`` instead. Each intent also carries
the key in ``metadata[idempotency_key]`` for the dashboard and webhooks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any, Final

import requests
import stripe
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from checkoutlab.errors import InvalidRequest, NotFound
from checkoutlab.payments.cards import CardInput
from checkoutlab.payments.gateways._transport import never_sent, outcome_unknown_status
from checkoutlab.payments.gateways.base import (
    ActionOutcome,
    ChargeRequest,
    Gateway,
    GatewayResult,
    RefundResult,
    TokenizedCard,
    WebhookEvent,
)

__all__ = ["StripeGateway", "StripeSettings"]

log = logging.getLogger(__name__)

GATEWAY_TIMEOUT: Final = "gateway_timeout"
GATEWAY_UNAVAILABLE: Final = "gateway_unavailable"
GATEWAY_INVALID_RESPONSE: Final = "gateway_invalid_response"

KEY_METADATA: Final = "idempotency_key"

_RETRYABLE_DECLINES: Final = frozenset(
    {"processing_error", "issuer_not_available", "try_again_later"}
)
# Stripe codes → the platform's names for the same thing.
_RENAMED: Final = {
    "generic_decline": "card_declined",
    "payment_intent_authentication_failure": "authentication_failed",
}
_TRANSPORT_MESSAGES: Final = {
    GATEWAY_TIMEOUT: "The payment provider did not answer in time. Try again in a moment.",
    GATEWAY_UNAVAILABLE: "The payment provider is unavailable. Try again in a moment.",
    GATEWAY_INVALID_RESPONSE: "The payment provider sent an unreadable answer. Try again.",
}
_DEFAULT_DECLINE: Final = "Your card was declined. Try another card or payment method."
_AUTH_FAILED: Final = (
    "We couldn't verify this payment with your bank. Try again or use another payment method."
)
_MAX_KEY: Final = 255
_REFUND_STATUS: Final = {
    "succeeded": "succeeded",
    "pending": "pending",
    "requires_action": "pending",
}


class StripeSettings(BaseModel):
    """What the Stripe adapter needs; build it from the platform's settings or by hand."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr = Field(description="secret (sk_...) or restricted (rk_...) API key")
    base_url: str | None = Field(
        default=None,
        description="API base URL override, e.g. a local test double; None = api.stripe.com",
    )
    timeout: float = Field(
        default=10.0, gt=0, le=80, description="seconds allowed to connect and for each read"
    )
    return_url: str | None = Field(
        default=None,
        description="where the issuer's 3-D Secure page sends the shopper back; when unset "
        "the widget handles the challenge in page with Stripe.js (use_stripe_sdk)",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="the endpoint's signing secret (whsec_...)"
    )
    webhook_tolerance: int = Field(
        default=300, gt=0, description="seconds a webhook signature stays valid"
    )

    @field_validator("api_key")
    @classmethod
    def _secret_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("sk_", "rk_")):
            raise ValueError(
                "api_key must be a Stripe secret key (sk_...) or restricted key (rk_...); "
                "publishable keys (pk_...) belong in the browser only"
            )
        return value


def _derived_key(key: str, step: str) -> str:
    """An idempotency key for a follow-up call of the attempt (confirm, cancel)."""
    derived = f"{key}:{step}"
    if len(derived) <= _MAX_KEY:
        return derived
    return f"{hashlib.sha256(key.encode()).hexdigest()}:{step}"


def _decline_code(error: Mapping[str, Any]) -> str:
    code = error.get("decline_code") or error.get("code") or "card_declined"
    return _RENAMED.get(code, code)


def _transport_failure(code: str, *, reference: str | None, unknown: bool = True) -> GatewayResult:
    return GatewayResult(
        status="failed",
        reference=reference,
        decline_code=code,
        message=_TRANSPORT_MESSAGES[code],
        retryable=True,
        outcome_unknown=unknown,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


class StripeGateway(Gateway):
    """Payments through Stripe's PaymentIntents API.

    Parameters
    ----------
    settings
        A :class:`StripeSettings`; or pass its fields as keyword arguments
        (``api_key=..., base_url=..., timeout=...``).

    Examples
    --------
    >>> gateway = StripeGateway(api_key="sk_test_123", timeout=5)
    >>> gateway.name, gateway.settings.timeout
    ('stripe', 5.0)
    """

    name = "stripe"

    def __init__(self, settings: StripeSettings | None = None, **options: Any) -> None:
        if settings is not None and options:
            raise TypeError("Pass either settings or keyword options, not both.")
        self.settings = settings if settings is not None else StripeSettings(**options)
        self._client = stripe.StripeClient(
            self.settings.api_key.get_secret_value(),
            base_addresses={"api": self.settings.base_url} if self.settings.base_url else None,
            # Failover decides about retries; the timeout bounds every connect and read.
            http_client=stripe.RequestsClient(timeout=self.settings.timeout),
            max_network_retries=0,
        )

    # --- Gateway ----------------------------------------------------------------------------

    def accepts_token(self, token: str) -> bool:
        """PaymentMethod ids from Stripe.js (``pm_...``)."""
        return token.startswith("pm_")

    def tokenize_card(self, card: CardInput) -> TokenizedCard:
        """Refuse: in Stripe mode card numbers never reach the server (PCI DSS SAQ-A)."""
        raise InvalidRequest(
            "Card details cannot be sent to the server in Stripe mode (PCI DSS SAQ-A): "
            "collect the card with Stripe.js Elements in the browser and send the resulting "
            "PaymentMethod id (pm_...) instead.",
            code="card_details_not_accepted",
            param="payment_method.card",
        )

    def charge(self, request: ChargeRequest) -> GatewayResult:
        """Create and confirm a PaymentIntent; declines and transport failures are results."""
        try:
            intent = self._client.v1.payment_intents.create(
                params=self._create_params(request),  # type: ignore[arg-type]
                options={"idempotency_key": request.idempotency_key},
            )
        except stripe.StripeError as exc:
            return self._from_error(exc, reference=None)
        return self._from_intent(intent)

    def complete_action(
        self, *, reference: str, request: ChargeRequest, outcome: ActionOutcome
    ) -> GatewayResult:
        """Read the intent after the shopper's challenge and confirm it from the server.

        Stripe holds the challenge's result, so ``outcome`` (the widget's report) only
        matters while the intent still waits for the shopper: ``"failed"`` then cancels the
        intent, so a challenge finished later in a stale tab cannot charge, and
        ``"succeeded"`` answers ``requires_action`` again.

        Raises :class:`~checkoutlab.errors.NotFound` when ``reference`` is not an intent
        created for this request's idempotency key.
        """
        if outcome not in ("succeeded", "failed"):
            raise InvalidRequest(
                f"Unknown action outcome {outcome!r}. Use 'succeeded' or 'failed'.",
                code="invalid_outcome",
                param="outcome",
            )
        intents = self._client.v1.payment_intents
        try:
            intent = self._as_dict(intents.retrieve(reference))
        except stripe.StripeError as exc:
            return self._from_error(exc, reference=reference)
        if intent is None:
            return _transport_failure(GATEWAY_INVALID_RESPONSE, reference=reference)
        if (intent.get("metadata") or {}).get(KEY_METADATA) != request.idempotency_key:
            raise NotFound(
                "No payment with this reference was created for this charge request. "
                "Pass the reference returned by charge() and the same request.",
                param="reference",
            )
        key = request.idempotency_key
        try:
            if intent.get("status") == "requires_confirmation":
                return self._from_intent(
                    intents.confirm(
                        reference, options={"idempotency_key": _derived_key(key, "confirm")}
                    )
                )
            if intent.get("status") == "requires_action" and outcome == "failed":
                intents.cancel(
                    reference,
                    params={"cancellation_reason": "abandoned"},
                    options={"idempotency_key": _derived_key(key, "cancel")},
                )
                return GatewayResult(
                    status="failed",
                    reference=reference,
                    decline_code="authentication_failed",
                    message=_AUTH_FAILED,
                )
        except stripe.StripeError as exc:
            return self._from_error(exc, reference=reference)
        return self._result(intent)

    def submit_action_details(
        self, *, reference: str, request: ChargeRequest, details: Mapping[str, Any]
    ) -> GatewayResult:
        """Stripe keeps the challenge's result itself: same as a ``"succeeded"`` report."""
        return self.complete_action(reference=reference, request=request, outcome="succeeded")

    def retrieve(self, *, request: ChargeRequest, reference: str | None = None) -> GatewayResult:
        """The intent by id when known, else the idempotent replay of the create request."""
        if reference is None:
            return self.charge(request)
        try:
            intent = self._client.v1.payment_intents.retrieve(reference)
        except stripe.StripeError as exc:
            return self._from_error(exc, reference=reference)
        return self._from_intent(intent)

    def refund(
        self, *, reference: str, amount: int, currency: str, idempotency_key: str
    ) -> RefundResult:
        """Refund through ``POST /v1/refunds`` on the PaymentIntent."""
        currency = currency.upper()
        try:
            refund = self._client.v1.refunds.create(
                params={"payment_intent": reference, "amount": amount},
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as exc:
            raise InvalidRequest(
                f"Stripe refused the refund: {exc.user_message}",
                code=exc.code or "refund_refused",
                param="amount" if exc.param == "amount" else None,
            ) from exc
        except stripe.StripeError as exc:
            code = self._transport_code(exc)
            return RefundResult(
                status="failed",
                payment_reference=reference,
                amount=amount,
                currency=currency,
                failure_code=code,
                message=_TRANSPORT_MESSAGES[code],
                retryable=True,
            )
        data = self._as_dict(refund) or {}
        status = _REFUND_STATUS.get(str(data.get("status")), "failed")
        return RefundResult(
            status=status,  # type: ignore[arg-type]
            reference=data.get("id"),
            payment_reference=reference,
            amount=int(data.get("amount", amount)),
            currency=str(data.get("currency", currency)).upper(),
            failure_code=data.get("failure_reason") if status == "failed" else None,
        )

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> list[WebhookEvent]:
        """Verify ``Stripe-Signature`` on the raw body (with tolerance) and map the event."""
        secret = self.settings.webhook_secret
        if secret is None:
            raise InvalidRequest(
                "Stripe webhooks are not configured: set the endpoint's signing secret "
                "(webhook_secret, whsec_...).",
                code="webhooks_not_configured",
            )
        try:
            event = self._client.construct_event(
                payload,
                _header(headers, "Stripe-Signature"),
                secret.get_secret_value(),
                tolerance=self.settings.webhook_tolerance,
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidRequest(
                "The Stripe-Signature header does not match this payload, or it is too old.",
                code="invalid_signature",
            ) from exc
        except ValueError as exc:
            raise InvalidRequest("The webhook body is not JSON.", code="invalid_payload") from exc
        return [self._webhook_event(event.to_dict())]

    # --- internals --------------------------------------------------------------------------

    def _create_params(self, request: ChargeRequest) -> dict[str, Any]:
        # Deterministic in the request: an idempotent replay must send identical parameters.
        params: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method": request.payment_method,
            "payment_method_types": ["card"],
            "confirm": True,
            "confirmation_method": "manual",
            "metadata": {**request.metadata, KEY_METADATA: request.idempotency_key},
        }
        if self.settings.return_url:
            params["return_url"] = self.settings.return_url
        else:
            params["use_stripe_sdk"] = True
        if request.three_ds_required:
            params["payment_method_options"] = {"card": {"request_three_d_secure": "any"}}
        return params

    @staticmethod
    def _as_dict(obj: Any) -> dict[str, Any] | None:
        to_dict = getattr(obj, "to_dict", None)
        data = to_dict() if callable(to_dict) else obj
        return data if isinstance(data, dict) else None

    def _from_intent(self, intent: Any) -> GatewayResult:
        data = self._as_dict(intent)
        if data is None:
            return _transport_failure(GATEWAY_INVALID_RESPONSE, reference=None)
        return self._result(data)

    def _result(self, intent: Mapping[str, Any]) -> GatewayResult:
        reference = intent.get("id")
        status = intent.get("status")
        if not isinstance(reference, str) or not reference.startswith("pi_"):
            log.warning("Stripe answered without a PaymentIntent id: status=%r", status)
            return _transport_failure(GATEWAY_INVALID_RESPONSE, reference=None)
        if status in ("succeeded", "requires_capture"):
            return GatewayResult(status="succeeded", reference=reference)
        if status == "processing":
            return GatewayResult(status="processing", reference=reference)
        if status in ("requires_action", "requires_confirmation"):
            return GatewayResult(
                status="requires_action",
                reference=reference,
                next_action=self._next_action(intent),
            )
        if status in ("requires_payment_method", "canceled"):
            error = intent.get("last_payment_error") or {}
            code = _decline_code(error) if error else "canceled"
            return GatewayResult(
                status="failed",
                reference=reference,
                decline_code=code,
                message=error.get("message") or _DEFAULT_DECLINE,
                retryable=code in _RETRYABLE_DECLINES,
            )
        log.warning("Stripe PaymentIntent %s has an unknown status %r", reference, status)
        return _transport_failure(GATEWAY_INVALID_RESPONSE, reference=reference)

    @staticmethod
    def _next_action(intent: Mapping[str, Any]) -> dict[str, Any]:
        """The widget's three_ds_challenge step, with what Stripe.js needs to run it."""
        action = intent.get("next_action") or {}
        next_action: dict[str, Any] = {
            "type": "three_ds_challenge",
            "gateway": "stripe",
            "challenge_id": intent["id"],
            # handleNextAction needs it; it only lets the shopper act on this intent.
            "client_secret": intent.get("client_secret"),
            "stripe_type": action.get("type"),  # None: challenge done, awaiting confirm
        }
        redirect = action.get("redirect_to_url") or {}
        if redirect.get("url"):
            next_action["redirect_url"] = redirect["url"]
        return next_action

    @staticmethod
    def _transport_code(exc: stripe.StripeError) -> str:
        if isinstance(exc, stripe.APIConnectionError):
            cause = exc.__cause__
            if isinstance(cause, requests.exceptions.Timeout) and not isinstance(
                cause, requests.exceptions.ConnectTimeout
            ):
                return GATEWAY_TIMEOUT
            return GATEWAY_UNAVAILABLE
        status = exc.http_status or 0
        # An APIError below 500 is an unreadable answer; 409: the same key is in progress.
        if isinstance(exc, stripe.APIError) and status < 500 and status != 409:
            return GATEWAY_INVALID_RESPONSE
        return GATEWAY_UNAVAILABLE

    def _from_error(self, exc: stripe.StripeError, *, reference: str | None) -> GatewayResult:
        body = exc.json_body if isinstance(exc.json_body, dict) else {}
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        if isinstance(exc, stripe.CardError):
            code = _decline_code(error)
            intent = error.get("payment_intent") or {}
            return GatewayResult(
                status="failed",
                reference=intent.get("id") or reference,
                decline_code=code,
                # Stripe writes card error messages to be shown to the shopper.
                message=error.get("message") or _DEFAULT_DECLINE,
                retryable=code in _RETRYABLE_DECLINES,
            )
        if isinstance(exc, stripe.IdempotencyError):
            raise InvalidRequest(
                "This idempotency key was already used for a different charge request; "
                "each payment attempt needs its own key.",
                code="idempotency_key_reused",
            ) from exc
        if isinstance(exc, stripe.InvalidRequestError):
            if exc.http_status == 404 and reference is not None:
                raise NotFound(f"No such payment at Stripe: '{reference}'", param="reference")
            if error.get("param") == "payment_method":
                return GatewayResult(
                    status="failed",
                    decline_code="invalid_payment_method",
                    message="This payment method can't be used. Enter your payment details again.",
                )
            raise InvalidRequest(
                f"Stripe refused the request: {exc.user_message}",
                code=exc.code or "gateway_invalid_request",
            ) from exc
        if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
            log.error("Stripe rejected the API key (check the stripe gateway settings): %s", exc)
        else:  # not the message: an unreadable body may hold a client_secret
            log.warning("Stripe call failed: %s (HTTP %s)", type(exc).__name__, exc.http_status)
        return _transport_failure(
            self._transport_code(exc), reference=reference, unknown=self._outcome_unknown(exc)
        )

    @staticmethod
    def _outcome_unknown(exc: stripe.StripeError) -> bool:
        """Whether Stripe may have acted although the call failed (see ``_transport``)."""
        if isinstance(exc, stripe.APIConnectionError):
            return not never_sent(exc)
        status = exc.http_status or 0
        if isinstance(exc, stripe.APIError) and status < 500 and status != 409:
            return True  # an answer arrived but was unreadable
        return outcome_unknown_status(status)

    def _webhook_event(self, event: Mapping[str, Any]) -> WebhookEvent:
        event_type = str(event.get("type", ""))
        obj = (event.get("data") or {}).get("object") or {}
        platform_type = "other"
        reference = merchant_reference = reason = None
        if event_type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            platform_type = (
                "payment_succeeded" if event_type.endswith("succeeded") else ("payment_failed")
            )
            reference = obj.get("id")
            merchant_reference = (obj.get("metadata") or {}).get(KEY_METADATA)
            if obj.get("last_payment_error"):
                reason = _decline_code(obj["last_payment_error"])
        elif event_type in ("charge.refunded", "refund.failed"):
            platform_type = (
                "refund_succeeded" if event_type == "charge.refunded" else ("refund_failed")
            )
            reference = obj.get("payment_intent")
            reason = obj.get("failure_reason")
        elif event_type == "charge.dispute.created":
            platform_type = "dispute_created"
            reference = obj.get("payment_intent")
            reason = obj.get("reason")
        currency = obj.get("currency")
        amount = obj.get("amount_refunded" if event_type == "charge.refunded" else "amount")
        return WebhookEvent(
            id=str(event.get("id")),
            gateway=self.name,
            type=platform_type,  # type: ignore[arg-type]
            provider_type=event_type,
            reference=reference,
            merchant_reference=merchant_reference,
            amount=amount if isinstance(amount, int) else None,
            currency=currency.upper() if isinstance(currency, str) else None,
            reason=reason,
            livemode=bool(event.get("livemode")),
            data=dict(obj),
        )
