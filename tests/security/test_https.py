"""One ``is_https`` (``checkoutlab.deps``) for HSTS, CORS and the dashboard's cookies."""

from __future__ import annotations

import pytest

from checkoutlab.api import cors, security
from checkoutlab.deps import is_https


def test_the_middlewares_use_the_one_helper() -> None:
    assert security.is_https is is_https and cors.is_https is is_https


@pytest.mark.parametrize(
    ("scheme", "forwarded", "trust_proxy", "expected"),
    [
        ("https", None, False, True),
        ("http", None, False, False),
        ("http", b"https", False, False),  # a client's own header is not trusted
        ("http", b"https", True, True),
        ("http", b"HTTPS, http", True, True),  # the first hop is the client's
        ("http", b"http", True, False),
    ],
)
def test_is_https(scheme: str, forwarded: bytes | None, trust_proxy: bool, expected: bool) -> None:
    headers = [(b"x-forwarded-proto", forwarded)] if forwarded else []
    scope = {"type": "http", "scheme": scheme, "headers": headers}
    assert is_https(scope, trust_proxy=trust_proxy) is expected
