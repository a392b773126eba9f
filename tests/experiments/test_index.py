"""Migration 0006_experiments_index: the results queries' filter is indexed on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect, text

from checkoutlab.db import Database

INDEX = "ix_decisions_merchant_experiment_variant"


def test_decisions_are_indexed_by_merchant_experiment_and_variant(database: Database) -> None:
    indexes = {
        i["name"]: i["column_names"] for i in inspect(database.engine).get_indexes("decisions")
    }
    assert indexes[INDEX] == ["merchant_id", "experiment_key", "variant"]


def test_sqlite_plan_uses_the_index(database: Database, merchant: Any) -> None:
    if database.engine.dialect.name != "sqlite":
        pytest.skip(
            "PostgreSQL picks plans by table statistics; the index existing is the contract"
        )
    with database.engine.connect() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT variant, count(*) FROM decisions "
                "WHERE merchant_id = :m AND experiment_key = :k AND variant IS NOT NULL "
                "GROUP BY variant"
            ),
            {"m": merchant.id, "k": "exp"},
        ).all()
    assert any(INDEX in str(row) for row in plan), plan
