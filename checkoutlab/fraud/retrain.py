"""Retraining from the platform's own outcomes, with the label-delay logic.

The training set is the platform export (:mod:`checkoutlab.fraud.export`) as of ``now``: a
payment counts as fraud only if its label had been *reported* by then, which is what a model
trained now can know. The split is the spec's, moved so that its test window ends
yesterday: train days, then the delay, then the test days. The new version is registered and
promoted only if it beats the champion on that holdout by the margin (the same gate as
``checkoutlab fraud promote``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from checkoutlab.db import Database, utcnow
from checkoutlab.fraud.export import platform_transactions
from checkoutlab.fraud.specs import ModelSpec, load_spec


class NotEnoughData(ValueError):
    """The platform does not have the labelled history this spec's split needs yet."""


@dataclass
class RetrainOutcome:
    version: str
    promoted: bool
    reason: str
    metrics: dict[str, float]
    rows: int
    frauds: int
    train_start: date

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "promoted": self.promoted,
            "reason": self.reason,
            "metrics": self.metrics,
            "rows": self.rows,
            "frauds": self.frauds,
            "train_start": self.train_start.isoformat(),
        }


def training_set(database: Database, *, now: datetime | None = None) -> Any:
    """The platform export as known at ``now``: later-reported labels do not count yet."""
    now = now or utcnow()
    with database.session() as db:
        frame = platform_transactions(db=db, until=now)
    known = frame["LABEL_REPORTED_AT"].notna() & (
        frame["LABEL_REPORTED_AT"] <= now.replace(tzinfo=None)
    )
    frame["TX_FRAUD"] = known.astype(int)
    return frame


def retrain(
    database: Database,
    *,
    spec: ModelSpec | str | Path,
    tracking_uri: str | None = None,
    margin: float = 0.005,
    metric: str = "average_precision",
    now: datetime | None = None,
) -> RetrainOutcome:
    from checkoutlab.fraud import registry
    from checkoutlab.fraud.evaluate import SplitError
    from checkoutlab.fraud.train import train_from_spec

    spec = spec if isinstance(spec, ModelSpec) else load_spec(spec)
    now = now or utcnow()
    frame = training_set(database, now=now)
    split = spec.split
    span = split.train_days + split.delay_days + split.test_days
    train_start = now.date() - timedelta(days=span)
    if frame.empty:
        raise NotEnoughData("the platform has no payments yet; nothing to train on")
    try:
        result = train_from_spec(spec, frame, train_start=train_start)
    except SplitError as exc:
        raise NotEnoughData(
            f"not enough labelled platform history to retrain {spec.name} "
            f"({len(frame):,} payments, {int(frame['TX_FRAUD'].sum())} known frauds): {exc}"
        ) from exc
    logged = registry.register(result, tracking_uri=tracking_uri, run_name=f"retrain-{spec.name}")
    decision = registry.promote(
        data=frame,
        version=logged.version,
        margin=margin,
        metric=metric,
        tracking_uri=tracking_uri,
    )
    return RetrainOutcome(
        version=str(logged.version),
        promoted=decision.promoted,
        reason=decision.reason,
        metrics=dict(result.metrics),
        rows=len(frame),
        frauds=int(frame["TX_FRAUD"].sum()),
        train_start=train_start,
    )
