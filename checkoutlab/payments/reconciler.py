"""Settle payments whose outcome nobody is waiting for anymore.

Confirm commits a payment as ``processing`` with the ``outcome_unknown`` marker before it
calls the gateway (:mod:`checkoutlab.payments.confirm`). Usually the same request settles
it a moment later; a timeout, a crash or an OOM kill leaves it unknown. The next confirm
of that session would reconcile it, but the shopper may never come back, and meanwhile
the money may have moved. So ``checkoutlab worker`` runs :class:`Reconciler`, which asks
the gateway (retrieve under the payment's gateway key) about every such payment older
than the confirm budget plus a grace, whatever its session's state:

- the gateway says succeeded → the payment succeeds (session paid, stock, event), through
  the same :func:`~checkoutlab.payments.settlement.settle_payment` as confirm and webhooks;
- failed, or no such payment at the gateway → failed;
- still no definitive answer → it stays unknown and is asked again next period.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from sqlalchemy import select

from checkoutlab.background import PeriodicTask
from checkoutlab.config import Settings
from checkoutlab.db import Database, utcnow
from checkoutlab.errors import CheckoutLabError
from checkoutlab.payments.confirm import IN_FLIGHT_GRACE_SECONDS, settle_unknown_payment
from checkoutlab.payments.models import Payment
from checkoutlab.payments.routing import Budget, GatewayPool
from checkoutlab.payments.settlement import lock_session_and_payment, unknown_outcome

__all__ = ["Reconciler"]

log = logging.getLogger(__name__)

_BATCH: Final = 50  # payments per tick; the rest wait for the next one


class Reconciler(PeriodicTask):
    """Every ``interval_seconds``, reconcile stale payments with an unknown outcome.

    Parameters
    ----------
    database
        The platform database.
    settings
        Its gateway credentials build the pool; ``confirm_budget_seconds`` says when a
        payment's own request is surely over.
    pool
        The gateways to ask (default: built from ``settings``).
    """

    thread_name = "payment-reconciler"

    def __init__(
        self,
        database: Database,
        settings: Settings,
        *,
        pool: GatewayPool | None = None,
        interval_seconds: float = 30.0,
    ) -> None:
        self.database = database
        self.settings = settings
        self.pool = pool
        self.interval_seconds = interval_seconds

    def tick(self) -> None:
        self.run_once()

    def run_once(self) -> int:
        """Reconcile one batch; the number of payments settled."""
        pool = self.pool or GatewayPool.from_settings(self.settings)
        self.pool = pool
        budget_seconds = self.settings.confirm_budget_seconds
        cutoff = utcnow() - timedelta(seconds=budget_seconds + IN_FLIGHT_GRACE_SECONDS)
        with self.database.session() as db:
            # processing payments are few; the JSON marker is filtered here, portably
            candidates = [
                (p.id, p.merchant_id, p.session_id)
                for p in db.scalars(
                    select(Payment)
                    .where(Payment.status == "processing", Payment.updated_at < cutoff)
                    .order_by(Payment.updated_at)
                    .limit(_BATCH * 4)
                )
                if unknown_outcome(p)
            ][:_BATCH]
        settled = 0
        for payment_id, merchant_id, session_id in candidates:
            try:
                settled += self._settle(payment_id, merchant_id, session_id, pool)
            except CheckoutLabError as exc:  # e.g. "already paid": logged, next one
                log.warning("reconciling payment %s: %s", payment_id, exc)
        return settled

    def _settle(self, payment_id: str, merchant_id: str, session_id: str, pool: GatewayPool) -> int:
        with self.database.session() as db:
            checkout, payment = lock_session_and_payment(
                db, merchant_id=merchant_id, session_id=session_id, payment_id=payment_id
            )
            if not unknown_outcome(payment):
                db.rollback()
                return 0  # settled meanwhile (a webhook, a confirm)
            # a budget per payment (one retrieve plus the commit), so one slow gateway
            # cannot hold the whole batch
            budget = Budget(pool.call_timeout + 1.0)
            done = settle_unknown_payment(
                db=db, checkout=checkout, payment=payment, gateways=pool, budget=budget
            )
            if done:
                log.info("reconciled payment %s: %s", payment.id, payment.status)
            return int(done)
