"""End to end through ``simulate_shoppers`` (what ``checkoutlab experiments simulate`` runs):
synthetic shoppers go through the real HTTP API, the results endpoint analyses them.

The known-lift check lives in ``test_experiments_api.py``; this module holds the A/A check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy import stats as scipy_stats
from sqlalchemy import select, update

from checkoutlab.db import Database
from checkoutlab.experiments import service
from checkoutlab.experiments.analysis import analyze_experiment
from checkoutlab.experiments.assignment import bucket, choose, unit_id_for
from checkoutlab.experiments.cli import simulate_shoppers
from checkoutlab.experiments.schemas import Variant
from checkoutlab.profile.models import Decision

ALPHA = 0.05
SEEDS = 40  # A/A runs: the HTTP run's own assignment and 39 re-randomisations
SHOPPERS = 300
# A calibrated pipeline exceeds this count with probability below 0.5 % (binomial upper tail).
BOUND = int(scipy_stats.binom.ppf(0.995, SEEDS, ALPHA))  # = 6 of 40


def _reassign(db: Any, experiment: Any, seed: str) -> None:
    """Give every logged decision the variant the assignment code picks under ``seed``."""
    variants = [Variant.model_validate(v) for v in experiment.variants]
    rows = db.execute(
        select(Decision.id, Decision.customer_ref, Decision.session_id).where(
            Decision.merchant_id == experiment.merchant_id,
            Decision.experiment_key == experiment.key,
        )
    ).all()
    changes = [
        {
            "id": decision_id,
            "variant": choose(
                variants, bucket(seed, unit_id_for(customer_ref=customer, session_id=session_id))
            )[0].key,
        }
        for decision_id, customer, session_id in rows
    ]
    db.execute(update(Decision), changes)  # bulk UPDATE by primary key
    db.commit()


def test_aa_is_significant_no_more_often_than_alpha(
    client: TestClient, merchant: Any, database: Database
) -> None:
    """A/A over repeated seeds: at most ``BOUND`` of ``SEEDS`` runs have p < 0.05.

    With SEEDS independent calibrated runs the count of significant ones is
    Binomial(40, 0.05): mean 2, and P(count > 6) < 0.005, so a count above 6 means the
    pipeline (assignment, exposure logging, SQL aggregation, stats) makes false positives.

    Cost: one HTTP run of 300 shoppers takes ~10-15 s, so 40 of them would take minutes. The
    traffic is therefore simulated once through the API, and the other 39 runs replay the
    assignment with new experiment seeds through the same hashing (``bucket`` and ``choose``)
    before running the same results analysis. In an A/A test the variant is a label that
    cannot change behaviour, so a run under another seed is exactly what the experiment
    would have measured with that seed. The runs share the shoppers, so they are
    re-randomisations of one sample rather than independent samples; each run's p-value is
    still uniform under the null, so the expected share is alpha and the binomial bound holds
    approximately.
    """
    if database.engine.dialect.name != "sqlite":
        pytest.skip("one backend is enough for a statistical check of the analysis")
    h = merchant.secret_headers
    created = client.post(
        "/v1/experiments",
        json={
            "key": "aa",
            "seed": "aa-0",
            "variants": [
                {"key": "control", "control": True, "config": {"layout": "list"}},
                {"key": "same", "config": {"layout": "list"}},
            ],
        },
        headers=h,
    )
    assert created.status_code == 201, created.text
    client.post("/v1/experiments/aa/start", headers=h).raise_for_status()
    counts = simulate_shoppers(
        client,
        secret_headers=h,
        public_headers=merchant.public_headers,
        sessions=SHOPPERS,
        effects={},
        base_rate=0.5,
        seed=7,
        key="aa",
    )
    assert set(counts) == {"control", "same"}
    assert sum(c["sessions"] for c in counts.values()) == SHOPPERS

    first = client.get("/v1/experiments/aa/results", headers=h).json()
    p_values = [next(c for c in first["comparisons"] if c["metric"] == "conversion")["p_value"]]
    with database.session() as db:
        experiment = service.get(db=db, merchant_id=merchant.id, key="aa")
        for i in range(1, SEEDS):
            _reassign(db, experiment, f"aa-{i}")
            result = analyze_experiment(db=db, experiment=experiment)
            assert sum(v.units for v in result.variants) == SHOPPERS
            p_values.append(result.comparison("conversion", "same").p_value)

    p = np.array(p_values, dtype=float)
    assert p.size == SEEDS and np.isfinite(p).all()
    significant = int((p < ALPHA).sum())
    print(f"A/A: {significant}/{SEEDS} significant, median p {np.median(p):.3f}")
    assert significant <= BOUND, f"{significant}/{SEEDS} A/A runs significant (bound {BOUND})"
    # and the p-values are not piled up at 1 either (an engine that never rejects would pass)
    assert 0.3 < float(np.median(p)) < 0.7


def test_returning_customers_have_stable_heterogeneous_propensities() -> None:
    from checkoutlab.experiments.cli import customer_propensity

    draws = np.array([customer_propensity(i, 0.3) for i in range(4000)])
    assert draws.mean() == pytest.approx(0.3, abs=0.015)
    assert draws.std() > 0.2  # customers differ: history is informative
    assert customer_propensity(17, 0.3) == customer_propensity(17, 0.3)
    assert customer_propensity(17, 0.0) == 0.0 and customer_propensity(17, 1.0) == 1.0


def test_simulated_customers_come_back(
    client: TestClient, merchant: Any, database: Database
) -> None:
    from checkoutlab.payments.models import CheckoutSession

    counts = simulate_shoppers(
        client,
        secret_headers=merchant.secret_headers,
        public_headers=merchant.public_headers,
        sessions=12,
        effects={},
        seed=3,
        customers=3,
    )
    assert counts == {"(not enrolled)": counts["(not enrolled)"]}
    with database.session() as db:
        refs = db.scalars(
            select(CheckoutSession.customer_ref).where(CheckoutSession.merchant_id == merchant.id)
        ).all()
    assert len(refs) == 12 and set(refs) <= {"sim-cus-0", "sim-cus-1", "sim-cus-2"}
