"""The online feature store fed by the platform's own database.

Each API worker keeps one :class:`~checkoutlab.fraud.online.OnlineFeatureStore` warm: at start
it replays the payments inside the feature horizon (largest window + label delay), then a
background refresh registers payments that reached a final status since the last cursor and
applies fraud labels reported since then. Workers stay stateless in the DESIGN.md sense:
everything is rebuilt from the database, and staleness is bounded by the refresh interval.

The mapping to the Handbook's columns is :mod:`checkoutlab.fraud.export`'s, so training on an
export and serving from this store compute the same features for the same history.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select

from checkoutlab.db import Database, utcnow
from checkoutlab.fraud.export import platform_transactions, transaction_row
from checkoutlab.fraud.features import FeatureSpec
from checkoutlab.fraud.models import Outcome
from checkoutlab.fraud.online import OnlineFeatureStore
from checkoutlab.fraud.outcomes import FRAUD_TYPES
from checkoutlab.money import to_major
from checkoutlab.payments.models import Payment
from checkoutlab.profile.models import Decision

log = logging.getLogger(__name__)
_FINAL = ("succeeded", "failed")


class PlatformFeatureStore:
    """Thread-safe wrapper: one lock around the store, held for microseconds per call."""

    def __init__(self, database: Database, spec: FeatureSpec | None = None) -> None:
        self.database = database
        self.spec = spec or FeatureSpec()
        self._store = OnlineFeatureStore(
            windows=self.spec.windows,
            delay_days=self.spec.delay_days,
            context_columns=self.spec.context_columns,
        )
        self._lock = threading.Lock()
        self._payment_cursor: tuple[datetime, str] | None = None
        self._label_cursor: datetime | None = None
        self.synced_at: datetime | None = None

    @property
    def horizon(self) -> timedelta:
        return timedelta(days=max(self.spec.windows) + self.spec.delay_days)

    def sync(self, now: datetime | None = None) -> int:
        """Register new final payments and new labels; returns how many payments were added."""
        now = now or utcnow()
        with self.database.session() as db:
            bootstrap = self._payment_cursor is None
            added = self._bootstrap(db, now) if bootstrap else self._catch_up(db)
            self._apply_labels(db)
        self.synced_at = now
        return added

    def _bootstrap(self, db: Any, now: datetime) -> int:
        since = now - self.horizon
        frame = platform_transactions(db=db, since=since)
        with self._lock:
            for row in frame.itertuples(index=False):
                tx = row._asdict()
                self._store.update(tx, label=int(tx["TX_FRAUD"]))
        last = db.execute(
            select(Payment.updated_at, Payment.id)
            .where(Payment.status.in_(_FINAL))
            .order_by(Payment.updated_at.desc(), Payment.id.desc())
            .limit(1)
        ).first()
        self._payment_cursor = (last[0], last[1]) if last else (since, "")
        self._label_cursor = db.scalar(
            select(Outcome.reported_at).order_by(Outcome.reported_at.desc()).limit(1)
        )
        return len(frame)

    def _catch_up(self, db: Any) -> int:
        assert self._payment_cursor is not None
        at, last_id = self._payment_cursor
        rows = db.execute(
            select(Payment, Decision.context)
            .outerjoin(Decision, Decision.id == Payment.decision_id)
            .where(
                Payment.status.in_(_FINAL),
                or_(Payment.updated_at > at, and_(Payment.updated_at == at, Payment.id > last_id)),
            )
            .order_by(Payment.updated_at, Payment.id)
        ).all()
        with self._lock:
            for payment, context in rows:
                self._store.update(
                    transaction_row(payment, context, label_reported_at=None), label=0
                )
        if rows:
            self._payment_cursor = (rows[-1][0].updated_at, rows[-1][0].id)
        return len(rows)

    def _apply_labels(self, db: Any) -> None:
        query = select(Outcome.payment_id, Outcome.reported_at).where(Outcome.type.in_(FRAUD_TYPES))
        if self._label_cursor is not None:
            query = query.where(Outcome.reported_at > self._label_cursor)
        rows = db.execute(query.order_by(Outcome.reported_at)).all()
        with self._lock:
            for payment_id, _ in rows:
                self._store.add_label(payment_id, 1)
        if rows:
            self._label_cursor = rows[-1][1]

    def features(
        self,
        *,
        customer_id: str,
        terminal_id: str,
        amount: int,
        currency: str,
        at: datetime,
        context: dict[str, Any] | None = None,
    ) -> dict[str, float]:
        """Features of a checkout that has not happened yet (the profile's transaction)."""
        context = context or {}
        tx = {
            "TX_DATETIME": at.replace(tzinfo=None),
            "CUSTOMER_ID": customer_id,
            "TERMINAL_ID": terminal_id,
            "TX_AMOUNT": to_major(amount, currency),
            "DEVICE_TYPE": context.get("device", {}).get("type"),
            "COUNTRY": context.get("location", {}).get("country"),
            "METHOD": None,  # chosen after the profile; models scoring profiles must not use it
            "VERIFICATION_PASSED": None,
        }
        with self._lock:
            return self._store.features(tx)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return self._store.stats()
