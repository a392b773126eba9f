"""Assignment: deterministic hashing, sticky rows, namespaces, targeting, risk first."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from checkoutlab.db import Database
from checkoutlab.errors import Conflict
from checkoutlab.experiments import service
from checkoutlab.experiments.assignment import (
    Assignment,
    apply_verification,
    assign,
    assign_to,
    bucket,
    choose,
    in_namespace,
    unit_id_for,
)
from checkoutlab.experiments.schemas import (
    ExperimentCreate,
    ExperimentUpdate,
    FormConfig,
    Namespace,
    Variant,
)
from checkoutlab.experiments.stats import srm_check
from checkoutlab.profile.schema import Verification


def _definition(key: str = "layout_test", **extra: Any) -> ExperimentCreate:
    body = {
        "key": key,
        "seed": f"seed-{key}",
        "variants": [
            {"key": "control", "control": True, "weight": 1},
            {"key": "accordion", "weight": 1, "config": {"layout": "accordion"}},
        ],
    } | extra
    return ExperimentCreate.model_validate(body)


def _activation(device: str = "desktop") -> dict[str, Any]:
    return {
        "amount": {"value": 2599, "currency": "EUR"},
        "risk": {"score": 0.01, "risk_score": 1, "level": "normal"},
        "context": {"device": {"type": device}},
        "customer": {"payments": 0},
    }


def test_bucket_is_deterministic_and_uniform() -> None:
    assert bucket("s", "cus:1") == bucket("s", "cus:1")
    assert bucket("s", "cus:1") != bucket("t", "cus:1")
    points = [bucket("seed", f"cus:{i}") for i in range(20_000)]
    assert all(0 <= p < 1 for p in points)
    deciles = Counter(int(p * 10) for p in points)
    assert srm_check([deciles[i] for i in range(10)], [1] * 10).mismatch is False


def test_distribution_follows_weights() -> None:
    variants = [
        Variant(key="a", control=True, weight=1),
        Variant(key="b", weight=2),
        Variant(key="c", weight=1),
    ]
    counts = Counter(choose(variants, bucket("x", f"u{i}"))[0].key for i in range(40_000))
    shares = {k: counts[k] / 40_000 for k in "abc"}
    assert shares["b"] == pytest.approx(0.5, abs=0.01)
    assert shares["a"] == pytest.approx(0.25, abs=0.01)
    assert not srm_check([counts[k] for k in "abc"], [1, 2, 1]).mismatch
    assert choose(variants, 0.6) == (variants[1], 0.5)


def test_unit_ids() -> None:
    assert unit_id_for(customer_ref="c1", session_id="cs_1") == "cus:c1"
    assert unit_id_for(customer_ref=None, session_id="cs_1") == "ses:cs_1"


def test_assignment_is_deterministic_and_sticky_across_weight_changes(
    database: Database, merchant: Any
) -> None:
    with database.session() as db:
        experiment = service.create(db=db, merchant_id=merchant.id, data=_definition())
        service.start(db=db, experiment=experiment)
        units = [f"cus:{i}" for i in range(400)]
        first = {u: assign(db, merchant.id, u, _activation()) for u in units}
        db.commit()
        assert all(isinstance(a, Assignment) for a in first.values())
        assert {a.variant for a in first.values()} == {"control", "accordion"}
        assert all(a.probability == 0.5 for a in first.values())
        again = {u: assign(db, merchant.id, u, _activation()) for u in units}
        assert {u: a.variant for u, a in again.items()} == {u: a.variant for u, a in first.items()}
        accordion = next(a for a in first.values() if a.variant == "accordion")
        assert accordion.config.layout == "accordion"

        service.update(
            db=db,
            experiment=experiment,
            data=ExperimentUpdate(weights={"control": 1, "accordion": 99}),
        )
        after = {u: assign(db, merchant.id, u, _activation()).variant for u in units}
        assert after == {u: a.variant for u, a in first.items()}  # sticky
        new = [assign(db, merchant.id, f"cus:new{i}", _activation()) for i in range(300)]
        share = sum(a.variant == "accordion" for a in new) / len(new)
        assert share > 0.95
        assert {a.probability for a in new} <= {0.01, 0.99}


def test_same_bucket_on_another_server_without_stored_rows(
    database: Database, merchant: Any
) -> None:
    with database.session() as db:
        experiment = service.create(db=db, merchant_id=merchant.id, data=_definition())
        service.start(db=db, experiment=experiment)
        a = assign_to(db, experiment, "cus:42", store=False)
        b = assign_to(db, experiment, "cus:42", store=False)
        assert a.variant == b.variant


def test_namespace_makes_experiments_mutually_exclusive(database: Database, merchant: Any) -> None:
    with database.session() as db:
        left = service.create(
            db=db,
            merchant_id=merchant.id,
            data=_definition("left", namespace={"name": "checkout", "start": 0, "end": 0.5}),
        )
        right = service.create(
            db=db,
            merchant_id=merchant.id,
            data=_definition("right", namespace={"name": "checkout", "start": 0.5, "end": 1}),
        )
        service.start(db=db, experiment=left)
        service.start(db=db, experiment=right)
        overlapping = service.create(
            db=db,
            merchant_id=merchant.id,
            data=_definition("overlap", namespace={"name": "checkout", "start": 0.4, "end": 0.6}),
        )
        with pytest.raises(Conflict, match="overlaps running experiment 'left'"):
            service.start(db=db, experiment=overlapping)

        seen: Counter[str] = Counter()
        for i in range(600):
            unit = f"ses:{i}"
            got = assign(db, merchant.id, unit, _activation())
            assert got is not None
            seen[got.key] += 1
            memberships = [
                in_namespace(Namespace.model_validate(e.namespace), unit) for e in (left, right)
            ]
            assert sum(memberships) == 1  # in exactly one experiment of the namespace
            assert got.key == ("left" if memberships[0] else "right")
        assert 200 < seen["left"] < 400


def test_targeting_enrols_only_matching_units(database: Database, merchant: Any) -> None:
    with database.session() as db:
        experiment = service.create(
            db=db,
            merchant_id=merchant.id,
            data=_definition(targeting='context.device.type == "mobile"'),
        )
        service.start(db=db, experiment=experiment)
        assert assign(db, merchant.id, "cus:1", _activation("mobile")) is not None
        assert assign(db, merchant.id, "cus:2", _activation("desktop")) is None
        broken = _activation()
        del broken["context"]["device"]
        assert assign(db, merchant.id, "cus:3", broken) is None  # cannot evaluate: not enrolled


def test_draft_and_stopped_experiments_assign_nobody(database: Database, merchant: Any) -> None:
    with database.session() as db:
        experiment = service.create(db=db, merchant_id=merchant.id, data=_definition())
        assert assign(db, merchant.id, "cus:1", _activation()) is None
        service.start(db=db, experiment=experiment)
        service.stop(db=db, experiment=experiment)
        assert assign(db, merchant.id, "cus:1", _activation()) is None


def test_a_variant_adds_verification_and_can_never_remove_it() -> None:
    required = Verification(cvv=True, three_ds=True)
    adding = Assignment("k", "v", 0.5, FormConfig(verification_add=["biometric"]))
    result = apply_verification(required, adding)
    assert result.cvv and result.three_ds and result.biometric
    plain = Assignment("k", "v", 0.5, FormConfig(layout="list"))
    assert apply_verification(required, plain) == required
    assert apply_verification(required, None) == required
    with pytest.raises(ValidationError):
        FormConfig.model_validate({"verification_remove": ["cvv"]})
    with pytest.raises(ValidationError):
        FormConfig.model_validate({"verification_add": ["skip_cvv"]})


def test_bandit_allocation_explores_then_keeps_min_share(database: Database, merchant: Any) -> None:
    from checkoutlab.experiments.assignment import thompson_shares
    from checkoutlab.experiments.schemas import Allocation

    with database.session() as db:
        experiment = service.create(
            db=db,
            merchant_id=merchant.id,
            data=_definition(allocation={"type": "bandit", "min_share": 0.2, "explore_units": 5}),
        )
        service.start(db=db, experiment=experiment)
        allocation = Allocation.model_validate(experiment.allocation)
        shares = thompson_shares(
            db=db, experiment=experiment, weights=[0.5, 0.5], allocation=allocation
        )
        assert shares == [0.5, 0.5]  # explore phase
        for i in range(6):
            assign(db, merchant.id, f"cus:{i}", _activation())
        db.commit()
        shares = thompson_shares(
            db=db, experiment=experiment, weights=[0.5, 0.5], allocation=allocation
        )
        assert sum(shares) == pytest.approx(1.0)
        assert min(shares) >= 0.2 - 1e-12


def test_bandit_shifts_traffic_to_the_better_variant_but_keeps_the_floor(
    database: Database, merchant: Any
) -> None:
    """After the explore phase, Thompson sampling gives the clearly better variant most new
    units, the worse one keeps ``min_share``, the logged probability is the share the unit
    was drawn with, and units assigned while exploring keep their variant."""
    import numpy as np

    from .test_analysis import seed as seed_traffic

    with database.session() as db:
        experiment = service.create(
            db=db,
            merchant_id=merchant.id,
            data=_definition(
                "cta_copy",
                variants=[
                    {"key": "control", "control": True, "weight": 1},
                    {"key": "treatment", "weight": 1},
                ],
                allocation={"type": "bandit", "min_share": 0.1, "explore_units": 20},
            ),
        )
        service.start(db=db, experiment=experiment)
        explored = {
            f"cus:e{i}": assign(db, merchant.id, f"cus:e{i}", _activation()) for i in range(20)
        }
        db.commit()
        assert {a.probability for a in explored.values()} == {0.5}  # weights while exploring
        # control converts 10 %, treatment 40 % (decisions and payments, as served)
        seed_traffic(
            db, merchant.id, "control", np.arange(200) % 10 == 0, np.full(200, 900), prefix="c"
        )
        seed_traffic(
            db, merchant.id, "treatment", np.arange(200) % 5 < 2, np.full(200, 900), prefix="t"
        )

        new = [assign(db, merchant.id, f"cus:n{i}", _activation()) for i in range(400)]
        db.commit()
        probability = {a.variant: a.probability for a in new}
        assert probability["control"] == pytest.approx(0.1, abs=1e-9)  # the floor
        assert probability["treatment"] == pytest.approx(0.9, abs=1e-9)
        share = sum(a.variant == "treatment" for a in new) / len(new)
        assert 0.85 < share < 0.95
        for unit, first in explored.items():  # sticky
            again = assign(db, merchant.id, unit, _activation())
            assert (again.variant, again.probability) == (first.variant, 0.5)
