"""Adyen adapter: the Checkout API through the official ``Adyen`` Python SDK.

**Card data.** As in Stripe mode, the card number never reaches the platform: the widget
uses Adyen Web, which encrypts card fields in the browser. The payment method of a
:class:`~checkoutlab.payments.gateways.base.ChargeRequest` is the JSON of the component's
``state.data`` (``{"paymentMethod": {...}, "browserInfo": {...}, ...}``) or of its
``paymentMethod`` alone; raw card fields (``number``, ``cvc``) are refused, and so is
:meth:`AdyenGateway.tokenize_card`.

**One attempt.** :meth:`~AdyenGateway.charge` sends ``POST /payments`` with the attempt's
idempotency key (the ``Idempotency-Key`` header; keys longer than Adyen's 64 characters are
replaced by their SHA-256) and the key as merchant ``reference``. 3-D Secure answers
``RedirectShopper``, ``IdentifyShopper`` or ``ChallengeShopper`` with an ``action`` that the
widget hands to Adyen Web (``checkout.createFromAction``); what the component returns
(``onAdditionalDetails``) goes to :meth:`~AdyenGateway.submit_action_details`, which calls
``POST /payments/details``. Adyen authorises only then: :meth:`~AdyenGateway.complete_action`
with a bare ``"succeeded"`` cannot finish the payment and says so.

**Refusals.** ``refusalReason`` is mapped to the platform's (Stripe's) decline codes; the
shopper sees the platform's own messages, never Adyen's reason, as Adyen asks. ``Acquirer
Error``, ``Issuer Unavailable``, ``Not Submitted`` and result code ``Error`` are retryable.
"Blocked Card" is ``pickup_card``, refined to ``lost_card``/``stolen_card`` when the raw
acquirer response (``additionalData.refusalReasonRaw``, if enabled) says so.

**Transport failures** are retryable with an unknown outcome, as in the Stripe adapter:
``gateway_timeout``, ``gateway_unavailable`` (connection, 5xx, credentials, errorCode 704:
same key still in progress), ``gateway_invalid_response``.

**Reconciliation.** The Checkout API has no "get payment" call; Adyen stores the first
response per idempotency key (at least 31 days, as documented) and returns it to a repeat,
so :meth:`~AdyenGateway.retrieve` re-sends the identical ``/payments`` request. Later steps
(``/payments/details``, refunds) settle through webhooks (:meth:`~AdyenGateway.parse_webhook`).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import Adyen
import requests
from Adyen.exceptions import AdyenAPIResponseError, AdyenError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from checkoutlab.errors import InvalidRequest
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

__all__ = ["AdyenGateway", "AdyenSettings", "refusal_decline_code"]

log = logging.getLogger(__name__)

GATEWAY_TIMEOUT: Final = "gateway_timeout"
GATEWAY_UNAVAILABLE: Final = "gateway_unavailable"
GATEWAY_INVALID_RESPONSE: Final = "gateway_invalid_response"

_MAX_IDEMPOTENCY_KEY: Final = 64
_MAX_REFERENCE: Final = 80

# Adyen's documented refusalReason values (lower case) → platform (Stripe) decline codes.
_REFUSALS: Final[dict[str, str]] = {
    "refused": "card_declined",
    "declined non generic": "card_declined",
    "referral": "call_issuer",
    "acquirer error": "processing_error",
    "not submitted": "processing_error",
    "unknown": "processing_error",
    "issuer unavailable": "issuer_not_available",
    "blocked card": "pickup_card",
    "expired card": "expired_card",
    "invalid amount": "invalid_amount",
    "invalid card number": "incorrect_number",
    "not supported": "card_not_supported",
    "3d not authenticated": "authentication_failed",
    "3ds authentication error": "authentication_failed",
    "authentication required": "authentication_required",
    "not enough balance": "insufficient_funds",
    "acquirer fraud": "fraudulent",
    "fraud": "fraudulent",
    "fraud-cancelled": "fraudulent",
    "issuer suspected fraud": "fraudulent",
    "cancelled": "canceled",
    "shopper cancelled": "canceled",
    "invalid pin": "incorrect_pin",
    "pin tries exceeded": "pin_try_exceeded",
    "transaction not permitted": "transaction_not_allowed",
    "cvc declined": "incorrect_cvc",
    "restricted card": "restricted_card",
    "revocation of auth": "revocation_of_authorization",
    "withdrawal amount exceeded": "card_velocity_exceeded",
    "withdrawal count exceeded": "withdrawal_count_limit_exceeded",
    "avs declined": "incorrect_zip",
}
_RETRYABLE: Final = frozenset({"processing_error", "issuer_not_available", "try_again_later"})

# Shopper-safe messages; Adyen asks not to show refusal reasons themselves.
_DECLINED: Final = "Your card was declined. Try another card or payment method."
_MESSAGES: Final[dict[str, str]] = {
    "insufficient_funds": "Your card has insufficient funds. Try another card or payment method.",
    "expired_card": "Your card has expired. Try another card.",
    "incorrect_cvc": "Your card's security code is incorrect. Check it and try again.",
    "incorrect_number": "Your card number is incorrect. Check it and try again.",
    "invalid_cvc": "Your card's security code is invalid. Check it and try again.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "issuer_not_available": "Your bank could not be reached. Try again in a little bit.",
    "authentication_failed": (
        "We couldn't verify this payment with your bank. Try again or use another payment method."
    ),
    "invalid_payment_method": (
        "This payment method can't be used. Enter your payment details again."
    ),
    GATEWAY_TIMEOUT: "The payment provider did not answer in time. Try again in a moment.",
    GATEWAY_UNAVAILABLE: "The payment provider is unavailable. Try again in a moment.",
    GATEWAY_INVALID_RESPONSE: "The payment provider sent an unreadable answer. Try again.",
}

_ACTION_RESULTS: Final = frozenset(
    {"RedirectShopper", "IdentifyShopper", "ChallengeShopper", "PresentToShopper"}
)
_STATE_DATA_FIELDS: Final = ("browserInfo", "origin", "riskData", "billingAddress")
_RAW_CARD_FIELDS: Final = frozenset({"number", "cvc", "expiryMonth", "expiryYear"})
_PSP_REFERENCE: Final = re.compile(r"^[A-Za-z0-9]{1,64}$")

_WEBHOOK_TYPES: Final[dict[str, tuple[str, str]]] = {
    # eventCode → (type when success, type when not)
    "AUTHORISATION": ("payment_succeeded", "payment_failed"),
    "REFUND": ("refund_succeeded", "refund_failed"),
    "REFUND_FAILED": ("refund_failed", "refund_failed"),
    "CHARGEBACK": ("dispute_created", "dispute_created"),
    "NOTIFICATION_OF_CHARGEBACK": ("dispute_created", "dispute_created"),
}


def refusal_decline_code(
    reason: str | None, *, raw: str | None = None, result_code: str = "Refused"
) -> str:
    """The platform decline code for an Adyen refusal.

    >>> refusal_decline_code("Not enough balance")
    'insufficient_funds'
    >>> refusal_decline_code("Blocked Card", raw="43 : STOLEN CARD")
    'stolen_card'
    >>> refusal_decline_code(None, result_code="Error")
    'processing_error'
    """
    code = _REFUSALS.get((reason or "").strip().lower())
    if code is None:
        code = "processing_error" if result_code == "Error" else "card_declined"
    if code == "pickup_card" and raw:
        text = raw.strip().lower()
        if text.startswith("43") or "stolen" in text:
            code = "stolen_card"
        elif text.startswith("41") or "lost" in text:
            code = "lost_card"
    return code


def _bounded(value: str, limit: int) -> str:
    return value if len(value) <= limit else hashlib.sha256(value.encode()).hexdigest()


def _failed(
    code: str, *, reference: str | None, retryable: bool | None = None, unknown: bool = False
) -> GatewayResult:
    return GatewayResult(
        status="failed",
        reference=reference,
        decline_code=code,
        message=_MESSAGES.get(code, _DECLINED),
        retryable=code in _RETRYABLE if retryable is None else retryable,
        outcome_unknown=unknown,
    )


class AdyenSettings(BaseModel):
    """What the Adyen adapter needs; build it from the platform's settings or by hand."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr = Field(description="API key of the web service user (X-API-Key)")
    merchant_account: str = Field(min_length=1)
    return_url: str = Field(
        min_length=1, description="where redirect-based 3-D Secure sends the shopper back"
    )
    platform: Literal["test", "live"] = "test"
    live_endpoint_prefix: str | None = Field(
        default=None, description="the company's live URL prefix; required for live"
    )
    base_url: str | None = Field(
        default=None,
        description="Checkout API base URL override (without the version), e.g. a local "
        "test double; None = Adyen's URL for the platform",
    )
    api_version: int = Field(default=71, ge=68, description="Checkout API version")
    timeout: float = Field(
        default=10.0, gt=0, le=60, description="seconds allowed to connect and for each read"
    )
    native_three_ds: bool = Field(
        default=True, description="3-D Secure 2 in the page (threeDS2 actions), not redirect"
    )
    hmac_key: SecretStr | None = Field(
        default=None, description="the webhook's HMAC key (hex), for parse_webhook"
    )

    @model_validator(mode="after")
    def _live_needs_prefix(self) -> AdyenSettings:
        if self.platform == "live" and not self.live_endpoint_prefix and not self.base_url:
            raise ValueError(
                "live_endpoint_prefix is required on the live platform "
                "(Customer Area > Developers > API URLs)"
            )
        return self


