"""Online fraud features: per-customer and per-terminal windows kept incrementally.

:class:`OnlineFeatureStore` computes, for a new transaction, exactly the features that
:func:`checkoutlab.fraud.features.add_features` computes for the same row of the same history
(same :class:`~checkoutlab.fraud.features.FeatureSpec`, same time arithmetic, same ratio, label
and context rules). It keeps, per customer and per terminal, the time-sorted transactions that a
future window can still reach, and forgets the rest:

* a customer keeps ``(time, amount)`` for the largest window (``max(windows)`` days) and, when
  ``COUNTRY`` is a context column, the last time it used each country within that window;
* a terminal keeps ``(time, label, transaction id)`` for ``delay_days + max(windows)`` days.

A window is found with two binary searches on the entity's sorted times, and its count and
sum are one C-level slice sum, so a call costs a few microseconds for typical histories and
memory is proportional to the transactions inside the horizon, never to the full history.

Equality with the batch features holds when transactions are registered (:meth:`update`) in
the batch's time order (ties in input order) and every label that the batch sees in a terminal
window has arrived (labels older than the delay). A label that has not arrived counts as not
fraud, as ``NaN`` does in batch. The store is not thread-safe; wrap it in a lock to share it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from checkoutlab.fraud.features import (
    CUSTOMER_ID,
    DEFAULT_DELAY_DAYS,
    DEFAULT_WINDOWS,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    FeatureSpec,
    encode_context,
    fraud_label,
    is_night,
    is_weekend,
    normalize_country,
    ratio,
    to_ns,
)

__all__ = ["OnlineFeatureStore"]

_MIN_SWEEP_INTERVAL = 1024


class _Customer:
    __slots__ = ("amounts", "countries", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.amounts: list[float] = []
        self.countries: dict[str, int] = {}


class _Terminal:
    __slots__ = ("ids", "labels", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.labels: list[int] = []
        self.ids: list[Hashable] = []


class OnlineFeatureStore:
    """Incremental per-customer and per-terminal windows for online fraud scoring.

    Parameters
    ----------
    windows
        Window lengths in days (as in :func:`~checkoutlab.fraud.features.add_features`).
    delay_days
        Label delay in days: terminal windows end this long before the transaction.
    context_columns
        Platform context columns to encode (subset of ``features.CONTEXT_COLUMNS``). Unlike the
        batch function, the store never guesses them from the input: its output columns are
        fixed by its configuration, see :attr:`columns`.

    Examples
    --------
    >>> from datetime import datetime
    >>> store = OnlineFeatureStore(windows=(1, 7), delay_days=7)
    >>> tx = {"TRANSACTION_ID": 1, "TX_DATETIME": datetime(2018, 4, 1, 3),
    ...       "CUSTOMER_ID": "c1", "TERMINAL_ID": "t1", "TX_AMOUNT": 40.0}
    >>> store.features(tx)["CUSTOMER_ID_NB_TX_1DAY_WINDOW"], store.features(tx)["TX_DURING_NIGHT"]
    (1.0, 1.0)
    >>> store.update(tx, label=None)
    >>> later = {**tx, "TRANSACTION_ID": 2, "TX_DATETIME": datetime(2018, 4, 1, 15),
    ...          "TX_AMOUNT": 60.0}
    >>> store.features(later)["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"]
    50.0
    >>> store.add_label(1, 1)
    True
    """

    def __init__(
        self,
        windows: Sequence[int] = DEFAULT_WINDOWS,
        delay_days: int = DEFAULT_DELAY_DAYS,
        context_columns: Sequence[str] = (),
    ) -> None:
        self.windows = windows
        self.delay_days = delay_days
        self.context_columns = context_columns
        self.spec = FeatureSpec(tuple(windows), delay_days, tuple(context_columns))
        self._customers: dict[Hashable, _Customer] = {}
        self._terminals: dict[Hashable, _Terminal] = {}
        self._tx_index: dict[Hashable, tuple[Hashable, int]] = {}  # id -> (terminal, time)
        self._now: int | None = None  # newest time registered
        self._since_sweep = 0
        self._sweep_after = _MIN_SWEEP_INTERVAL
        spec = self.spec
        self._customer_names = [
            (spec.customer_count(w), spec.customer_mean(w)) for w in spec.windows
        ]
        self._terminal_names = [
            (spec.terminal_count(w), spec.terminal_risk(w)) for w in spec.windows
        ]
        self._stateless = [c for c in spec.context_columns if c != "COUNTRY"]
        self._country = "COUNTRY" in spec.context_columns

    @property
    def columns(self) -> list[str]:
        """Ordered feature names, the same as the batch columns for this configuration."""
        return self.spec.columns

    # ---------------------------------------------------------------------------------------
    def features(self, tx: Mapping[str, Any]) -> dict[str, float]:
        """Features of a transaction that is not registered yet, given everything registered.

        The customer windows include ``tx`` itself (as the batch definition does); the terminal
        windows only use registered transactions, ending ``delay_days`` before ``tx``.
        """
        spec = self.spec
        t = to_ns(tx[TX_DATETIME])
        amount = float(tx[TX_AMOUNT])
        out: dict[str, float] = {
            TX_AMOUNT: amount,
            "TX_DURING_WEEKEND": float(is_weekend(t)),
            "TX_DURING_NIGHT": float(is_night(t)),
        }

        customer = self._customers.get(tx[CUSTOMER_ID])
        times = customer.times if customer else []
        amounts = customer.amounts if customer else []
        stop = bisect_right(times, t)
        for (count_name, mean_name), start in zip(
            self._customer_names, spec.customer_window_starts(t), strict=True
        ):
            first = bisect_right(times, start, 0, stop)
            count = stop - first + 1
            out[count_name] = float(count)
            out[mean_name] = ratio(sum(amounts[first:stop]) + amount, count)

        terminal = self._terminals.get(tx[TERMINAL_ID])
        times = terminal.times if terminal else []
        labels = terminal.labels if terminal else []
        end, starts = spec.terminal_window_bounds(t)
        stop = bisect_right(times, end)
        for (count_name, risk_name), start in zip(self._terminal_names, starts, strict=True):
            first = bisect_right(times, start, 0, stop)
            count = stop - first
            out[count_name] = float(count)
            out[risk_name] = float(ratio(sum(labels[first:stop]), count))

        for column in self._stateless:
            names = spec.context_feature_columns(column)
            out.update(zip(names, encode_context(column, tx.get(column)), strict=True))
        if self._country:
            country = normalize_country(tx.get("COUNTRY"))
            last = customer.countries.get(country) if customer and country else None
            new = country is not None and (last is None or last <= spec.country_window_start(t))
            out[spec.country_column] = 1.0 if new else 0.0
        return out

    def update(self, tx: Mapping[str, Any], label: int | None = None) -> None:
        """Register a transaction (after :meth:`features`), with its fraud label if known."""
        t = to_ns(tx[TX_DATETIME])
        amount = float(tx[TX_AMOUNT])
        customer = self._customers.get(tx[CUSTOMER_ID])
        if customer is None:
            customer = self._customers[tx[CUSTOMER_ID]] = _Customer()
        _insert(customer.times, t, (customer.amounts,), (amount,))
        _evict(customer.times, customer.times[-1] - self.spec.customer_horizon_ns, customer.amounts)
        if self._country:
            country = normalize_country(tx.get("COUNTRY"))
            if country is not None and t > customer.countries.get(country, t - 1):
                customer.countries[country] = t

        terminal = self._terminals.get(tx[TERMINAL_ID])
        if terminal is None:
            terminal = self._terminals[tx[TERMINAL_ID]] = _Terminal()
        tx_id = tx.get(TRANSACTION_ID)
        _insert(terminal.times, t, (terminal.labels, terminal.ids), (fraud_label(label), tx_id))
        horizon = terminal.times[-1] - self.spec.terminal_horizon_ns
        _evict(terminal.times, horizon, terminal.labels, terminal.ids)
        if tx_id is not None:
            self._tx_index[tx_id] = (tx[TERMINAL_ID], t)

        if self._now is None or t > self._now:
            self._now = t
        self._since_sweep += 1
        if self._since_sweep >= self._sweep_after:
            self._sweep()

    def add_label(self, transaction_id: Hashable, label: int | None) -> bool:
        """Set (or correct) the label of a registered transaction.

        Returns ``False`` when the transaction is unknown or already too old to matter.
        """
        entry = self._tx_index.get(transaction_id)
        if entry is None:
            return False
        terminal = self._terminals.get(entry[0])
        if terminal is None:
            return False
        t = entry[1]
        for i in range(bisect_left(terminal.times, t), bisect_right(terminal.times, t)):
            if terminal.ids[i] == transaction_id:
                terminal.labels[i] = fraud_label(label)
                return True
        return False

    def stats(self) -> dict[str, int]:
        """Sizes of the retained state (entities and transactions)."""
        return {
            "customers": len(self._customers),
            "terminals": len(self._terminals),
            "customer_transactions": sum(len(c.times) for c in self._customers.values()),
            "terminal_transactions": sum(len(x.times) for x in self._terminals.values()),
            "labelled_ids": len(self._tx_index),
        }

    # ---------------------------------------------------------------------------------------
    def _sweep(self) -> None:
        """Forget entities and ids no window can reach any more.

        Runs after as many updates as there are retained entries (and at least
        ``_MIN_SWEEP_INTERVAL``), so its cost is amortized O(1) per update.
        """
        self._since_sweep = 0
        if self._now is None:
            return
        customer_limit = self._now - self.spec.customer_horizon_ns
        terminal_limit = self._now - self.spec.terminal_horizon_ns
        for key in [k for k, c in self._customers.items() if c.times[-1] <= customer_limit]:
            del self._customers[key]
        for customer in self._customers.values():
            stale = [k for k, last in customer.countries.items() if last <= customer_limit]
            for k in stale:
                del customer.countries[k]
        for key in [k for k, x in self._terminals.items() if x.times[-1] <= terminal_limit]:
            del self._terminals[key]
        for key in [k for k, (_, t) in self._tx_index.items() if t <= terminal_limit]:
            del self._tx_index[key]
        retained = len(self._tx_index) + len(self._customers) + len(self._terminals)
        self._sweep_after = max(_MIN_SWEEP_INTERVAL, retained)


def _insert(times: list[int], t: int, columns: tuple[list[Any], ...], values: tuple) -> None:
    """Insert ``t`` and its values keeping ``times`` sorted; equal times keep arrival order."""
    if not times or t >= times[-1]:
        times.append(t)
        for column, value in zip(columns, values, strict=True):
            column.append(value)
        return
    i = bisect_right(times, t)  # late arrival: rare
    times.insert(i, t)
    for column, value in zip(columns, values, strict=True):
        column.insert(i, value)


def _evict(times: list[int], limit: int, *columns: list[Any]) -> None:
    """Drop the entries with time <= ``limit`` (they can no longer be in any window)."""
    if times and times[0] <= limit:
        cut = bisect_right(times, limit)
        del times[:cut]
        for column in columns:
            del column[:cut]
