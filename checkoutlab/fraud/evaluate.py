"""Evaluation: time-based splits, the Handbook's protocols and the fraud metrics.

Metrics (:func:`compute_metrics`), all on the test rows:

* ``auc_roc`` and ``average_precision`` (scikit-learn);
* ``card_precision_at_100``: the Handbook's *card precision top-k* (chapter 4) with k = 100:
  for each test day, every card (``CUSTOMER_ID``) gets its highest score of the day and counts
  as compromised that day if any of its transactions that day is a fraud; the 100 best-scored
  cards are "checked", and the day's precision is the number of compromised cards among them
  divided by 100 (also when fewer than 100 cards were active, as in the Handbook). Cards found
  compromised in an earlier day's top 100 are blocked and left out of the later days, as in
  the Handbook. The metric is the mean over the test days;
* ``brier``: mean squared error of the probability;
* ``calibration_error``: expected calibration error with 10 equal-width bins over [0, 1],
  ``sum_b n_b / n * |mean(p in b) - fraud rate in b|`` (empty bins skipped).

Protocols (:func:`evaluate_spec`):

* ``handbook``: chapter 3 of the Handbook. Train on 2018-07-25..31, 7-day label delay, test on
  2018-08-08..14. The spec's estimator, features and calibration are used; its split dates are
  not (the calibration slice is the last ``calibration.days`` days of the training week).
* ``prequential``: chapter 5's estimation of test performance. 4 folds; fold 0 trains from
  2018-08-15 (tests on 2018-08-29..09-04) and every further fold shifts the train/delay/test
  windows one week back (fold 3 is the chapter-3 split). Metrics are averaged over folds, as
  the Handbook reports them.

In every test set the cards *known to be compromised* are removed, with the Handbook's
definition: on test day ``d`` a card is known compromised when it had a fraud on a day in
``[train_start, d - delay_days)``, i.e. in the training window or in the part of the delay
period whose labels have arrived by ``d``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from checkoutlab.fraud.specs import ModelSpec

__all__ = [
    "METRICS",
    "PUBLISHED",
    "EvaluationResult",
    "SplitError",
    "TimeSplit",
    "card_precision_at_k",
    "compute_metrics",
    "evaluate_spec",
    "expected_calibration_error",
    "handbook_split",
    "known_compromised_mask",
    "prequential_splits",
    "transaction_days",
]

METRICS: tuple[str, ...] = (
    "auc_roc",
    "average_precision",
    "card_precision_at_100",
    "brier",
    "calibration_error",
)
#: Metrics where a smaller value is better (the others: larger is better).
LOWER_IS_BETTER: frozenset[str] = frozenset({"brier", "calibration_error"})
ECE_BINS = 10

HANDBOOK_TRAIN_START = date(2018, 7, 25)
PREQUENTIAL_TRAIN_START = date(2018, 8, 15)
PREQUENTIAL_FOLDS = 4

ProtocolName = Literal["handbook", "prequential"]

#: Numbers published in the Handbook for its own simulated data (the default simulation here
#: follows the same description but is not the same draw).
PUBLISHED: dict[str, dict[str, dict[str, float]]] = {
    "handbook": {
        "logistic regression": {
            "auc_roc": 0.871,
            "average_precision": 0.606,
            "card_precision_at_100": 0.291,
        },
        "random forest": {
            "auc_roc": 0.867,
            "average_precision": 0.658,
            "card_precision_at_100": 0.287,
        },
    },
    "prequential": {"best, XGBoost": {"average_precision": 0.687}},
}


class SplitError(ValueError):
    """The data does not cover a split's windows (or a window has no rows or no frauds)."""


# --------------------------------------------------------------------------------------------
# Metrics


def expected_calibration_error(
    y_true: Sequence[int] | np.ndarray, y_prob: Sequence[float] | np.ndarray, *, n_bins: int = 10
) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins over [0, 1].

    >>> expected_calibration_error([0, 0, 1, 1], [0.1, 0.1, 0.9, 0.9], n_bins=10)
    0.1
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError("y_true and y_prob must be 1-d arrays of the same length")
    if y.size == 0:
        raise ValueError("no predictions to evaluate")
    bins = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)  # p == 1.0 in the last bin
    count = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    used = count > 0
    gap = np.abs(sum_p[used] - sum_y[used])  # = n_b * |mean p - mean y|
    return float(round(gap.sum() / y.size, 12))


