"""Which payment methods a shopper can use at all, before any ordering.

Eligibility is about facts (a wallet the device does not have, iDEAL outside EUR), not
preferences; merchant rules and ordering policies work on what is left.
"""

from __future__ import annotations

from typing import Any

from checkoutlab.merchants.schemas import MethodType

_CURRENCIES: dict[MethodType, frozenset[str]] = {
    MethodType.ideal: frozenset({"EUR"}),
    MethodType.sepa_debit: frozenset({"EUR"}),
    MethodType.klarna: frozenset({"EUR", "USD", "GBP", "SEK", "NOK", "DKK", "CHF", "AUD"}),
}


def is_eligible(method: MethodType, *, currency: str, context: dict[str, Any]) -> bool:
    device = context.get("device", {})
    if method is MethodType.apple_pay and not device.get("apple_pay"):
        return False
    if method is MethodType.google_pay and not device.get("google_pay"):
        return False
    allowed = _CURRENCIES.get(method)
    return allowed is None or currency in allowed
