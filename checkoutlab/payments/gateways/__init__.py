"""Gateway adapters behind one interface, looked up by name.

Payments store the gateway name with each attempt and routing picks gateways by name, so
adapters are registered here rather than imported where they are used. The sandbox is the
embedded default (tests, ``make demo``). The Stripe and Adyen adapters take their settings
as keyword arguments (or one ``settings=`` object), for example
``get_gateway("stripe", api_key="sk_test_...", timeout=5)`` or
``get_gateway("adyen", settings=AdyenSettings(...))``; their modules (and SDKs) are imported
only when first asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checkoutlab.errors import InvalidRequest
from checkoutlab.payments.gateways.base import (
    ActionOutcome,
    ChargeRequest,
    ChargeStatus,
    Gateway,
    GatewayResult,
    RefundResult,
    TokenizedCard,
    WebhookEvent,
)
from checkoutlab.payments.gateways.sandbox import SandboxGateway

__all__ = [
    "ActionOutcome",
    "ChargeRequest",
    "ChargeStatus",
    "Gateway",
    "GatewayResult",
    "RefundResult",
    "SandboxGateway",
    "TokenizedCard",
    "WebhookEvent",
    "available_gateways",
    "get_gateway",
]


def _stripe(**options: Any) -> Gateway:
    from checkoutlab.payments.gateways.stripe_gateway import StripeGateway

    return StripeGateway(**options)


def _adyen(**options: Any) -> Gateway:
    from checkoutlab.payments.gateways.adyen_gateway import AdyenGateway

    return AdyenGateway(**options)


# Factories, not instances, so adapters that need settings (API keys) build lazily and a
# missing key or SDK for one gateway cannot break the others.
_REGISTRY: dict[str, Callable[..., Gateway]] = {
    SandboxGateway.name: SandboxGateway,
    "stripe": _stripe,
    "adyen": _adyen,
}


def available_gateways() -> list[str]:
    return sorted(_REGISTRY)


def get_gateway(name: str, /, **options: Any) -> Gateway:
    """The adapter registered as ``name``; an unknown name is the caller's mistake (400).

    ``options`` go to the adapter's constructor: the sandbox takes none it needs, Stripe
    and Adyen need their settings (a ``pydantic.ValidationError`` names what is missing).
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InvalidRequest(
            f"Unknown gateway {name!r}. Use one of: {', '.join(available_gateways())}.",
            code="unknown_gateway",
            param="gateway",
        ) from None
    return factory(**options)
