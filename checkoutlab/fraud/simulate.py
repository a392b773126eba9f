"""Synthetic card transactions with labelled fraud, after the Fraud Detection Handbook.

Written from the description in Le Borgne, Siblini, Lebichot and Bontempi, *Reproducible
Machine Learning for Credit Card Fraud Detection - Practical Handbook* (2022), chapter
"Transaction data simulator" (not from its GPL-3.0 code):

* customers and terminals sit on a 100 x 100 grid; a customer pays at the terminals within
  ``radius`` of it, chosen uniformly;
* a customer's amounts are Normal(mean, mean / 2) with mean ~ U(5, 100) (a negative draw is
  replaced by U(0, 2 * mean)); its number of transactions per day is Poisson with a mean
  ~ U(0, 4); the time of day is Normal(noon, 20000 s), and draws outside the day are dropped;
* three fraud scenarios label the transactions (``TX_FRAUD``, ``TX_FRAUD_SCENARIO``):

  1. every amount above 220 is fraud;
  2. each day two random terminals are compromised: all their transactions in the next 28 days
     are fraud;
  3. each day three random customers are compromised: over the next 14 days a third of their
     transactions have their amount multiplied by 5 and are fraud.

  A later scenario overrides an earlier one's label, so each fraud carries one scenario.

The output follows the Handbook's transaction format (see :mod:`checkoutlab.fraud.data`).
Everything is vectorized with numpy: the loops run over days or compromise events, never over
transactions, so the default run (about 1.75 million transactions) takes seconds.

Examples
--------
>>> tx = simulate(n_customers=50, n_terminals=100, n_days=10, seed=1)
>>> list(tx.columns[:5])
['TRANSACTION_ID', 'TX_DATETIME', 'CUSTOMER_ID', 'TERMINAL_ID', 'TX_AMOUNT']
>>> tx.equals(simulate(n_customers=50, n_terminals=100, n_days=10, seed=1))
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

__all__ = [
    "TRANSACTION_COLUMNS",
    "SimulationResult",
    "add_frauds",
    "available_terminals",
    "draw_compromises",
    "generate_customer_profiles",
    "generate_terminal_profiles",
    "generate_transactions",
    "simulate",
    "simulate_dataset",
]

SECONDS_PER_DAY = 86_400
GRID_SIZE = 100.0
TIME_OF_DAY_MEAN = SECONDS_PER_DAY / 2
TIME_OF_DAY_STD = 20_000.0

FRAUD_AMOUNT_THRESHOLD = 220.0
COMPROMISED_TERMINALS_PER_DAY = 2
TERMINAL_COMPROMISE_DAYS = 28
COMPROMISED_CUSTOMERS_PER_DAY = 3
CUSTOMER_COMPROMISE_DAYS = 14
CUSTOMER_FRAUD_SHARE = 1 / 3
CUSTOMER_FRAUD_AMOUNT_FACTOR = 5.0

TRANSACTION_COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class SimulationResult:
    """Everything one simulation drew: the profiles, the compromise schedule and the data.

    ``compromised_terminals`` and ``compromised_customers`` have one row per compromise event
    (``DAY`` and ``TERMINAL_ID`` / ``CUSTOMER_ID``): the ground truth behind scenarios 2 and 3.
    """

    customers: pd.DataFrame
    terminals: pd.DataFrame
    transactions: pd.DataFrame
    compromised_terminals: pd.DataFrame
    compromised_customers: pd.DataFrame


def generate_customer_profiles(n_customers: int, *, rng: np.random.Generator) -> pd.DataFrame:
    """Customers: location on the grid, amount mean and spread, mean transactions per day."""
    x = rng.uniform(0, GRID_SIZE, n_customers)
    y = rng.uniform(0, GRID_SIZE, n_customers)
    mean_amount = rng.uniform(5, 100, n_customers)
    mean_nb_tx_per_day = rng.uniform(0, 4, n_customers)
    return pd.DataFrame(
        {
            "CUSTOMER_ID": np.arange(n_customers, dtype=np.int64),
            "x_customer_id": x,
            "y_customer_id": y,
            "mean_amount": mean_amount,
            "std_amount": mean_amount / 2,
            "mean_nb_tx_per_day": mean_nb_tx_per_day,
        }
    )


def generate_terminal_profiles(n_terminals: int, *, rng: np.random.Generator) -> pd.DataFrame:
    """Terminals: a location on the grid."""
    x = rng.uniform(0, GRID_SIZE, n_terminals)
    y = rng.uniform(0, GRID_SIZE, n_terminals)
    return pd.DataFrame(
        {
            "TERMINAL_ID": np.arange(n_terminals, dtype=np.int64),
            "x_terminal_id": x,
            "y_terminal_id": y,
        }
    )


def available_terminals(
    customers: pd.DataFrame, terminals: pd.DataFrame, *, radius: float
) -> list[np.ndarray]:
    """For each customer (in row order), the sorted ids of the terminals within ``radius``."""
    terminal_xy = terminals[["x_terminal_id", "y_terminal_id"]].to_numpy()
    customer_xy = customers[["x_customer_id", "y_customer_id"]].to_numpy()
    terminal_ids = terminals["TERMINAL_ID"].to_numpy()
    if len(terminal_xy) == 0:
        return [np.empty(0, dtype=np.int64) for _ in range(len(customer_xy))]
    neighbours = cKDTree(terminal_xy).query_ball_point(customer_xy, r=radius, return_sorted=True)
    return [terminal_ids[np.asarray(rows, dtype=np.int64)] for rows in neighbours]


def generate_transactions(
    customers: pd.DataFrame,
    terminals_per_customer: list[np.ndarray],
    *,
    n_days: int,
    start: str | pd.Timestamp = "2018-04-01",
    rng: np.random.Generator,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Genuine transactions for ``n_days`` days, sorted by time, with no fraud labels yet.

    One vectorized step per day: Poisson counts for every customer, then times, amounts and
    terminals for all of that day's transactions at once. ``progress`` is called after each
    day with the number of days simulated so far.
    """
    customer_ids = customers["CUSTOMER_ID"].to_numpy()
    mean_amount = customers["mean_amount"].to_numpy()
    std_amount = customers["std_amount"].to_numpy()
    mean_nb = customers["mean_nb_tx_per_day"].to_numpy()

    # The customers' terminal lists as one flat array with offsets (CSR layout).
    n_available = np.array([len(t) for t in terminals_per_customer], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(n_available)[:-1])).astype(np.int64)
    flat_terminals = (
        np.concatenate(terminals_per_customer).astype(np.int64)
        if terminals_per_customer
        else np.empty(0, dtype=np.int64)
    )

    rows = np.arange(len(customers))
    chunks_customer, chunks_terminal, chunks_amount, chunks_seconds = [], [], [], []
    for day in range(n_days):
        counts = rng.poisson(mean_nb)
        cust = np.repeat(rows, counts)
        n = cust.size
        time_of_day = np.floor(rng.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, n))
        amount = rng.normal(mean_amount[cust], std_amount[cust])
        negative = amount < 0
        amount[negative] = rng.uniform(0, 2 * mean_amount[cust[negative]])
        pick = rng.random(n)
        keep = (time_of_day >= 0) & (time_of_day < SECONDS_PER_DAY) & (n_available[cust] > 0)
        cust, time_of_day, amount, pick = cust[keep], time_of_day[keep], amount[keep], pick[keep]
        choice = np.minimum((pick * n_available[cust]).astype(np.int64), n_available[cust] - 1)
        chunks_customer.append(customer_ids[cust])
        chunks_terminal.append(flat_terminals[offsets[cust] + choice])
        chunks_amount.append(np.round(amount, 2))
        chunks_seconds.append(day * SECONDS_PER_DAY + time_of_day.astype(np.int64))
        if progress is not None:
            progress(day + 1)

    def joined(chunks: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(chunks).astype(dtype) if chunks else np.empty(0, dtype=dtype)

    seconds = joined(chunks_seconds, np.int64)
    order = np.argsort(seconds, kind="stable")
    seconds = seconds[order]
    start_ts = np.datetime64(pd.Timestamp(start).normalize().to_datetime64(), "ns")
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(seconds.size, dtype=np.int64),
            "TX_DATETIME": start_ts + seconds.astype("timedelta64[s]").astype("timedelta64[ns]"),
            "CUSTOMER_ID": joined(chunks_customer, np.int64)[order],
            "TERMINAL_ID": joined(chunks_terminal, np.int64)[order],
            "TX_AMOUNT": joined(chunks_amount, np.float64)[order],
            "TX_TIME_SECONDS": seconds,
            "TX_TIME_DAYS": seconds // SECONDS_PER_DAY,
            "TX_FRAUD": np.zeros(seconds.size, dtype=np.int64),
            "TX_FRAUD_SCENARIO": np.zeros(seconds.size, dtype=np.int64),
        }
    )


