"""External feeds behind small interfaces: FX reference rates now, a live provider later.

The bundled table is a snapshot of euro reference rates shipped with the package (its date
and source travel with every conversion), so the demo and tests need no network. A live
feed implements ``FxProvider`` and is swapped in without touching the profile builder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Protocol

from babel.numbers import get_territory_currencies


@dataclass(frozen=True)
class FxQuote:
    rate: float
    date: str
    source: str


class FxProvider(Protocol):
    def quote(self, base: str, quote: str) -> FxQuote | None: ...


class BundledReferenceRates:
    """Cross rates through EUR from ``data/reference_rates.json``."""

    def __init__(self) -> None:
        raw = json.loads(
            resources.files("checkoutlab.profile").joinpath("data/reference_rates.json").read_text()
        )
        self.date: str = raw["date"]
        self.source: str = raw["source"]
        self.per_eur: dict[str, float] = {"EUR": 1.0, **raw["rates"]}

    def quote(self, base: str, quote: str) -> FxQuote | None:
        if base not in self.per_eur or quote not in self.per_eur:
            return None
        return FxQuote(self.per_eur[quote] / self.per_eur[base], self.date, self.source)


@lru_cache
def default_fx_provider() -> FxProvider:
    return BundledReferenceRates()


def currency_for_country(country: str | None) -> str | None:
    if not country:
        return None
    currencies = get_territory_currencies(country.upper(), tender=True, non_tender=False)
    return currencies[0] if currencies else None
