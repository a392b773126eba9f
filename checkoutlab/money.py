"""Minor ↔ major currency units, one definition for every domain (JPY has 0 decimals)."""

from __future__ import annotations

from babel.numbers import get_currency_precision


def to_major(value_minor: float, currency: str) -> float:
    return value_minor / 10 ** get_currency_precision(currency)


def to_minor(value_major: float, currency: str) -> int:
    return round(value_major * 10 ** get_currency_precision(currency))