class AdyenGateway(Gateway):
    """Payments through Adyen's Checkout API.

    Parameters
    ----------
    settings
        An :class:`AdyenSettings`; or pass its fields as keyword arguments
        (``api_key=..., merchant_account=..., return_url=..., base_url=..., timeout=...``).

    Examples
    --------
    >>> gateway = AdyenGateway(
    ...     api_key="AQE...", merchant_account="ShopECOM", return_url="https://shop.example/return"
    ... )
    >>> gateway.name, gateway.settings.api_version
    ('adyen', 71)
    """

    name = "adyen"
    encrypted_card_fields = True

    def __init__(self, settings: AdyenSettings | None = None, **options: Any) -> None:
        if settings is not None and options:
            raise TypeError("Pass either settings or keyword options, not both.")
        self.settings = settings if settings is not None else AdyenSettings(**options)
        s = self.settings
        self._adyen = Adyen.Adyen(
            xapikey=s.api_key.get_secret_value(),
            platform=s.platform,
            merchant_account=s.merchant_account,
            live_endpoint_prefix=s.live_endpoint_prefix,
            http_timeout=s.timeout,
            http_force="requests",  # so transport errors are requests' exceptions
            api_checkout_version=s.api_version,
        )
        checkout = self._adyen.checkout
        self._payments = checkout.payments_api
        self._modifications = checkout.modifications_api
        if s.base_url:
            # The SDK builds every URL from the service's baseUrl (version included).
            base = f"{s.base_url.rstrip('/')}/v{s.api_version}"
            self._payments.baseUrl = base
            self._modifications.baseUrl = base

    # --- Gateway ----------------------------------------------------------------------------

    def tokenize_card(self, card: CardInput) -> TokenizedCard:
        """Refuse: with Adyen the browser encrypts card fields (Adyen Web), never the server."""
        raise InvalidRequest(
            "Card details cannot be sent to the server in Adyen mode: collect the card with "
            "Adyen Web (its card fields are encrypted in the browser) and send the "
            "component's state.data as the payment method.",
            code="card_details_not_accepted",
            param="payment_method.card",
        )

    def charge(self, request: ChargeRequest) -> GatewayResult:
        """``POST /payments``; refusals and transport failures are results."""
        body = self._payments_body(request)
        key = _bounded(request.idempotency_key, _MAX_IDEMPOTENCY_KEY)
        response = self._call(lambda: self._payments.payments(body, idempotency_key=key))
        if isinstance(response, GatewayResult):
            return response
        return self._result(response, fallback_reference=None)

    def complete_action(
        self, *, reference: str, request: ChargeRequest, outcome: ActionOutcome
    ) -> GatewayResult:
        """A failed or abandoned challenge ends the attempt; a success needs the details.

        Nothing is authorised at Adyen until ``/payments/details`` receives what Adyen Web
        returned, so ``"failed"`` is answered without a call (the unfinished payment
        expires at Adyen) and ``"succeeded"`` is refused: use :meth:`submit_action_details`.
        """
        if outcome == "failed":
            return _failed("authentication_failed", reference=reference)
        if outcome == "succeeded":
            raise InvalidRequest(
                "Adyen authorises a payment after 3-D Secure only when the server forwards "
                "what Adyen Web returned (onAdditionalDetails: threeDSResult or "
                "redirectResult): call submit_action_details(details=...).",
                code="action_details_required",
                param="details",
            )
        raise InvalidRequest(
            f"Unknown action outcome {outcome!r}. Use 'succeeded' or 'failed'.",
            code="invalid_outcome",
            param="outcome",
        )

    def submit_action_details(
        self, *, reference: str, request: ChargeRequest, details: Mapping[str, Any]
    ) -> GatewayResult:
        """``POST /payments/details`` with the component's data; may answer another action.

        ``details`` is the ``state.data`` of ``onAdditionalDetails`` (``{"details": {...}}``)
        or its inner ``details`` object.
        """
        inner = details.get("details", details)
        if not isinstance(inner, Mapping) or not inner:
            raise InvalidRequest(
                "details must be the data Adyen Web returned, e.g. {'threeDSResult': '...'}.",
                code="invalid_details",
                param="details",
            )
        body: dict[str, Any] = {"details": dict(inner)}
        if isinstance(details.get("paymentData"), str):
            body["paymentData"] = details["paymentData"]
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        key = _bounded(f"{request.idempotency_key}:details:{digest}", _MAX_IDEMPOTENCY_KEY)
        response = self._call(
            lambda: self._payments.payments_details(body, idempotency_key=key),
            reference=reference,
        )
        if isinstance(response, GatewayResult):
            return response
        result = self._result(response, fallback_reference=reference)
        if result.reference != reference:
            log.error("Adyen details for %s completed payment %s", reference, result.reference)
            raise InvalidRequest(
                "These details belong to another payment.", code="invalid_details", param="details"
            )
        return result

    def retrieve(self, *, request: ChargeRequest, reference: str | None = None) -> GatewayResult:
        """Re-send the identical ``/payments`` request: Adyen returns the stored answer.

        The Checkout API has no lookup by ``reference``; the answer is the outcome of the
        ``/payments`` call (later steps arrive as webhooks).
        """
        return self.charge(request)

    def refund(
        self, *, reference: str, amount: int, currency: str, idempotency_key: str
    ) -> RefundResult:
        """``POST /payments/{pspReference}/refunds``: Adyen answers ``received`` (pending).

        The final state arrives as a ``REFUND`` (or ``REFUND_FAILED``) webhook.
        """
        if not _PSP_REFERENCE.match(reference):
            raise InvalidRequest(
                f"'{reference}' is not an Adyen pspReference.", code="invalid_reference"
            )
        currency = currency.upper()
        body = {
            "merchantAccount": self.settings.merchant_account,
            "amount": {"value": amount, "currency": currency},
            "reference": _bounded(idempotency_key, _MAX_REFERENCE),
        }
        key = _bounded(idempotency_key, _MAX_IDEMPOTENCY_KEY)
        failed = RefundResult(
            status="failed",
            payment_reference=reference,
            amount=amount,
            currency=currency,
            retryable=True,
        )
        try:
            response = self._sdk_message(
                lambda: self._modifications.refund_captured_payment(
                    body, reference, idempotency_key=key
                )
            )
        except _RequestRefused as exc:
            raise InvalidRequest(
                f"Adyen refused the refund: {exc.message} (errorCode {exc.error_code}).",
                code="refund_refused",
            ) from exc
        except _TransportFailure as exc:
            return failed.model_copy(
                update={"failure_code": exc.code, "message": _MESSAGES[exc.code]}
            )
        if not isinstance(response, dict) or response.get("status") != "received":
            return failed.model_copy(
                update={
                    "failure_code": GATEWAY_INVALID_RESPONSE,
                    "message": _MESSAGES[GATEWAY_INVALID_RESPONSE],
                }
            )
        return RefundResult(
            status="pending",
            reference=response.get("pspReference"),
            payment_reference=reference,
            amount=amount,
            currency=currency,
        )

    def parse_webhook(self, payload: bytes, headers: Mapping[str, str]) -> list[WebhookEvent]:
        """Verify each NotificationRequestItem's HMAC signature and map its event."""
        key = self.settings.hmac_key
        if key is None:
            raise InvalidRequest(
                "Adyen webhooks are not configured: set the webhook's HMAC key (hmac_key).",
                code="webhooks_not_configured",
            )
        try:
            body = json.loads(payload)
            items = [w["NotificationRequestItem"] for w in body["notificationItems"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(
                "The body is not an Adyen webhook (notificationItems).", code="invalid_payload"
            ) from exc
        live = body.get("live") == "true"
        if live != (self.settings.platform == "live"):
            raise InvalidRequest(
                f"A {'live' if live else 'test'} webhook reached a gateway configured for "
                f"Adyen's {self.settings.platform} platform.",
                code="invalid_payload",
            )
        events = []
        for item in items:
            if not self._signed(item, key.get_secret_value()):
                raise InvalidRequest(
                    "The webhook's HMAC signature does not match its content.",
                    code="invalid_signature",
                )
            events.append(self._webhook_event(item, live=live))
        return events

    # --- internals --------------------------------------------------------------------------

    def _payments_body(self, request: ChargeRequest) -> dict[str, Any]:
        state = self._state_data(request.payment_method)
        authentication: dict[str, Any] = {}
        if self.settings.native_three_ds:
            authentication["threeDSRequestData"] = {"nativeThreeDS": "preferred"}
        if request.three_ds_required:
            authentication["attemptAuthentication"] = "always"
        body: dict[str, Any] = {
            "merchantAccount": self.settings.merchant_account,
            "amount": {"value": request.amount, "currency": request.currency},
            "reference": _bounded(request.idempotency_key, _MAX_REFERENCE),
            "paymentMethod": state["paymentMethod"],
            "returnUrl": self.settings.return_url,
            "channel": "Web",
            "shopperInteraction": "Ecommerce",
            "metadata": dict(request.metadata),
        }
        if authentication:
            body["authenticationData"] = authentication
        body.update({k: state[k] for k in _STATE_DATA_FIELDS if k in state})
        return body

    @staticmethod
    def _state_data(payment_method: str) -> dict[str, Any]:
        try:
            value = json.loads(payment_method)
        except ValueError:
            value = None
        if isinstance(value, dict) and "paymentMethod" not in value:
            value = {"paymentMethod": value}
        method = value.get("paymentMethod") if isinstance(value, dict) else None
        if not isinstance(method, dict) or not isinstance(method.get("type"), str):
            raise InvalidRequest(
                "The Adyen gateway takes the payment method Adyen Web produced: the JSON of "
                "the component's state.data (or of its paymentMethod), with card fields "
                "encrypted in the browser.",
                code="invalid_payment_method",
                param="payment_method",
            )
        if _RAW_CARD_FIELDS & method.keys():
            raise InvalidRequest(
                "Raw card fields (number, cvc, expiry) are not accepted; send the encrypted "
                "fields Adyen Web produces (encryptedCardNumber, ...).",
                code="card_details_not_accepted",
                param="payment_method",
            )
        return value  # type: ignore[return-value]

    def _call(self, send: Any, *, reference: str | None = None) -> dict[str, Any] | GatewayResult:
        """The SDK's parsed answer, or the failure as a result (refusals of the request raise)."""
        try:
            return self._sdk_message(send)
        except _TransportFailure as exc:
            return _failed(exc.code, reference=reference, retryable=True, unknown=exc.unknown)
        except _RequestRefused as exc:
            if exc.error_code == "101":
                return _failed("incorrect_number", reference=reference)
            if exc.error_code == "103":
                return _failed("invalid_cvc", reference=reference)
            raise InvalidRequest(
                f"Adyen refused the request: {exc.message} (errorCode {exc.error_code}).",
                code="gateway_invalid_request",
            ) from exc

    @staticmethod
    def _sdk_message(send: Any) -> Any:
        """Run one SDK call; raise :class:`_TransportFailure` or :class:`_RequestRefused`."""
        try:
            result = send()
        except requests.exceptions.Timeout as exc:
            if isinstance(exc, requests.exceptions.ConnectTimeout):
                raise _TransportFailure(GATEWAY_UNAVAILABLE, unknown=False) from exc
            raise _TransportFailure(GATEWAY_TIMEOUT) from exc
        except requests.exceptions.RequestException as exc:
            log.warning("Adyen call failed: %r", exc)
            raise _TransportFailure(GATEWAY_UNAVAILABLE, unknown=not never_sent(exc)) from exc
        except AdyenAPIResponseError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            detail = exc.message if isinstance(exc.message, dict) else {}
            message = str(detail.get("message") or exc.raw_response or "")[:200]
            error_code = str(exc.error_code or detail.get("errorCode") or "")
            if status in (400, 422) and error_code != "704":  # 704: same key in progress
                raise _RequestRefused(message, error_code) from exc
            if status in (401, 403):
                log.error("Adyen rejected the credentials (check the adyen gateway settings)")
            else:
                log.warning("Adyen answered HTTP %s: %s", status, message)
            unknown = outcome_unknown_status(status) or error_code == "704"
            raise _TransportFailure(GATEWAY_UNAVAILABLE, unknown=unknown) from exc
        except AdyenError as exc:
            log.error("Adyen SDK refused the call (configuration?): %s", exc)
            raise _TransportFailure(GATEWAY_UNAVAILABLE, unknown=False) from exc
        except (AttributeError, TypeError, ValueError) as exc:
            # The SDK reads the body as a JSON object; other JSON breaks it.
            log.warning("Adyen answered an unreadable body: %r", exc)
            raise _TransportFailure(GATEWAY_INVALID_RESPONSE) from exc
        return result.message

    def _result(self, message: Any, *, fallback_reference: str | None) -> GatewayResult:
        if not isinstance(message, dict) or not isinstance(message.get("resultCode"), str):
            # The SDK turns an unparseable 200 body into {}.
            return _failed(
                GATEWAY_INVALID_RESPONSE, reference=fallback_reference, retryable=True, unknown=True
            )
        result_code = message["resultCode"]
        reference = message.get("pspReference") or fallback_reference
        if result_code == "Authorised":
            return GatewayResult(status="succeeded", reference=reference)
        if result_code in ("Received", "Pending"):
            return GatewayResult(status="processing", reference=reference)
        if result_code in _ACTION_RESULTS:
            action = message.get("action")
            if not isinstance(action, dict):
                return _failed(
                    GATEWAY_INVALID_RESPONSE, reference=reference, retryable=True, unknown=True
                )
            # Without a pspReference the merchant reference names the payment.
            reference = reference or message.get("merchantReference")
            return GatewayResult(
                status="requires_action",
                reference=reference,
                next_action=self._next_action(action, result_code, reference),
            )
        if result_code in ("Refused", "Cancelled", "Error"):
            raw = (message.get("additionalData") or {}).get("refusalReasonRaw")
            code = refusal_decline_code(
                message.get("refusalReason"), raw=raw, result_code=result_code
            )
            return _failed(code, reference=reference)
        log.warning("Adyen answered an unexpected resultCode %r", result_code)
        return _failed(GATEWAY_INVALID_RESPONSE, reference=reference, retryable=True, unknown=True)

    @staticmethod
    def _next_action(
        action: dict[str, Any], result_code: str, reference: str | None
    ) -> dict[str, Any]:
        three_ds = action.get("paymentMethodType") == "scheme" and action.get("type") in (
            "threeDS2",
            "redirect",
        )
        next_action: dict[str, Any] = {
            "type": "three_ds_challenge" if three_ds else "adyen_action",
            "gateway": "adyen",
            "challenge_id": reference,
            "result_code": result_code,
            "adyen_action": action,  # for Adyen Web's createFromAction
        }
        if action.get("type") == "redirect" and action.get("url"):
            next_action["redirect_url"] = action["url"]
        return next_action

    @staticmethod
    def _signed(item: Any, hmac_key: str) -> bool:
        # Any shape is possible before the signature is checked: a malformed item is an
        # unsigned one (400), never an exception (500).
        if not isinstance(item, dict):
            return False
        additional = item.get("additionalData")
        if not isinstance(additional, dict):
            return False
        signature = additional.get("hmacSignature")
        if not isinstance(signature, str) or not signature:
            return False
        try:
            return bool(Adyen.util.is_valid_hmac_notification(item, hmac_key))
        except (AttributeError, KeyError, TypeError, ValueError, binascii.Error):
            return False

    def _webhook_event(self, item: dict[str, Any], *, live: bool) -> WebhookEvent:
        event_code = str(item.get("eventCode", ""))
        success = item.get("success") == "true"
        when_success, when_not = _WEBHOOK_TYPES.get(event_code, ("other", "other"))
        event_type = when_success if success else when_not
        psp = item.get("pspReference")
        reference = psp if event_code == "AUTHORISATION" else item.get("originalReference", psp)
        reason = item.get("reason") or None
        if event_type == "payment_failed":
            reason = refusal_decline_code(reason)
        elif event_type in ("payment_succeeded", "refund_succeeded"):
            reason = None
        amount = item.get("amount")
        if not isinstance(amount, dict):
            amount = {}
        return WebhookEvent(
            id=f"{event_code}:{psp}:{item.get('success')}",
            gateway=self.name,
            type=event_type,  # type: ignore[arg-type]
            provider_type=event_code,
            reference=reference,
            merchant_reference=item.get("merchantReference"),
            amount=amount.get("value") if isinstance(amount.get("value"), int) else None,
            currency=amount.get("currency"),
            reason=reason,
            livemode=live,
            data={k: v for k, v in item.items() if k != "additionalData"},
        )


class _TransportFailure(Exception):
    def __init__(self, code: str, *, unknown: bool = True) -> None:
        super().__init__(code)
        self.code = code
        self.unknown = unknown  # Adyen may have acted (see GatewayResult.outcome_unknown)


class _RequestRefused(Exception):
    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code