def card_precision_at_k(
    days: Sequence[Any] | np.ndarray | pd.Series,
    cards: Sequence[Any] | np.ndarray | pd.Series,
    y_true: Sequence[int] | np.ndarray | pd.Series,
    y_score: Sequence[float] | np.ndarray | pd.Series,
    *,
    k: int = 100,
    remove_detected: bool = True,
) -> float:
    """The Handbook's card precision top-``k``, averaged over days.

    Per day, a card's score is its highest transaction score and its label is 1 when any of
    its transactions that day is a fraud; the day's value is the number of frauded cards among
    the ``k`` best-scored cards, divided by ``k``. With ``remove_detected`` (the Handbook's
    definition) a card found compromised in a previous day's top ``k`` has been blocked and is
    not considered on later days. Ties in score keep the cards' first-appearance order.

    Day 1: card ``a`` (score 0.2, fraud) and ``b`` (0.9, genuine); day 2: ``a`` (0.5, fraud)
    and ``b`` (0.4, genuine). With k = 2, day 1 scores 1/2 and finds ``a``, which is blocked,
    so day 2 scores 0/2:

    >>> days, cards = [1, 1, 1, 2, 2], ["a", "a", "b", "a", "b"]
    >>> y, p = [0, 1, 0, 1, 0], [0.1, 0.2, 0.9, 0.5, 0.4]
    >>> card_precision_at_k(days, cards, y, p, k=2)
    0.25
    >>> card_precision_at_k(days, cards, y, p, k=2, remove_detected=False)
    0.5
    >>> card_precision_at_k(days, cards, y, p, k=1)
    0.5
    """
    frame = pd.DataFrame(
        {
            "day": np.asarray(days),
            "card": np.asarray(cards),
            "y": np.asarray(y_true),
            "p": np.asarray(y_score, dtype=np.float64),
        }
    )
    if frame.empty:
        raise ValueError("no predictions to evaluate")
    per_card = frame.groupby(["day", "card"], sort=False).agg(p=("p", "max"), y=("y", "max"))
    per_card = per_card.reset_index()
    detected: set[Any] = set()
    precisions = []
    for _, cards_of_day in per_card.groupby("day", sort=True):
        if remove_detected and detected:
            cards_of_day = cards_of_day[~cards_of_day["card"].isin(detected)]
        top = cards_of_day.sort_values("p", ascending=False, kind="stable").head(k)
        hits = top.loc[top["y"] > 0, "card"]
        precisions.append(len(hits) / k)
        if remove_detected:
            detected.update(hits)
    return float(np.mean(precisions))


def compute_metrics(
    y_true: np.ndarray | pd.Series,
    y_prob: np.ndarray | pd.Series,
    *,
    days: np.ndarray | pd.Series,
    cards: np.ndarray | pd.Series,
) -> dict[str, float]:
    """The five metrics of :data:`METRICS` for calibrated probabilities ``y_prob``."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_prob, dtype=np.float64)
    if y.min(initial=1) == y.max(initial=0):
        raise SplitError("the test rows hold a single class; AUC and AP need frauds and genuine")
    return {
        "auc_roc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "card_precision_at_100": card_precision_at_k(days, cards, y, p, k=100),
        "brier": float(brier_score_loss(y, p)),
        "calibration_error": expected_calibration_error(y, p, n_bins=ECE_BINS),
    }


# --------------------------------------------------------------------------------------------
# Splits


def transaction_days(df: pd.DataFrame) -> pd.Series:
    """The calendar day (midnight) of each transaction's ``TX_DATETIME``."""
    return df["TX_DATETIME"].dt.normalize()


def _ts(d: date) -> pd.Timestamp:
    return pd.Timestamp(d)


