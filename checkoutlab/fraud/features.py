"""Fraud features: one definition, used by training (batch) and by online scoring.

The baseline is the feature set of the Fraud Detection Handbook (Le Borgne et al., 2022,
chapter 3, "Baseline feature transformation"), written from its description:

=========================================  ==================================================
column                                     definition
=========================================  ==================================================
``TX_AMOUNT``                              the amount, unchanged
``TX_DURING_WEEKEND``                      1 if the transaction is on a Saturday or Sunday
``TX_DURING_NIGHT``                        1 if its hour is < 6 (00:00:00 to 05:59:59.999...)
``CUSTOMER_ID_NB_TX_{w}DAY_WINDOW``        number of the customer's transactions in
                                           ``(t - w days, t]``, the current one included
``CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW``   their mean amount
``TERMINAL_ID_NB_TX_{w}DAY_WINDOW``        number of the terminal's transactions in
                                           ``(t - d - w days, t - d]``, ``d`` = label delay
``TERMINAL_ID_RISK_{w}DAY_WINDOW``         frauds / count in that window, 0 when the count is 0
=========================================  ==================================================

Exact window definition
-----------------------
Windows are **continuous time intervals on TX_DATETIME** (nanosecond timestamps), not calendar
days: ``w`` days is ``w * 86400`` seconds, left end open, right end closed. This is the
semantics of the Handbook's pandas time-based rolling windows (``rolling("7d")`` on a datetime
index), so a transaction exactly ``w`` days before ``t`` is *outside* the customer window and
one exactly ``d`` days before ``t`` is *inside* the delayed terminal window.

"Transactions of the customer in ``(t - w, t]``" means the current transaction and the ones
that come *before it in time order*. Transactions with equal timestamps are ordered by their
position in the input (stable sort), so of two simultaneous transactions of one customer the
first does not count the second; the online store gets the same result when it is fed
transactions in that order. The terminal window ends ``d >= 1`` days in the past, so it only
ever contains strictly earlier transactions and ties cannot matter there.

Times are wall-clock times: naive timestamps are used as they are; timezone-aware ones are
reduced to their local wall time (``tz_localize(None)``) so that "night" and "weekend" mean
the customer-facing local time of the record. Missing labels (``NaN`` / ``None``) count as
not fraud, exactly as a transaction whose label has not arrived yet in the online store.

Platform context features (only when requested or, in batch, when the column is present)
-----------------------------------------------------------------------------------------
Fixed vocabularies, so that the batch and online encodings cannot drift with the data:

* ``DEVICE_TYPE`` -> ``DEVICE_TYPE_DESKTOP``, ``DEVICE_TYPE_MOBILE``, ``DEVICE_TYPE_TABLET``
  (one-hot, case-insensitive; missing or unknown values give all zeros);
* ``METHOD`` -> ``METHOD_CARD``, ``METHOD_APPLE_PAY``, ``METHOD_GOOGLE_PAY``,
  ``METHOD_BANK_TRANSFER``, ``METHOD_SEPA_DEBIT``, ``METHOD_IDEAL``, ``METHOD_KLARNA``
  (one-hot over the platform's payment methods; unknown or missing gives all zeros);
* ``VERIFICATION_PASSED`` -> ``TX_VERIFICATION_PASSED`` (1 for true / 1 / "true" / "yes" /
  "passed", 0 for anything else, including missing);
* ``COUNTRY`` -> ``CUSTOMER_ID_NEW_COUNTRY_{W}DAY_WINDOW`` with ``W`` the largest window:
  1 if none of the customer's earlier transactions in ``(t - W, t]`` came from this country
  (case-insensitive ISO code), 0 otherwise and 0 when the country is missing.

Both paths share this module: the time arithmetic (:func:`to_ns`, :func:`is_weekend`,
:func:`is_night`), the window bounds (:class:`FeatureSpec`), the ratio rule (:func:`ratio`),
the label rule (:func:`fraud_label`) and the context encoders (:func:`encode_context`). The
batch path applies the scalar encoders to the distinct values of a column, never row by row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import pandas as pd

TRANSACTION_ID: Final = "TRANSACTION_ID"
TX_DATETIME: Final = "TX_DATETIME"
CUSTOMER_ID: Final = "CUSTOMER_ID"
TERMINAL_ID: Final = "TERMINAL_ID"
TX_AMOUNT: Final = "TX_AMOUNT"
TX_FRAUD: Final = "TX_FRAUD"

#: Columns :func:`add_features` needs (``TRANSACTION_ID`` is only needed by the online store,
#: to attach labels that arrive later).
REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    TX_DATETIME,
    CUSTOMER_ID,
    TERMINAL_ID,
    TX_AMOUNT,
    TX_FRAUD,
)

DEFAULT_WINDOWS: Final[tuple[int, ...]] = (1, 7, 30)
DEFAULT_DELAY_DAYS: Final = 7

NS_PER_SECOND: Final = 1_000_000_000
HOUR_NS: Final = 3_600 * NS_PER_SECOND
DAY_NS: Final = 86_400 * NS_PER_SECOND
NIGHT_END_HOUR: Final = 6
#: 1970-01-01 was a Thursday: Monday = 0, ..., Thursday = 3, Saturday = 5, Sunday = 6.
_EPOCH_WEEKDAY: Final = 3
_EPOCH: Final = datetime(1970, 1, 1)  # naive on purpose: wall-clock times

DEVICE_TYPES: Final[tuple[str, ...]] = ("desktop", "mobile", "tablet")
#: The platform's payment methods (``checkoutlab.merchants.schemas.MethodType``), frozen here so
#: that adding a method is a deliberate feature change; a test checks they stay in sync.
METHODS: Final[tuple[str, ...]] = (
    "card",
    "apple_pay",
    "google_pay",
    "bank_transfer",
    "sepa_debit",
    "ideal",
    "klarna",
)
CONTEXT_COLUMNS: Final[tuple[str, ...]] = (
    "DEVICE_TYPE",
    "METHOD",
    "VERIFICATION_PASSED",
    "COUNTRY",
)
_TRUE_STRINGS: Final = frozenset({"1", "true", "t", "yes", "y", "passed"})


# --------------------------------------------------------------------------------------------
# Scalar-or-vector definitions shared by both paths


def to_ns(value: Any) -> int:
    """A transaction time as integer nanoseconds since 1970-01-01 (wall-clock time).

    Accepts ``datetime`` (and ``pd.Timestamp``), ``np.datetime64``, ISO strings, or an ``int``
    that is already nanoseconds.
    """
    if value is pd.NaT:
        raise ValueError("TX_DATETIME is missing (NaT)")
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is not None:
            value = value.tz_localize(None)
        return int(value.value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.replace(tzinfo=None)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, np.datetime64 | str):
        return to_ns(pd.Timestamp(value))
    raise TypeError(f"TX_DATETIME must be a datetime, got {type(value).__name__}: {value!r}")


def datetime_ns(values: pd.Series) -> np.ndarray:
    """A datetime64 column as int64 nanoseconds (wall-clock time): the batch :func:`to_ns`."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        raise ValueError(
            f"column {values.name} must be datetime64, got {values.dtype}; "
            "parse it with pandas.to_datetime first"
        )
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_localize(None)
    missing = values.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"column {values.name} has a missing time at row {values.index[missing][0]!r}"
        )
    return values.dt.as_unit("ns").to_numpy().view(np.int64)


