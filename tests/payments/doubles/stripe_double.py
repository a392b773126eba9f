"""A test double of Stripe's REST API: a local HTTP server, not Stripe.

It answers the few endpoints the Stripe adapter uses the way Stripe's public API reference
documents them, so the tests exercise the real ``stripe`` SDK (request encoding, headers,
error classes) without a network or an account:

- ``POST /v1/payment_intents`` (``confirm=true``), ``GET /v1/payment_intents/{id}``,
  ``POST /v1/payment_intents/{id}/confirm``, ``POST /v1/payment_intents/{id}/cancel``;
- ``POST /v1/refunds``;
- ``Authorization: Bearer <secret key>``, form-encoded bodies, ``Idempotency-Key``
  (the first result is stored and replayed with ``Idempotent-Replayed: true``; different
  parameters under the same key answer 400 ``idempotency_error``; a request arriving while
  the first is still executing answers 409).

Outcomes follow Stripe's test PaymentMethods (``pm_card_visa`` succeeds,
``pm_card_chargeDeclinedInsufficientFunds`` declines with ``insufficient_funds``,
``pm_card_threeDSecure2Required`` asks for 3-D Secure, ...), as the sandbox gateway does.
What the shopper does in the browser with Stripe.js (``handleNextAction`` and the issuer's
challenge page) is played by :meth:`StripeDouble.complete_challenge`.

It imitates the documented behaviour only as far as these tests need: no Charges API,
no balances, no webhooks delivery, no search. It is no evidence of how the real service
behaves beyond what its documentation promises.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from ._server import DoubleServer, RecordedRequest, Reply

__all__ = ["StripeDouble"]

_SUCCEEDING = frozenset(
    {
        "pm_card_visa",
        "pm_card_visa_debit",
        "pm_card_mastercard",
        "pm_card_amex",
        "pm_card_discover",
        "pm_card_jcb",
        "pm_card_unionpay",
    }
)

# PaymentMethod → (error code, decline_code, message), from Stripe's "Declined payments".
_DECLINES: dict[str, tuple[str, str, str]] = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedLostCard": ("card_declined", "lost_card", "Your card was declined."),
    "pm_card_chargeDeclinedStolenCard": (
        "card_declined",
        "stolen_card",
        "Your card was declined.",
    ),
    "pm_card_chargeDeclinedExpiredCard": (
        "expired_card",
        "expired_card",
        "Your card has expired.",
    ),
    "pm_card_chargeDeclinedIncorrectCvc": (
        "incorrect_cvc",
        "incorrect_cvc",
        "Your card's security code is incorrect.",
    ),
    "pm_card_chargeDeclinedProcessingError": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}

_ALWAYS_CHALLENGE = frozenset({"pm_card_threeDSecure2Required"})

_AUTH_FAILURE = {
    "type": "card_error",
    "code": "payment_intent_authentication_failure",
    "message": (
        "We are unable to authenticate your payment method. Please choose a different "
        "payment method and try again."
    ),
}

_INTENT_PATH = re.compile(
    r"^/v1/payment_intents/(?P<id>pi_[A-Za-z0-9_]+)(?P<verb>/confirm|/cancel)?$"
)


def decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding (``metadata[a]=1``, ``list[0]=x``) back into nested values."""
    result: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", raw_key)
        node: Any = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(result)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


