"""The merchant-side signature helper: Stripe's scheme, constant-time, with tolerance."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from checkoutlab.webhooks.signing import (
    SignatureVerificationError,
    generate_secret,
    signature_header,
    verify_signature,
)

SECRET = "whsec_merchant_test_secret"
BODY = b'{"id":"evt_1","object":"event","type":"payment.succeeded"}'
T = 1_800_000_000


def test_header_is_an_hmac_of_timestamp_dot_body() -> None:
    header = signature_header(BODY, SECRET, timestamp=T)
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={T},v1={expected}"


def test_a_valid_signature_verifies_and_returns_its_timestamp() -> None:
    header = signature_header(BODY, SECRET, timestamp=T)
    assert verify_signature(BODY, header, SECRET, now=T + 299) == T
    assert verify_signature(BODY.decode(), header, SECRET, now=T) == T


@pytest.mark.parametrize(
    ("payload", "header", "secret", "now"),
    [
        (BODY + b" ", signature_header(BODY, SECRET, timestamp=T), SECRET, T),  # tampered body
        (BODY, signature_header(BODY, "whsec_other", timestamp=T), SECRET, T),  # other secret
        (BODY, signature_header(BODY, SECRET, timestamp=T), SECRET, T + 301),  # too old
        (BODY, signature_header(BODY, SECRET, timestamp=T), SECRET, T - 301),  # from the future
        (
            BODY,
            signature_header(BODY, SECRET, timestamp=T).replace(f"t={T}", f"t={T + 1}"),
            SECRET,
            T,
        ),
        (BODY, None, SECRET, T),
        (BODY, "", SECRET, T),
        (BODY, "garbage", SECRET, T),
        (BODY, f"t=soon,v1={'0' * 64}", SECRET, T),
        (BODY, f"t={T}", SECRET, T),  # no signature
        (BODY, f"t={T},v0={'0' * 64}", SECRET, T),  # unknown scheme only
    ],
)
def test_anything_else_is_refused(
    payload: bytes, header: str | None, secret: str, now: int
) -> None:
    with pytest.raises(SignatureVerificationError):
        verify_signature(payload, header, secret, now=now)


def test_one_matching_signature_among_several_is_enough() -> None:
    good = signature_header(BODY, SECRET, timestamp=T).split(",")[1]
    header = f"t={T},v1={'0' * 64},{good}"
    assert verify_signature(BODY, header, SECRET, now=T) == T


def test_tolerance_none_skips_the_age_check() -> None:
    header = signature_header(BODY, SECRET, timestamp=T)
    assert verify_signature(BODY, header, SECRET, tolerance=None, now=T + 10**6) == T


def test_generated_secrets_are_prefixed_and_random() -> None:
    secrets = {generate_secret() for _ in range(20)}
    assert len(secrets) == 20
    assert all(s.startswith("whsec_") and len(s) >= 40 for s in secrets)