@dataclass(frozen=True)
class TimeSplit:
    """Days ``[train_start, +train_days)`` labelled, then a delay gap, then the test days.

    The labelled window is fit days followed by ``calibration_days`` calibration days.

    >>> s = TimeSplit(date(2018, 7, 25), train_days=7, delay_days=7, test_days=7,
    ...               calibration_days=2)
    >>> str(s.fit_end), str(s.train_end), str(s.test_start), str(s.test_end)
    ('2018-07-30', '2018-08-01', '2018-08-08', '2018-08-15')
    """

    train_start: date
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7
    calibration_days: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.calibration_days < self.train_days:
            raise ValueError("calibration_days must be at least 1 and less than train_days")
        if self.delay_days < 1 or self.test_days < 1:
            raise ValueError("delay_days and test_days must be at least 1")

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, train_start: date | None = None) -> TimeSplit:
        s = spec.split
        return cls(
            train_start=train_start or s.train_start,
            train_days=s.train_days,
            delay_days=s.delay_days,
            test_days=s.test_days,
            calibration_days=spec.calibration.days,
        )

    # all ends are exclusive
    @property
    def fit_end(self) -> date:
        return self.train_start + timedelta(days=self.train_days - self.calibration_days)

    @property
    def train_end(self) -> date:
        return self.train_start + timedelta(days=self.train_days)

    @property
    def test_start(self) -> date:
        return self.train_end + timedelta(days=self.delay_days)

    @property
    def test_end(self) -> date:
        return self.test_start + timedelta(days=self.test_days)

    def describe(self) -> str:
        last = timedelta(days=1)
        return (
            f"fit {self.train_start}..{self.fit_end - last}, "
            f"calibration {self.fit_end}..{self.train_end - last}, "
            f"delay {self.delay_days} d, test {self.test_start}..{self.test_end - last}"
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "train_start": str(self.train_start),
            "fit_end": str(self.fit_end),
            "train_end": str(self.train_end),
            "test_start": str(self.test_start),
            "test_end": str(self.test_end),
            "delay_days": str(self.delay_days),
            "calibration_days": str(self.calibration_days),
        }

    def history_start(self, max_window: int) -> date:
        """First day whose rows the features of the training rows can reach."""
        return self.train_start - timedelta(days=self.delay_days + max_window)

    def masks(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Boolean row masks ``fit``, ``calibration`` and ``test`` (known cards removed)."""
        day = transaction_days(df)
        fit = (day >= _ts(self.train_start)) & (day < _ts(self.fit_end))
        calibration = (day >= _ts(self.fit_end)) & (day < _ts(self.train_end))
        test = (day >= _ts(self.test_start)) & (day < _ts(self.test_end))
        known = known_compromised_mask(
            df, since=self.train_start, delay_days=self.delay_days, rows=test.to_numpy()
        )
        return {
            "fit": fit.to_numpy(),
            "calibration": calibration.to_numpy(),
            "test": test.to_numpy() & ~known,
        }

    def check_coverage(
        self, df: pd.DataFrame, *, windows: Sequence[str] = ("fit", "calibration", "test")
    ) -> None:
        """Raise :class:`SplitError` unless the data has both classes in each of ``windows``."""
        first, last = transaction_days(df).iloc[[0, -1]]
        begin = self.train_start if "fit" in windows else self.test_start
        if _ts(begin) < first or _ts(self.test_end) > last + pd.Timedelta(days=1):
            raise SplitError(
                f"the data covers {first.date()}..{last.date()} but the split needs "
                f"{begin}..{self.test_end - timedelta(days=1)} ({self.describe()}); "
                "pick a split.train_start inside the data"
            )
        masks = self.masks(df)
        for name in windows:
            mask = masks[name]
            y = df.loc[mask, "TX_FRAUD"]
            if y.empty or y.nunique() < 2:
                raise SplitError(
                    f"the {name} window of the split ({self.describe()}) has "
                    f"{len(y)} transactions and {int(y.sum())} frauds; it needs both classes"
                )


def known_compromised_mask(
    df: pd.DataFrame, *, since: date, delay_days: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """Rows whose card was already known compromised on the row's day.

    A card is known compromised on day ``d`` when it had a fraud on a day in
    ``[since, d - delay_days)`` (the Handbook's definition with ``since`` = training start).
    Only rows selected by ``rows`` (default all) are considered; the result is ``False``
    elsewhere.
    """
    day = _day_numbers(transaction_days(df))
    card = df["CUSTOMER_ID"].to_numpy()
    fraud = df["TX_FRAUD"].to_numpy() == 1
    selected = np.ones(len(df), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    out = np.zeros(len(df), dtype=bool)
    if not selected.any():
        return out
    # each card's first fraud day on or after `since` (NaN for cards without one)
    since_day = (pd.Timestamp(since) - pd.Timestamp(0)) // pd.Timedelta(days=1)
    hits = fraud & (day >= since_day)
    first_fraud = pd.Series(day[hits]).groupby(card[hits]).min()
    first = pd.Series(card[selected]).map(first_fraud).to_numpy(dtype=np.float64)
    out[selected] = first < day[selected] - delay_days  # NaN compares False
    return out


def _day_numbers(days: pd.Series) -> np.ndarray:
    """Midnight timestamps as whole days since 1970-01-01."""
    return ((days - pd.Timestamp(0)) // pd.Timedelta(days=1)).to_numpy(dtype=np.int64)


def handbook_split(spec: ModelSpec) -> TimeSplit:
    """Chapter 3: train 2018-07-25..31, delay 7 days, test 2018-08-08..14."""
    return TimeSplit(
        HANDBOOK_TRAIN_START,
        train_days=7,
        delay_days=7,
        test_days=7,
        calibration_days=spec.calibration.days,
    )


def prequential_splits(
    spec: ModelSpec, *, start: date = PREQUENTIAL_TRAIN_START, n_folds: int = PREQUENTIAL_FOLDS
) -> list[TimeSplit]:
    """Chapter 5: fold ``i`` is the chapter-3 split starting ``start - 7 i`` days."""
    base = replace(handbook_split(spec), train_start=start)
    return [
        replace(base, train_start=start - timedelta(days=base.test_days * i))
        for i in range(n_folds)
    ]


# --------------------------------------------------------------------------------------------
# Protocols


@dataclass
class EvaluationResult:
    """Metrics of one protocol run: overall (mean over folds) and per fold."""

    protocol: str
    spec_name: str
    metrics: dict[str, float]
    folds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {m: self.metrics[m] for m in METRICS}
        if self.protocol == "prequential":
            out["folds"] = self.folds
        return out


def protocol_splits(spec: ModelSpec, protocol: ProtocolName) -> list[TimeSplit]:
    if protocol == "handbook":
        return [handbook_split(spec)]
    if protocol == "prequential":
        return prequential_splits(spec)
    raise ValueError(f"unknown protocol {protocol!r}; use 'handbook' or 'prequential'")


def evaluate_spec(
    spec: ModelSpec,
    transactions: pd.DataFrame,
    *,
    protocol: ProtocolName = "handbook",
    splits: Iterable[TimeSplit] | None = None,
    progress: Any = None,
) -> EvaluationResult:
    """Train ``spec`` on each split of ``protocol`` and score its test days.

    ``transactions`` is a frame as returned by
    :func:`checkoutlab.fraud.data.load_transactions`. ``splits`` overrides the protocol's
    windows (e.g. for small data); ``progress(i, n, split)`` is called before each fold.
    """
    from checkoutlab.fraud.train import build_features, fit_split

    began = time.perf_counter()
    splits = list(splits) if splits is not None else protocol_splits(spec, protocol)
    features = spec.resolve_features()
    for s in splits:
        if features.delay_days < s.delay_days:
            raise ValueError(
                f"spec {spec.name} computes terminal features with a {features.delay_days}-day "
                f"label delay, but the {protocol} protocol assumes {s.delay_days} days: its "
                "features would use labels that are not known yet; set split.delay_days to "
                f"at least {s.delay_days}"
            )
    first = min(s.history_start(max(features.windows)) for s in splits)
    last = max(s.test_end for s in splits)
    for s in splits:
        s.check_coverage(transactions)
    frame = build_features(transactions, features, start=first, end=last)
    folds: list[dict[str, Any]] = []
    for i, split in enumerate(splits):
        if progress is not None:
            progress(i, len(splits), split)
        fitted = fit_split(spec, frame, split, features=features)
        fold: dict[str, Any] = dict(fitted.metrics)
        fold.update(
            train_start=str(split.train_start),
            test_start=str(split.test_start),
            test_end=str(split.test_end - timedelta(days=1)),
        )
        folds.append(fold)
    metrics = {m: float(np.mean([f[m] for f in folds])) for m in METRICS}
    return EvaluationResult(
        protocol=protocol,
        spec_name=spec.name,
        metrics=metrics,
        folds=folds,
        seconds=time.perf_counter() - began,
    )