def draw_compromises(
    *, n_days: int, ids: np.ndarray, per_day: int, id_column: str, rng: np.random.Generator
) -> pd.DataFrame:
    """Each day, ``per_day`` distinct ids drawn uniformly: one row (``DAY``, id) per event."""
    ids = np.asarray(ids)
    k = min(per_day, ids.size)
    drawn = [rng.choice(ids, size=k, replace=False) for _ in range(n_days)]
    return pd.DataFrame(
        {
            "DAY": np.repeat(np.arange(n_days, dtype=np.int64), k),
            id_column: np.concatenate(drawn).astype(np.int64) if drawn else np.empty(0, np.int64),
        }
    )


def add_frauds(
    transactions: pd.DataFrame,
    *,
    compromised_terminals: pd.DataFrame,
    compromised_customers: pd.DataFrame,
    rng: np.random.Generator,
    amount_threshold: float = FRAUD_AMOUNT_THRESHOLD,
    terminal_days: int = TERMINAL_COMPROMISE_DAYS,
    customer_days: int = CUSTOMER_COMPROMISE_DAYS,
    customer_share: float = CUSTOMER_FRAUD_SHARE,
    amount_factor: float = CUSTOMER_FRAUD_AMOUNT_FACTOR,
) -> pd.DataFrame:
    """Label the three fraud scenarios; returns a new frame (the input is left unchanged).

    Scenario 3 picks, for each compromise event, ``customer_share`` of the customers'
    transactions in the window that are not scenario-3 frauds already, so an amount is
    multiplied by ``amount_factor`` at most once.
    """
    days = transactions["TX_TIME_DAYS"].to_numpy()
    customer = transactions["CUSTOMER_ID"].to_numpy()
    terminal = transactions["TERMINAL_ID"].to_numpy()
    amount = transactions["TX_AMOUNT"].to_numpy(dtype=np.float64, copy=True)
    scenario = np.zeros(len(transactions), dtype=np.int64)

    # Scenario 1: large amounts.
    scenario[amount > amount_threshold] = 1

    # Scenario 2: a (terminal x day) table of compromised terminal-days, looked up per row.
    if len(transactions) and len(compromised_terminals):
        event_day = compromised_terminals["DAY"].to_numpy()
        event_terminal = compromised_terminals["TERMINAL_ID"].to_numpy()
        n_days = int(max(days.max(), event_day.max())) + 1
        n_ids = int(max(terminal.max(), event_terminal.max())) + 1
        compromised = np.zeros((n_ids, n_days + terminal_days), dtype=bool)
        for d, t in zip(event_day, event_terminal, strict=True):
            compromised[t, d : d + terminal_days] = True
        scenario[compromised[terminal, days]] = 2

    # Scenario 3: per event day, a share of the compromised customers' transactions.
    if len(transactions) and len(compromised_customers):
        order = np.argsort(days, kind="stable")
        sorted_days = days[order]
        for day, group in compromised_customers.groupby("DAY", sort=True):
            lo, hi = np.searchsorted(sorted_days, [day, day + customer_days], side="left")
            window = order[lo:hi]
            hit = window[np.isin(customer[window], group["CUSTOMER_ID"].to_numpy())]
            hit = hit[scenario[hit] != 3]
            k = int(len(hit) * customer_share)
            if k:
                chosen = rng.choice(hit, size=k, replace=False)
                amount[chosen] = np.round(amount[chosen] * amount_factor, 2)
                scenario[chosen] = 3

    out = transactions.copy()
    out["TX_AMOUNT"] = amount
    out["TX_FRAUD"] = (scenario > 0).astype(np.int64)
    out["TX_FRAUD_SCENARIO"] = scenario
    return out


