"""Test doubles of the payment providers' HTTP APIs, for the gateway adapter tests.

Each is a small HTTP server on 127.0.0.1 (ephemeral port) that answers as the provider's
public API reference documents, so the real ``stripe`` and ``Adyen`` SDKs can be exercised
offline, including 5xx answers, hangs and malformed bodies. They are imitations written from
the documentation, not the services: a test passing against them shows the adapter handles
the documented behaviour, nothing more.
"""

from ._server import DoubleServer, RecordedRequest, Reply
from .adyen_double import THREE_DS2_CARD, AdyenDouble
from .stripe_double import StripeDouble

__all__ = [
    "THREE_DS2_CARD",
    "AdyenDouble",
    "DoubleServer",
    "RecordedRequest",
    "Reply",
    "StripeDouble",
]
