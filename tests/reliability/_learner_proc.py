"""Run the product's bandit learner until idle, optionally SIGKILLing itself mid-batch.

``python _learner_proc.py DATABASE_URL --limit N [--kill-at-update K | --kill-before-commit K]``

The learner is :class:`checkoutlab.bandits.learner.Learner` unchanged; the kill is a real
SIGKILL of this process (no exception handling, no rollback by Python: the database sees
a connection drop with a transaction open), placed deterministically:

- ``--kill-at-update K``: inside the K-th policy update, i.e. in the middle of a batch after
  earlier rewards of the same batch were applied in memory and staged in the transaction;
- ``--kill-before-commit K``: in the K-th batch, after its snapshots, reward rows and cursor
  are flushed to the database, right before the commit.

The learner's clock is two hours ahead so that every attribution window has closed, and
``settle`` is 0 so that just-written events are consumed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from datetime import timedelta

from checkoutlab.bandits.learner import Learner
from checkoutlab.db import Database, utcnow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--kill-at-update", type=int, default=0)
    parser.add_argument("--kill-before-commit", type=int, default=0)
    args = parser.parse_args()

    counts = {"updates": 0, "batches": 0}
    update, snapshot = Learner._update, Learner._snapshot

    def _update(self, policy, context, first_method, reward):  # type: ignore[no-untyped-def]
        counts["updates"] += 1
        if counts["updates"] == args.kill_at_update:
            os.kill(os.getpid(), signal.SIGKILL)
        update(self, policy, context, first_method, reward)

    def _snapshot(self, batch):  # type: ignore[no-untyped-def]
        snapshot(self, batch)
        counts["batches"] += 1
        if counts["batches"] == args.kill_before_commit:
            batch.db.flush()  # everything of the batch is in the database, uncommitted
            os.kill(os.getpid(), signal.SIGKILL)

    Learner._update, Learner._snapshot = _update, _snapshot  # type: ignore[method-assign]
    database = Database(args.database_url)
    learner = Learner(database, now=lambda: utcnow() + timedelta(hours=2), settle=timedelta(0))
    totals = {"events": 0, "applied": 0, "batches": 0}
    while True:
        stats = learner.run_once(limit=args.limit)
        if stats.idle:
            break
        totals["events"] += stats.events
        totals["applied"] += stats.applied
        totals["batches"] += 1
    database.dispose()
    print(json.dumps(totals))


if __name__ == "__main__":
    main()