def simulate_dataset(
    *,
    n_customers: int = 5000,
    n_terminals: int = 10000,
    n_days: int = 183,
    start: str = "2018-04-01",
    radius: float = 5.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> SimulationResult:
    """Run the simulator and return the profiles, compromise schedule and transactions.

    Deterministic for a ``seed``. Profiles, transactions and frauds each draw from their own
    child stream, so e.g. a longer run keeps the same customers and terminals.
    """
    if n_customers < 1 or n_terminals < 1 or n_days < 1:
        raise ValueError("n_customers, n_terminals and n_days must be at least 1")
    if not radius > 0:
        raise ValueError("radius must be positive")
    try:
        start_ts = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start must be a date like 2018-04-01, got {start!r}") from exc
    if pd.isna(start_ts):
        raise ValueError(f"start must be a date like 2018-04-01, got {start!r}")

    rng_customers, rng_terminals, rng_tx, rng_fraud = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    customers = generate_customer_profiles(n_customers, rng=rng_customers)
    terminals = generate_terminal_profiles(n_terminals, rng=rng_terminals)
    per_customer = available_terminals(customers, terminals, radius=radius)
    customers["available_terminals"] = pd.Series(per_customer, index=customers.index, dtype=object)
    customers["nb_terminals"] = np.array([len(t) for t in per_customer], dtype=np.int64)

    genuine = generate_transactions(
        customers, per_customer, n_days=n_days, start=start_ts, rng=rng_tx, progress=progress
    )
    compromised_terminals = draw_compromises(
        n_days=n_days,
        ids=terminals["TERMINAL_ID"].to_numpy(),
        per_day=COMPROMISED_TERMINALS_PER_DAY,
        id_column="TERMINAL_ID",
        rng=rng_fraud,
    )
    compromised_customers = draw_compromises(
        n_days=n_days,
        ids=customers["CUSTOMER_ID"].to_numpy(),
        per_day=COMPROMISED_CUSTOMERS_PER_DAY,
        id_column="CUSTOMER_ID",
        rng=rng_fraud,
    )
    transactions = add_frauds(
        genuine,
        compromised_terminals=compromised_terminals,
        compromised_customers=compromised_customers,
        rng=rng_fraud,
    )
    return SimulationResult(
        customers=customers,
        terminals=terminals,
        transactions=transactions,
        compromised_terminals=compromised_terminals,
        compromised_customers=compromised_customers,
    )


def simulate(
    *,
    n_customers: int = 5000,
    n_terminals: int = 10000,
    n_days: int = 183,
    start: str = "2018-04-01",
    radius: float = 5.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Simulated transactions in the Handbook's format (columns :data:`TRANSACTION_COLUMNS`).

    Sorted by time, ``TRANSACTION_ID`` 0..n-1, deterministic for a ``seed``. ``progress`` is
    called after each simulated day with the number of days done so far (1..``n_days``).
    The default run gives about 1.75 million transactions, 0.8-0.9 % of them fraud.
    """
    return simulate_dataset(
        n_customers=n_customers,
        n_terminals=n_terminals,
        n_days=n_days,
        start=start,
        radius=radius,
        seed=seed,
        progress=progress,
    ).transactions