class StripeDouble(DoubleServer):
    """Stripe test double. ``api_key`` is the secret key the adapter must present."""

    def __init__(self, *, api_key: str = "sk_test_double", hang_seconds: float = 10.0) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.api_key = api_key
        self.intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    # --- test controls --------------------------------------------------------------------

    def complete_challenge(self, intent_id: str, *, authenticated: bool = True) -> None:
        """Play the shopper finishing 3-D Secure in the browser (Stripe.js + issuer page).

        With ``confirmation_method=manual`` an authenticated intent waits in
        ``requires_confirmation`` for the server to confirm it, as documented.
        """
        with self._lock:
            intent = self.intents[intent_id]
            assert intent["status"] == "requires_action", intent["status"]
            intent["next_action"] = None
            if not authenticated:
                intent["status"] = "requires_payment_method"
                intent["last_payment_error"] = dict(_AUTH_FAILURE)
                return
            intent["_authenticated"] = True
            if intent["confirmation_method"] == "manual":
                intent["status"] = "requires_confirmation"
            else:
                self._authorize(intent)

    @property
    def charges_created(self) -> int:
        """PaymentIntents actually created (idempotent replays excluded)."""
        return len(self.intents)

    @staticmethod
    def sign_webhook(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
        """A ``Stripe-Signature`` header as Stripe documents it (``t=...,v1=HMAC-SHA256``)."""
        t = int(time.time()) if timestamp is None else timestamp
        signed = f"{t}.".encode() + payload
        digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return f"t={t},v1={digest}"

    @staticmethod
    def event(event_type: str, obj: dict[str, Any], *, event_id: str = "evt_1") -> bytes:
        """A webhook payload (snapshot event) wrapping ``obj``."""
        return json.dumps(
            {
                "id": event_id,
                "object": "event",
                "api_version": "2026-10-28.endive",
                "created": int(time.time()),
                "livemode": False,
                "type": event_type,
                "data": {"object": obj},
            }
        ).encode()

    # --- HTTP -----------------------------------------------------------------------------

    def error_reply(self, status: int) -> Reply:
        if status == 500:
            return Reply(
                status, {"error": {"type": "api_error", "message": "An unknown error occurred"}}
            )
        return Reply(status, b"<html><body>Service Unavailable</body></html>")

    def handle(self, request: RecordedRequest) -> Reply:
        if request.header("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided.")
        params = decode_form(request.body) if request.method == "POST" else {}
        if request.method == "POST":
            return self.idempotent(
                request,
                lambda: self._route(request, params),
                in_progress=lambda: _error(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotent "
                    "Key. Please try again later.",
                ),
                mismatch=lambda: _error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                ),
                replay_headers={"Idempotent-Replayed": "true"},
            )
        return self._route(request, params)

    def _route(self, request: RecordedRequest, params: dict[str, Any]) -> Reply:
        path, method = request.path, request.method
        if method == "POST" and path == "/v1/payment_intents":
            return self._create(params)
        if method == "POST" and path == "/v1/refunds":
            return self._refund(params)
        match = _INTENT_PATH.match(path)
        if match:
            with self._lock:
                intent = self.intents.get(match["id"])
            if intent is None:
                return _error(
                    404,
                    "invalid_request_error",
                    f"No such payment_intent: '{match['id']}'",
                    code="resource_missing",
                    param="intent",
                    replayable=False,
                )
            if method == "GET" and not match["verb"]:
                return Reply(200, copy.deepcopy(intent))
            if method == "POST" and match["verb"] == "/confirm":
                return self._confirm(intent)
            if method == "POST" and match["verb"] == "/cancel":
                return self._cancel(intent)
        return _error(
            404,
            "invalid_request_error",
            f"Unrecognized request URL ({method}: {path}).",
            replayable=False,
        )

    # --- PaymentIntents -------------------------------------------------------------------

    def _create(self, params: dict[str, Any]) -> Reply:
        pm = params.get("payment_method", "")
        missing = [p for p in ("amount", "currency") if p not in params]
        if missing:
            return _error(
                400,
                "invalid_request_error",
                f"Missing required param: {missing[0]}.",
                code="parameter_missing",
                param=missing[0],
                replayable=False,
            )
        if pm not in _SUCCEEDING and pm not in _DECLINES and pm not in _ALWAYS_CHALLENGE:
            return _error(
                400,
                "invalid_request_error",
                f"No such PaymentMethod: '{pm}'",
                code="resource_missing",
                param="payment_method",
                replayable=False,
            )
        intent_id = f"pi_double{next(self._ids):06d}"
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "amount_received": 0,
            "currency": params["currency"],
            "status": "requires_confirmation",
            "client_secret": f"{intent_id}_secret_double",
            "confirmation_method": params.get("confirmation_method", "automatic"),
            "capture_method": "automatic",
            "payment_method": pm,
            "payment_method_types": params.get("payment_method_types", ["card"]),
            "metadata": params.get("metadata", {}),
            "next_action": None,
            "last_payment_error": None,
            "latest_charge": None,
            "cancellation_reason": None,
            "livemode": False,
            "created": int(time.time()),
            "_return_url": params.get("return_url"),
            "_use_stripe_sdk": params.get("use_stripe_sdk") == "true",
            "_three_ds": params.get("payment_method_options", {})
            .get("card", {})
            .get("request_three_d_secure"),
        }
        with self._lock:
            self.intents[intent_id] = intent
        if params.get("confirm") != "true":
            return Reply(200, _public(intent))
        return self._confirm(intent)

    def _confirm(self, intent: dict[str, Any]) -> Reply:
        with self._lock:
            if intent["status"] not in ("requires_confirmation", "requires_payment_method"):
                return _error(
                    400,
                    "invalid_request_error",
                    f"This PaymentIntent's status is {intent['status']}; it cannot be confirmed.",
                    code="payment_intent_unexpected_state",
                )
            pm = intent["payment_method"]
            # Like Stripe's decline test cards, declining cards are not enrolled in 3DS.
            wants_3ds = intent["_three_ds"] in ("any", "challenge") and pm in _SUCCEEDING
            if (pm in _ALWAYS_CHALLENGE or wants_3ds) and not intent.get("_authenticated"):
                intent["status"] = "requires_action"
                intent["next_action"] = self._next_action(intent)
                return Reply(200, _public(intent))
            return self._authorize(intent)

    def _next_action(self, intent: dict[str, Any]) -> dict[str, Any]:
        if intent["_return_url"] and not intent["_use_stripe_sdk"]:
            return {
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": f"{self.url}/3d_secure_2/hosted?payment_intent={intent['id']}",
                    "return_url": intent["_return_url"],
                },
            }
        return {
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {
                "type": "stripe_3ds2_fingerprint",
                "three_d_secure_2_source": f"src_{intent['id']}",
                "directory_server_name": "visa",
            },
        }

    def _authorize(self, intent: dict[str, Any]) -> Reply:
        """Charge the card (caller holds the lock or owns ``intent``)."""
        decline = _DECLINES.get(intent["payment_method"])
        charge_id = f"ch_{intent['id'][3:]}_{next(self._ids)}"
        intent["latest_charge"] = charge_id
        intent["next_action"] = None
        if decline is None:
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"]
            intent["last_payment_error"] = None
            return Reply(200, _public(intent))
        code, decline_code, message = decline
        error = {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "charge": charge_id,
            "doc_url": f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}",
        }
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = dict(error)
        return Reply(402, {"error": error | {"payment_intent": _public(intent)}})

    def _cancel(self, intent: dict[str, Any]) -> Reply:
        with self._lock:
            if intent["status"] in ("succeeded", "canceled"):
                return _error(
                    400,
                    "invalid_request_error",
                    f"You cannot cancel this PaymentIntent because it has a status of "
                    f"{intent['status']}.",
                    code="payment_intent_unexpected_state",
                )
            intent["status"] = "canceled"
            intent["next_action"] = None
            intent["cancellation_reason"] = "requested_by_customer"
            return Reply(200, _public(intent))

    # --- Refunds --------------------------------------------------------------------------

    def _refund(self, params: dict[str, Any]) -> Reply:
        with self._lock:
            intent = self.intents.get(params.get("payment_intent", ""))
            if intent is None:
                return _error(
                    404,
                    "invalid_request_error",
                    f"No such payment_intent: '{params.get('payment_intent')}'",
                    code="resource_missing",
                    param="payment_intent",
                    replayable=False,
                )
            if intent["status"] != "succeeded":
                return _error(
                    400,
                    "invalid_request_error",
                    "This PaymentIntent does not have a successful charge to refund.",
                    param="payment_intent",
                    replayable=False,
                )
            refunded = sum(
                r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"]
            )
            remaining = intent["amount"] - refunded
            amount = int(params.get("amount", remaining))
            if remaining == 0:
                return _error(
                    400,
                    "invalid_request_error",
                    f"Charge {intent['latest_charge']} has already been refunded.",
                    code="charge_already_refunded",
                    replayable=False,
                )
            if amount > remaining:
                return _error(
                    400,
                    "invalid_request_error",
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                    f"({remaining}).",
                    param="amount",
                    replayable=False,
                )
            refund = {
                "id": f"re_double{next(self._ids):06d}",
                "object": "refund",
                "amount": amount,
                "currency": intent["currency"],
                "payment_intent": intent["id"],
                "charge": intent["latest_charge"],
                "status": "succeeded",
                "reason": params.get("reason"),
                "metadata": params.get("metadata", {}),
                "created": int(time.time()),
            }
            self.refunds[refund["id"]] = refund
            return Reply(200, dict(refund))


def _public(intent: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in intent.items() if not k.startswith("_")}


def _error(
    status: int,
    error_type: str,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    replayable: bool = True,
) -> Reply:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return Reply(status, {"error": error}, replayable=replayable)
