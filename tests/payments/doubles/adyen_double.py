"""A test double of Adyen's Checkout API: a local HTTP server, not Adyen.

It answers the endpoints the Adyen adapter uses the way Adyen's public API reference and
testing guides document them, so the tests exercise the real ``Adyen`` SDK (URLs, headers,
error classes) without a network or an account:

- ``POST /v{N}/payments``, ``POST /v{N}/payments/details``,
  ``POST /v{N}/payments/{pspReference}/refunds`` (any API version number ``N``);
- ``X-API-Key`` authentication, ``merchantAccount`` checked, error bodies
  ``{"status", "errorCode", "message", "errorType"}``;
- ``Idempotency-Key``: the first response is stored and returned again for the same key,
  with the key echoed in the response headers; a request arriving while the first is still
  being processed answers 422 with ``errorCode`` 704.

Outcomes follow Adyen's documented test conventions: card numbers sent unencrypted with the
``test_`` prefix (``encryptedCardNumber: "test_4111111111111111"``), results chosen by
``holderName`` (``NOT_ENOUGH_BALANCE`` → Refused / "Not enough balance", ``ERROR`` → Error /
"Acquirer Error", ``BLOCK_CARD : 43 : STOLEN CARD`` → "Blocked Card" with that raw acquirer
response, ...), and the 3-D Secure 2 test card 4917 6100 0000 0000. With
``authenticationData.threeDSRequestData.nativeThreeDS = "preferred"`` 3-D Secure is native
(``IdentifyShopper`` then ``ChallengeShopper``, ``threeDS2`` actions), otherwise a
``RedirectShopper`` with a ``redirect`` action. What Adyen Web does in the shopper's browser is
played by :meth:`AdyenDouble.shopper_result`, which returns the ``details`` the component
would hand to ``onAdditionalDetails`` (their content is this double's own, opaque format).

Only what these tests need is imitated; it is no evidence of how the real service behaves
beyond what its documentation promises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import re
from typing import Any

from ._server import DoubleServer, RecordedRequest, Reply

__all__ = ["THREE_DS2_CARD", "AdyenDouble"]

THREE_DS2_CARD = "4917610000000000"

# holderName → (resultCode, refusalReason, refusalReasonCode); Adyen's testing values.
_HOLDER_NAMES: dict[str, tuple[str, str | None, str | None]] = {
    "APPROVED": ("Authorised", None, None),
    "UNKNOWN": ("Error", "Unknown", "0"),
    "DECLINED": ("Refused", "Refused", "2"),
    "REFERRAL": ("Refused", "Referral", "3"),
    "ERROR": ("Error", "Acquirer Error", "4"),
    "BLOCK_CARD": ("Refused", "Blocked Card", "5"),
    "CARD_EXPIRED": ("Refused", "Expired Card", "6"),
    "INVALID_AMOUNT": ("Refused", "Invalid Amount", "7"),
    "INVALID_CARD_NUMBER": ("Refused", "Invalid Card Number", "8"),
    "ISSUER_UNAVAILABLE": ("Refused", "Issuer Unavailable", "9"),
    "NOT_SUPPORTED": ("Refused", "Not supported", "10"),
    "NOT_3D_AUTHENTICATED": ("Refused", "3D Not Authenticated", "11"),
    "NOT_ENOUGH_BALANCE": ("Refused", "Not enough balance", "12"),
    "PENDING": ("Received", None, None),
    "ACQUIRER_FRAUD": ("Refused", "Acquirer Fraud", "14"),
    "CANCELLED": ("Refused", "Cancelled", "15"),
    "SHOPPER_CANCELLED": ("Refused", "Shopper Cancelled", "16"),
    "FRAUD": ("Refused", "FRAUD", "20"),
    "CVC_DECLINED": ("Refused", "CVC Declined", "24"),
    "RESTRICTED_CARD": ("Refused", "Restricted Card", "25"),
    "ISSUER_SUSPECTED_FRAUD": ("Refused", "Issuer Suspected Fraud", "31"),
}

_PATH = re.compile(r"^/v\d+/payments(?:/(?P<details>details)|/(?P<psp>[A-Z0-9]+)/refunds)?$")


def _luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number]
    checksum = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    return len(digits) >= 12 and checksum % 10 == 0


def _b64(value: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def _unb64(value: str) -> dict[str, Any] | None:
    try:
        decoded = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None
    return decoded if isinstance(decoded, dict) else None


def notification_signature(item: dict[str, Any], hmac_key_hex: str) -> str:
    """HMAC of a NotificationRequestItem, computed as Adyen's webhook guide documents it."""
    amount = item.get("amount", {})
    fields = [
        item.get("pspReference", ""),
        item.get("originalReference", ""),
        item.get("merchantAccountCode", ""),
        item.get("merchantReference", ""),
        amount.get("value", ""),
        amount.get("currency", ""),
        item.get("eventCode", ""),
        item.get("success", ""),
    ]
    signing = ":".join(str(f) for f in fields).encode()
    digest = hmac.new(binascii.a2b_hex(hmac_key_hex), signing, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class AdyenDouble(DoubleServer):
    """Adyen Checkout API test double for one merchant account."""

    def __init__(
        self,
        *,
        api_key: str = "AQE_double_key",
        merchant_account: str = "CheckoutLabECOM",
        hang_seconds: float = 10.0,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.api_key = api_key
        self.merchant_account = merchant_account
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    # --- test controls --------------------------------------------------------------------

    @property
    def payments_created(self) -> int:
        """Payments actually processed (idempotent replays excluded)."""
        return len(self.payments)

    @staticmethod
    def shopper_result(action: dict[str, Any], *, authenticated: bool = True) -> dict[str, str]:
        """The ``details`` Adyen Web returns after the shopper handled ``action``."""
        token = action.get("authorisationToken") or action.get("url", "").rsplit("=", 1)[-1]
        result = _b64(
            {
                "transStatus": "Y" if authenticated else "N",
                "token": token,
                "step": action.get("subtype", "redirect"),
            }
        )
        if action.get("type") == "redirect":
            return {"redirectResult": result}
        return {"threeDSResult": result}

    def notification(
        self,
        *,
        event_code: str,
        psp_reference: str,
        merchant_reference: str,
        value: int,
        currency: str,
        success: bool,
        hmac_key_hex: str,
        original_reference: str | None = None,
        reason: str | None = None,
        live: bool = False,
    ) -> bytes:
        """A standard webhook body with one HMAC-signed NotificationRequestItem."""
        item: dict[str, Any] = {
            "amount": {"value": value, "currency": currency},
            "eventCode": event_code,
            "eventDate": "2026-01-01T12:00:00+01:00",
            "merchantAccountCode": self.merchant_account,
            "merchantReference": merchant_reference,
            "pspReference": psp_reference,
            "reason": reason or "",
            "success": "true" if success else "false",
        }
        if original_reference:
            item["originalReference"] = original_reference
        item["additionalData"] = {"hmacSignature": notification_signature(item, hmac_key_hex)}
        body = {
            "live": "true" if live else "false",
            "notificationItems": [{"NotificationRequestItem": item}],
        }
        return json.dumps(body).encode()

    # --- HTTP -----------------------------------------------------------------------------

    def error_reply(self, status: int) -> Reply:
        if status == 500:
            return Reply(status, _error_body(500, "000", "An internal error occurred", "internal"))
        return Reply(status, b"<html><body>Service Unavailable</body></html>")

    def handle(self, request: RecordedRequest) -> Reply:
        if request.header("X-API-Key") != self.api_key:
            return Reply(401, _error_body(401, "000", "HTTP Status Response - Unauthorized"))
        match = _PATH.match(request.path)
        if request.method != "POST" or match is None:
            return Reply(404, _error_body(404, "000", "Not Found", "validation"), replayable=False)
        try:
            body = request.json()
        except ValueError:
            return Reply(400, _error_body(400, "000", "Unable to parse message", "validation"))
        if not isinstance(body, dict) or body.get("merchantAccount", self.merchant_account) != (
            self.merchant_account
        ):
            return Reply(403, _error_body(403, "901", "Invalid Merchant Account", "security"))

        if match["details"]:
            execute = lambda: self._details(body)  # noqa: E731
        elif match["psp"]:
            execute = lambda: self._refund(match["psp"], body)  # noqa: E731
        else:
            execute = lambda: self._payments(body)  # noqa: E731
        reply = self.idempotent(
            request,
            execute,
            in_progress=lambda: Reply(
                422,
                _error_body(422, "704", "request already processed or in progress"),
                replayable=False,
            ),
        )
        key = request.header("Idempotency-Key")
        if key:
            reply = Reply(reply.status, reply.body, {**reply.headers, "Idempotency-Key": key})
        return reply

    # --- /payments ------------------------------------------------------------------------

    def _payments(self, body: dict[str, Any]) -> Reply:
        amount = body.get("amount") or {}
        if "value" not in amount or "currency" not in amount:
            return _validation("100", "Required object 'amount' is not provided.")
        if not body.get("reference"):
            return _validation("130", "Required field 'reference' is not provided.")
        method = body.get("paymentMethod") or {}
        number = str(method.get("encryptedCardNumber", "")).removeprefix("test_")
        if method.get("type") != "scheme" or not number.isdigit() or not _luhn_ok(number):
            return _validation("101", "Invalid card number")

        holder, _, raw = str(method.get("holderName", "APPROVED")).partition(":")
        result_code, reason, reason_code = _HOLDER_NAMES.get(
            holder.strip().upper(), ("Authorised", None, None)
        )
        auth = body.get("authenticationData") or {}
        wants_3ds = number == THREE_DS2_CARD or auth.get("attemptAuthentication") == "always"
        native = (auth.get("threeDSRequestData") or {}).get("nativeThreeDS") == "preferred"

        psp = f"DBL{next(self._ids):013d}"
        payment = {
            "pspReference": psp,
            "merchantReference": body["reference"],
            "amount": dict(amount),
            "outcome": (result_code, reason, reason_code, raw.strip() or None),
            "returnUrl": body.get("returnUrl"),
            "state": "final",
        }
        with self._lock:
            self.payments[psp] = payment
            if wants_3ds and result_code == "Authorised":
                payment["state"] = "identify" if native else "redirect"
                return Reply(200, self._action_response(payment))
            return Reply(200, self._final_response(payment))

    def _action_response(self, payment: dict[str, Any]) -> dict[str, Any]:
        psp = payment["pspReference"]
        base = {"pspReference": psp, "merchantReference": payment["merchantReference"]}
        if payment["state"] == "redirect":
            action = {
                "paymentMethodType": "scheme",
                "type": "redirect",
                "method": "GET",
                "url": f"{self.url}/threeDS2/redirect?token={psp}",
            }
            return base | {"resultCode": "RedirectShopper", "action": action}
        subtype = "fingerprint" if payment["state"] == "identify" else "challenge"
        action = {
            "paymentMethodType": "scheme",
            "type": "threeDS2",
            "subtype": subtype,
            "token": _b64({"threeDSServerTransID": psp, "messageVersion": "2.2.0"}),
            "authorisationToken": psp,
            "paymentData": f"Ab02b4c0!{psp}",
        }
        result_code = "IdentifyShopper" if subtype == "fingerprint" else "ChallengeShopper"
        return base | {"resultCode": result_code, "action": action}

    def _final_response(self, payment: dict[str, Any]) -> dict[str, Any]:
        result_code, reason, reason_code, raw = payment["outcome"]
        response: dict[str, Any] = {
            "pspReference": payment["pspReference"],
            "merchantReference": payment["merchantReference"],
            "resultCode": result_code,
            "amount": payment["amount"],
        }
        if reason:
            response["refusalReason"] = reason
            response["refusalReasonCode"] = reason_code
        if raw:
            response["additionalData"] = {"refusalReasonRaw": raw}
        return response

    # --- /payments/details ----------------------------------------------------------------

    def _details(self, body: dict[str, Any]) -> Reply:
        details = body.get("details") or {}
        encoded = details.get("threeDSResult") or details.get("redirectResult")
        result = _unb64(encoded) if isinstance(encoded, str) else None
        with self._lock:
            payment = self.payments.get(str((result or {}).get("token")))
            if result is None or payment is None or payment["state"] == "final":
                return _validation("000", "Invalid details: no payment awaits these details")
            if payment["state"] == "identify":  # fingerprint done; the issuer wants a challenge
                payment["state"] = "challenge"
                return Reply(200, self._action_response(payment))
            payment["state"] = "final"
            if result.get("transStatus") != "Y":
                payment["outcome"] = ("Refused", "3D Not Authenticated", "11", None)
            return Reply(200, self._final_response(payment))

    # --- refunds --------------------------------------------------------------------------

    def _refund(self, psp: str, body: dict[str, Any]) -> Reply:
        amount = body.get("amount") or {}
        if "value" not in amount or "currency" not in amount:
            return _validation("100", "Required object 'amount' is not provided.")
        with self._lock:
            payment = self.payments.get(psp)
            if payment is None:
                return _validation("167", "Original pspReference required for this operation")
            refund = {
                "merchantAccount": self.merchant_account,
                "paymentPspReference": psp,
                "pspReference": f"DBR{next(self._ids):013d}",
                "reference": body.get("reference"),
                "status": "received",
                "amount": dict(amount),
            }
            self.refunds[refund["pspReference"]] = refund
        return Reply(201, dict(refund))


def _error_body(status: int, code: str, message: str, error_type: str = "security") -> dict:
    return {"status": status, "errorCode": code, "message": message, "errorType": error_type}


def _validation(code: str, message: str) -> Reply:
    return Reply(422, _error_body(422, code, message, "validation"), replayable=False)
