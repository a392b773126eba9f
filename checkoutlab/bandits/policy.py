"""The ``OrderingPolicy`` seam: rank the eligible methods and say how likely the first was.

Every policy returns the propensity of the method it put first, so the decision log can
later evaluate any other policy offline. The two policies here are deterministic
(propensity 1.0); the river bandits arrive behind the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from checkoutlab.merchants.schemas import MethodType


@dataclass(frozen=True)
class Ranking:
    order: list[MethodType]
    propensity: float
    policy: str
    policy_version: str


class OrderingPolicy(Protocol):
    name: str

    def rank(self, methods: list[MethodType], context: dict[str, Any]) -> Ranking: ...


class MerchantOrderPolicy:
    """The merchant's configured order, untouched."""

    name = "merchant_order"
    version = "1"

    def rank(self, methods: list[MethodType], context: dict[str, Any]) -> Ranking:
        return Ranking(list(methods), 1.0, self.name, self.version)


class ContextRulesPolicy:
    """Hand-written context heuristics over the merchant's order.

    Wallets the device can actually use go first on mobile (Apple Pay on iOS and macOS,
    Google Pay elsewhere): a one-tap wallet beats typing a card on a phone. A returning
    customer's last successful method goes first otherwise.
    """

    name = "context_rules"
    version = "1"

    def rank(self, methods: list[MethodType], context: dict[str, Any]) -> Ranking:
        device = context.get("device", {})
        front: list[MethodType] = []
        if device.get("type") in ("mobile", "tablet"):
            wallets = [MethodType.apple_pay, MethodType.google_pay]
            if device.get("os") not in ("ios", "macos"):
                wallets.reverse()
            front += [w for w in wallets if w in methods]
        last = context.get("customer", {}).get("last_method")
        if last in methods and last not in front:
            front.append(MethodType(last))
        order = front + [m for m in methods if m not in front]
        return Ranking(order, 1.0, self.name, self.version)


POLICIES: dict[str, type[MerchantOrderPolicy] | type[ContextRulesPolicy]] = {
    MerchantOrderPolicy.name: MerchantOrderPolicy,
    ContextRulesPolicy.name: ContextRulesPolicy,
}


def get_policy(name: str) -> OrderingPolicy:
    return POLICIES[name]()
