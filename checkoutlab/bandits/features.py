"""Context → feature dict for the contextual ordering policies.

One function, :func:`context_features`, turns the context dict the profile builder passes to
``OrderingPolicy.rank`` (``device``, ``location``, ``currency``, ``customer`` and, once the
builder adds it, ``amount``) into a sparse ``{name: value}`` dict that river models read
directly. The learner must call the same function on the logged context before ``update``, so
serving and training see identical features (no train/serve skew).

Features (all one-hot indicators with value 1.0, absent when unknown):

- ``bias``
- ``device=<type>``, ``os=<os>``, ``device_os=<type>/<os>``
- ``apple_pay_ready``, ``google_pay_ready`` (the wallet is usable on this device)
- ``country=<CC>``, ``currency=<CUR>``
- ``amount=<bucket>``: basket size in major units of its currency, buckets ``<20``, ``20-100``,
  ``100-500``, ``500-2000``, ``2000+``
- ``returning`` (payments with this merchant before) and ``last=<method>`` (last method used)

>>> context_features({"device": {"type": "mobile", "os": "ios", "apple_pay": True},
...                   "location": {"country": "nl"}, "amount": {"value": 12500, "currency": "EUR"}})
... # doctest: +NORMALIZE_WHITESPACE
{'bias': 1.0, 'device=mobile': 1.0, 'os=ios': 1.0, 'device_os=mobile/ios': 1.0,
 'apple_pay_ready': 1.0, 'country=NL': 1.0, 'currency=EUR': 1.0, 'amount=100-500': 1.0}
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from babel.numbers import get_currency_precision

#: Upper bounds (major currency units) of the basket-size buckets, and their names.
AMOUNT_BUCKETS: tuple[tuple[float, str], ...] = (
    (20.0, "<20"),
    (100.0, "20-100"),
    (500.0, "100-500"),
    (2000.0, "500-2000"),
    (float("inf"), "2000+"),
)


@lru_cache(maxsize=256)
def _precision(currency: str) -> int:
    try:
        return int(get_currency_precision(currency))
    except Exception:  # an unknown code: assume cents rather than fail a checkout
        return 2


def amount_bucket(value_minor: float, currency: str | None) -> str:
    """Bucket name of an amount given in minor units of ``currency`` (JPY has none)."""
    major = float(value_minor) / 10 ** _precision((currency or "").upper())
    for upper, name in AMOUNT_BUCKETS:
        if major < upper:
            return name
    return AMOUNT_BUCKETS[-1][1]  # pragma: no cover - inf bound catches everything


def context_features(context: dict[str, Any]) -> dict[str, float]:
    """Sparse one-hot features of a checkout context; missing parts are simply left out."""
    x: dict[str, float] = {"bias": 1.0}
    device = context.get("device") or {}
    kind = device.get("type")
    os_name = device.get("os")
    if kind:
        x[f"device={kind}"] = 1.0
    if os_name:
        x[f"os={os_name}"] = 1.0
        if kind:
            x[f"device_os={kind}/{os_name}"] = 1.0
    if device.get("apple_pay"):
        x["apple_pay_ready"] = 1.0
    if device.get("google_pay"):
        x["google_pay_ready"] = 1.0

    country = (context.get("location") or {}).get("country")
    if country:
        x[f"country={country.upper()}"] = 1.0
    amount = context.get("amount") or {}
    currency = context.get("currency") or amount.get("currency")
    if currency:
        x[f"currency={currency.upper()}"] = 1.0
    if amount.get("value") is not None:
        x[f"amount={amount_bucket(amount['value'], amount.get('currency') or currency)}"] = 1.0

    customer = context.get("customer") or {}
    if customer.get("returning"):
        x["returning"] = 1.0
    last = customer.get("last_method")
    if last:
        x[f"last={last}"] = 1.0
    return x
