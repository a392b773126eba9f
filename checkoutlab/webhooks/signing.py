"""Signatures on the webhooks Checkout Lab sends to merchants, in Stripe's scheme.

``Checkoutlab-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``: the
timestamp is signed with the body, so a captured request cannot be replayed after the
tolerance window, and the HMAC is over the raw bytes, so the receiver must verify before
parsing JSON (a re-serialised body would not match). Merchants already verifying Stripe
webhooks can reuse their code with a different header name.

This module uses the standard library only, so a merchant can ``pip install checkoutlab``
and call :func:`verify_signature`, or copy the function into their own server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "SignatureVerificationError",
    "generate_secret",
    "sign",
    "signature_header",
    "verify_signature",
]

SIGNATURE_HEADER = "Checkoutlab-Signature"
DEFAULT_TOLERANCE = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
_SCHEME = "v1"


class SignatureVerificationError(ValueError):
    """The signature header is missing, malformed, wrong, or outside the tolerance."""


def generate_secret() -> str:
    """A fresh random endpoint secret (``whsec_`` and 32 random bytes, URL-safe)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<payload>"`` under ``secret``."""
    message = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Checkoutlab-Signature`` value for ``payload``, signed now or at ``timestamp``."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{_SCHEME}={sign(payload, secret, t)}"


def verify_signature(
    payload: bytes | str,
    header: str | None,
    secret: str,
    tolerance: int | None = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> int:
    """Check a ``Checkoutlab-Signature`` header against the raw request body.

    Returns the signed timestamp. Raises :class:`SignatureVerificationError` when the header
    is missing or malformed, no ``v1`` signature matches (compared in constant time), or the
    timestamp is further than ``tolerance`` seconds from ``now`` (``None`` disables the age
    check; do that only in tests). Several ``v1`` entries are accepted, so a secret can be
    rolled without downtime.

    Examples
    --------
    >>> secret = "whsec_test"
    >>> body = b'{"id": "evt_1", "type": "payment.succeeded"}'
    >>> header = signature_header(body, secret, timestamp=1_700_000_000)
    >>> verify_signature(body, header, secret, now=1_700_000_010)
    1700000000
    >>> verify_signature(body + b" ", header, secret, now=1_700_000_010)
    Traceback (most recent call last):
    ...
    checkoutlab.webhooks.signing.SignatureVerificationError: No signature matches the payload.
    """
    if not header:
        raise SignatureVerificationError(f"No {SIGNATURE_HEADER} header.")
    if isinstance(payload, str):
        payload = payload.encode()
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureVerificationError(
                    "The header's timestamp is not a number."
                ) from None
        elif key == _SCHEME:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureVerificationError(
            f"The {SIGNATURE_HEADER} header needs a timestamp (t=) and a {_SCHEME} signature."
        )
    expected = sign(payload, secret, timestamp)
    # Every candidate is compared, so the time taken does not depend on which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureVerificationError("No signature matches the payload.")
    current = time.time() if now is None else now
    if tolerance is not None and abs(current - timestamp) > tolerance:
        raise SignatureVerificationError("The signature's timestamp is outside the tolerance.")
    return timestamp
