"""Retraining from platform outcomes: label delay, registration and the promotion gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient

from checkoutlab.fraud.retrain import NotEnoughData, retrain, training_set
from checkoutlab.fraud.specs import load_spec

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SPEC = Path(__file__).resolve().parents[2] / "models" / "logreg.yaml"


def test_labels_reported_after_now_do_not_count(database, make_merchant, platform_history) -> None:
    merchant = make_merchant().id
    frauds = platform_history(database, [merchant], now=NOW, n=300, days=30)
    known_now = int(training_set(database, now=NOW + timedelta(days=3))["TX_FRAUD"].sum())
    assert known_now == frauds
    # two days before NOW, the labels of the last four days were not reported yet
    earlier = training_set(database, now=NOW - timedelta(days=2))
    assert earlier["TX_FRAUD"].sum() < frauds
    assert (earlier["TX_DATETIME"] < (NOW - timedelta(days=2)).replace(tzinfo=None)).all()


def test_retrain_registers_promotes_then_gates(
    database, make_merchant, platform_history, tmp_path
) -> None:
    merchants = [make_merchant("A").id, make_merchant("B").id]
    platform_history(database, merchants, now=NOW, n=3000, days=26, customers=200, seed=3)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = load_spec(SPEC)
    first = retrain(database, spec=spec, tracking_uri=uri, now=NOW)
    assert first.promoted and first.version == "1"
    assert first.train_start == (NOW - timedelta(days=21)).date()
    assert 0.0 < first.metrics["average_precision"] <= 1.0
    second = retrain(database, spec=spec, tracking_uri=uri, now=NOW, margin=0.05)
    assert second.version == "2" and not second.promoted
    assert "margin" in second.reason or "beat" in second.reason
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("fraud-scorer", "champion").version) == "1"


def test_retrain_without_enough_history_says_so(
    database, make_merchant, platform_history, tmp_path
) -> None:
    merchant = make_merchant().id
    platform_history(database, [merchant], now=NOW, n=40, days=3)
    with pytest.raises(NotEnoughData, match="not enough labelled platform history"):
        retrain(database, spec=SPEC, tracking_uri=f"sqlite:///{tmp_path}/m.db", now=NOW)
