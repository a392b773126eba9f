"""Gateway adapters behind one interface, looked up by name.

Payments store the gateway name with each attempt and routing picks gateways by name, so
adapters are registered here rather than imported where they are used. The sandbox is the
embedded default (tests, ``make demo``); Stripe and Adyen adapters register here too.
"""

from __future__ import annotations

from collections.abc import Callable

from checkoutlab.errors import InvalidRequest
from checkoutlab.payments.gateways.base import (
    ActionOutcome,
    ChargeRequest,
    ChargeStatus,
    Gateway,
    GatewayResult,
    TokenizedCard,
)
from checkoutlab.payments.gateways.sandbox import SandboxGateway

__all__ = [
    "ActionOutcome",
    "ChargeRequest",
    "ChargeStatus",
    "Gateway",
    "GatewayResult",
    "SandboxGateway",
    "TokenizedCard",
    "available_gateways",
    "get_gateway",
]

# Factories, not instances, so adapters that need settings (API keys) build lazily and a
# missing key for one gateway cannot break the others.
_REGISTRY: dict[str, Callable[[], Gateway]] = {
    SandboxGateway.name: SandboxGateway,
}


def available_gateways() -> list[str]:
    return sorted(_REGISTRY)


def get_gateway(name: str) -> Gateway:
    """The adapter registered as ``name``; an unknown name is the caller's mistake (400)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise InvalidRequest(
            f"Unknown gateway {name!r}. Use one of: {', '.join(available_gateways())}.",
            code="unknown_gateway",
            param="gateway",
        ) from None
    return factory()