def is_weekend(t_ns: Any) -> Any:
    """Saturday or Sunday; works on an ``int`` or an int64 array of nanoseconds."""
    return (t_ns // DAY_NS + _EPOCH_WEEKDAY) % 7 >= 5


def is_night(t_ns: Any) -> Any:
    """Hour of day < 6; works on an ``int`` or an int64 array of nanoseconds."""
    return t_ns % DAY_NS < NIGHT_END_HOUR * HOUR_NS


def ratio(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator``, and 0 where the denominator is 0 (scalars or arrays)."""
    if isinstance(denominator, int | float | np.number):  # one transaction (online)
        return numerator / denominator if denominator else 0.0
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(den.shape), where=den != 0)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fraud_label(value: Any) -> int:
    """A label as 0/1: missing (not known yet) and 0 are not fraud, anything > 0 is."""
    if _missing(value):
        return 0
    return 1 if float(value) > 0 else 0


def _one_hot(vocabulary: Sequence[str]) -> Callable[[Any], tuple[float, ...]]:
    def encode(value: Any) -> tuple[float, ...]:
        key = None if _missing(value) else str(value).strip().lower()
        return tuple(1.0 if key == v else 0.0 for v in vocabulary)

    return encode


def _verification(value: Any) -> tuple[float, ...]:
    if _missing(value):
        return (0.0,)
    if isinstance(value, str):
        return (1.0 if value.strip().lower() in _TRUE_STRINGS else 0.0,)
    return (1.0 if value == 1 else 0.0,)  # bool, numpy bool, 0/1


def normalize_country(value: Any) -> str | None:
    """Upper-case ISO country code, or ``None`` when missing or empty."""
    if _missing(value):
        return None
    text = str(value).strip().upper()
    return text or None


#: Stateless context encoders: source column -> (feature columns, scalar encoder).
_STATELESS_CONTEXT: Final[dict[str, tuple[tuple[str, ...], Callable[[Any], tuple[float, ...]]]]] = {
    "DEVICE_TYPE": (
        tuple(f"DEVICE_TYPE_{v.upper()}" for v in DEVICE_TYPES),
        _one_hot(DEVICE_TYPES),
    ),
    "METHOD": (tuple(f"METHOD_{v.upper()}" for v in METHODS), _one_hot(METHODS)),
    "VERIFICATION_PASSED": (("TX_VERIFICATION_PASSED",), _verification),
}


def encode_context(column: str, value: Any) -> tuple[float, ...]:
    """Encode one value of a stateless context column (``DEVICE_TYPE``, ``METHOD``, ...)."""
    return _STATELESS_CONTEXT[column][1](value)


# --------------------------------------------------------------------------------------------
# The specification: windows, delay, context columns, column names and window bounds


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{what} must be a positive whole number of days, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class FeatureSpec:
    """Windows (days), label delay (days) and context columns: everything that defines features.

    Parameters
    ----------
    windows
        Window lengths in days, in the order their columns appear.
    delay_days
        Label delay: terminal windows end this many days before the transaction (>= 1, so the
        current transaction and its label are never part of them).
    context_columns
        Platform context columns to encode, a subset of :data:`CONTEXT_COLUMNS`.

    Examples
    --------
    >>> spec = FeatureSpec(windows=(1, 7, 30), delay_days=7)
    >>> len(spec.columns), spec.columns[3], spec.columns[-1]
    (15, 'CUSTOMER_ID_NB_TX_1DAY_WINDOW', 'TERMINAL_ID_RISK_30DAY_WINDOW')
    """

    windows: tuple[int, ...] = DEFAULT_WINDOWS
    delay_days: int = DEFAULT_DELAY_DAYS
    context_columns: tuple[str, ...] = ()
    columns: list[str] = field(init=False, repr=False, compare=False)
    window_ns: tuple[int, ...] = field(init=False, repr=False, compare=False)
    delay_ns: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        windows = tuple(_positive_int(w, "each window") for w in self.windows)
        if not windows or len(set(windows)) != len(windows):
            raise ValueError(f"windows must be distinct and non-empty, got {self.windows!r}")
        unknown = [c for c in self.context_columns if c not in CONTEXT_COLUMNS]
        if unknown:
            raise ValueError(f"unknown context column(s) {unknown}; known: {list(CONTEXT_COLUMNS)}")
        context = tuple(c for c in CONTEXT_COLUMNS if c in self.context_columns)
        object.__setattr__(self, "windows", windows)
        object.__setattr__(self, "delay_days", _positive_int(self.delay_days, "delay_days"))
        object.__setattr__(self, "context_columns", context)
        object.__setattr__(self, "columns", self._columns())
        object.__setattr__(self, "window_ns", tuple(w * DAY_NS for w in windows))
        object.__setattr__(self, "delay_ns", self.delay_days * DAY_NS)

    # -- names --------------------------------------------------------------------------------
    @staticmethod
    def customer_count(w: int) -> str:
        return f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"

    @staticmethod
    def customer_mean(w: int) -> str:
        return f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"

    @staticmethod
    def terminal_count(w: int) -> str:
        return f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"

    @staticmethod
    def terminal_risk(w: int) -> str:
        return f"TERMINAL_ID_RISK_{w}DAY_WINDOW"

    @property
    def country_column(self) -> str:
        return f"CUSTOMER_ID_NEW_COUNTRY_{self.max_window}DAY_WINDOW"

    def context_feature_columns(self, column: str) -> tuple[str, ...]:
        if column == "COUNTRY":
            return (self.country_column,)
        return _STATELESS_CONTEXT[column][0]

    def _columns(self) -> list[str]:
        cols = [TX_AMOUNT, "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
        for w in self.windows:
            cols += [self.customer_count(w), self.customer_mean(w)]
        for w in self.windows:
            cols += [self.terminal_count(w), self.terminal_risk(w)]
        for c in self.context_columns:
            cols += self.context_feature_columns(c)
        return cols

    # -- window bounds (ints or int64 arrays of nanoseconds) ------------------------------------
    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def customer_horizon_ns(self) -> int:
        """Customer history older than this (before the newest transaction) is never used."""
        return self.max_window * DAY_NS

    @property
    def terminal_horizon_ns(self) -> int:
        """Terminal history older than this (before the newest transaction) is never used."""
        return (self.delay_days + self.max_window) * DAY_NS

    def customer_window_starts(self, t: Any) -> list[Any]:
        """Exclusive left ends of the customer windows ``(t - w, t]``, one per window."""
        return [t - w for w in self.window_ns]

    def country_window_start(self, t: Any) -> Any:
        """Exclusive left end of the new-country look-back ``(t - W, t]``, ``W`` = max window."""
        return t - self.customer_horizon_ns

    def terminal_window_bounds(self, t: Any) -> tuple[Any, list[Any]]:
        """``(end, starts)`` of the terminal windows ``(t - d - w, t - d]`` (end inclusive)."""
        end = t - self.delay_ns
        return end, [end - w for w in self.window_ns]


def feature_columns(
    *,
    windows: Iterable[int] = DEFAULT_WINDOWS,
    delay_days: int = DEFAULT_DELAY_DAYS,
    context_columns: Iterable[str] = (),
) -> list[str]:
    """Ordered feature columns for a configuration."""
    return FeatureSpec(tuple(windows), delay_days, tuple(context_columns)).columns


#: The Handbook's 15 baseline features, in the Handbook's order (windows 1, 7, 30; delay 7).
FEATURE_COLUMNS: Final[list[str]] = feature_columns()


# --------------------------------------------------------------------------------------------
# Batch


def _map_distinct(values: pd.Series, encode: Callable[[Any], Any], width: int) -> np.ndarray:
    """Apply a scalar encoder to each distinct value of a column: ``(n, width)`` float array."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([encode(u) for u in uniques] + [encode(None)], dtype=np.float64)
    table = table.reshape(len(uniques) + 1, width)
    return table[np.where(codes >= 0, codes, len(uniques))]


def _entity_codes(values: pd.Series) -> np.ndarray:
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError(
            f"column {values.name} has a missing id at row {values.index[codes < 0][0]!r}"
        )
    return codes.astype(np.int64)


class _Clock:
    """Rows in time order (ties in input order) and the rank of each row's time.

    Bounds are looked up on the time-sorted rows, so every ``searchsorted`` gets sorted queries.
    """

    def __init__(self, t: np.ndarray) -> None:
        self.order = np.argsort(t, kind="stable")
        self.sorted_t = t[self.order]
        new = np.ones(t.size, dtype=bool)
        new[1:] = self.sorted_t[1:] != self.sorted_t[:-1]
        self.distinct = self.sorted_t[new]
        self.rank = np.empty(t.size, dtype=np.int64)  # index of the row's time in ``distinct``
        self.rank[self.order] = np.cumsum(new) - 1

    def count_le(self, bound: np.ndarray) -> np.ndarray:
        """Number of distinct times <= ``bound`` (given per time-sorted row), in input order."""
        out = np.empty(bound.size, dtype=np.int64)
        out[self.order] = np.searchsorted(self.distinct, bound, side="right")
        return out


class _Timeline:
    """Rows of one entity kind sorted by (entity, time, input order), searchable by time.

    A row's key is ``entity * M + rank(time)``, so "first row of the row's entity with time >
    bound" is one ``searchsorted`` for all rows at once, without per-entity loops and without
    overflowing int64; the queries come out sorted too.
    """

    def __init__(self, clock: _Clock, entity: np.ndarray) -> None:
        self.m = clock.distinct.size + 1
        self.perm = clock.order[np.argsort(entity[clock.order], kind="stable")]
        self.entity = entity[self.perm]
        self.keys = self.entity * self.m + clock.rank[self.perm]
        self.position = np.arange(entity.size)

    def first_after(self, count_le: np.ndarray) -> np.ndarray:
        """Sorted index of the first row of the entity with a time above the bound."""
        return np.searchsorted(self.keys, self.entity * self.m + count_le[self.perm], side="left")

    def group_starts(self) -> np.ndarray:
        starts = np.ones(self.entity.size, dtype=bool)
        starts[1:] = self.entity[1:] != self.entity[:-1]
        return starts


def add_features(
    df: pd.DataFrame,
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    delay_days: int = DEFAULT_DELAY_DAYS,
    context_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Return a copy of ``df`` (same rows, same order) with the feature columns added.

    ``context_columns=None`` encodes every column of :data:`CONTEXT_COLUMNS` that ``df`` has;
    pass a list (possibly empty) to choose. The columns added are
    ``FeatureSpec(windows, delay_days, context).columns`` minus ``TX_AMOUNT`` (kept as is).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; features need {list(REQUIRED_COLUMNS)}")
    if context_columns is None:
        context_columns = [c for c in CONTEXT_COLUMNS if c in df.columns]
    absent = [c for c in context_columns if c not in df.columns]
    if absent:
        raise ValueError(f"context column(s) {absent} requested but not in the data")
    spec = FeatureSpec(tuple(windows), delay_days, tuple(context_columns))

    out = df.copy()
    t = datetime_ns(df[TX_DATETIME])
    amount = pd.to_numeric(df[TX_AMOUNT], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(amount)
    if bad.any():
        row = df.index[bad][0]
        raise ValueError(f"column {TX_AMOUNT} has a missing or non-numeric value at row {row!r}")
    label = _map_distinct(df[TX_FRAUD], fraud_label, 1)[:, 0].astype(np.int64)
    n = t.size
    new: dict[str, np.ndarray] = {
        TX_AMOUNT: amount,
        "TX_DURING_WEEKEND": is_weekend(t).astype(np.float64),
        "TX_DURING_NIGHT": is_night(t).astype(np.float64),
    }
    clock = _Clock(t)

    # Customers: the current row and earlier rows (time order) with time in (t - w, t].
    cust = _Timeline(clock, _entity_codes(df[CUSTOMER_ID]))
    amounts = amount[cust.perm]
    cumulative = pd.Series(amounts).groupby(cust.entity, sort=False).cumsum().to_numpy()
    before = np.zeros(n)  # sum of the entity's amounts before each row
    before[1:] = cumulative[:-1]
    before[cust.group_starts()] = 0.0
    for w, start in zip(spec.windows, spec.customer_window_starts(clock.sorted_t), strict=True):
        first = cust.first_after(clock.count_le(start))
        count = cust.position - first + 1
        total = cumulative - before[first]
        _scatter(new, spec.customer_count(w), cust.perm, count.astype(np.float64))
        _scatter(new, spec.customer_mean(w), cust.perm, ratio(total, count))

    # Terminals: rows with time in (t - d - w, t - d]; all strictly earlier since d >= 1 day.
    term = _Timeline(clock, _entity_codes(df[TERMINAL_ID]))
    frauds_before = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(label[term.perm], out=frauds_before[1:])
    end, starts = spec.terminal_window_bounds(clock.sorted_t)
    stop = term.first_after(clock.count_le(end))
    for w, start in zip(spec.windows, starts, strict=True):
        first = term.first_after(clock.count_le(start))
        count = stop - first
        frauds = frauds_before[stop] - frauds_before[first]
        _scatter(new, spec.terminal_count(w), term.perm, count.astype(np.float64))
        _scatter(new, spec.terminal_risk(w), term.perm, ratio(frauds, count))

    for column in spec.context_columns:
        names = spec.context_feature_columns(column)
        if column == "COUNTRY":
            new[names[0]] = _new_country(df, t, clock, cust, spec)
        else:
            encoded = _map_distinct(df[column], _STATELESS_CONTEXT[column][1], len(names))
            for i, name in enumerate(names):
                new[name] = encoded[:, i]

    for name in spec.columns:
        out[name] = new[name]
    return out


def _scatter(new: dict[str, np.ndarray], name: str, perm: np.ndarray, values: np.ndarray) -> None:
    column = np.empty(perm.size, dtype=np.float64)
    column[perm] = values
    new[name] = column


def _new_country(
    df: pd.DataFrame, t: np.ndarray, clock: _Clock, cust: _Timeline, spec: FeatureSpec
) -> np.ndarray:
    """1 where the customer has no earlier row in (t - W, t] from the same (non-missing) country."""
    country = _map_distinct_codes(df["COUNTRY"], normalize_country)
    customer = np.empty_like(cust.entity)
    customer[cust.perm] = cust.entity
    rank_in_time = np.empty(t.size, dtype=np.int64)
    rank_in_time[clock.order] = np.arange(t.size)
    # (customer, country, time order): the previous row of a pair is its latest earlier row.
    order = np.lexsort((rank_in_time, country, customer))
    same_pair = np.zeros(t.size, dtype=bool)
    same_pair[1:] = (customer[order][1:] == customer[order][:-1]) & (
        country[order][1:] == country[order][:-1]
    )
    previous = np.empty(t.size, dtype=np.int64)
    previous[1:] = t[order][:-1]
    ordered_t = t[order]
    seen = same_pair & (previous > spec.country_window_start(ordered_t))
    result = np.empty(t.size, dtype=np.float64)
    result[order] = np.where(seen, 0.0, 1.0)
    result[country < 0] = 0.0
    return result


def _map_distinct_codes(values: pd.Series, normalize: Callable[[Any], str | None]) -> np.ndarray:
    """Integer code of each row's normalized value, -1 where it normalizes to ``None``."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    normalized = [normalize(u) for u in uniques]
    ids = {v: i for i, v in enumerate(dict.fromkeys(x for x in normalized if x is not None))}
    table = np.array([ids.get(v, -1) for v in normalized] + [-1], dtype=np.int64)
    return table[np.where(codes >= 0, codes, len(uniques))]
