"""The profile builder scores with the MLflow champion, and degrades safely without it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from checkoutlab.api.app import create_app
from checkoutlab.config import Settings
from checkoutlab.fraud import registry
from checkoutlab.fraud.data import save_transactions
from checkoutlab.fraud.simulate import simulate
from checkoutlab.fraud.train import train_from_spec
from checkoutlab.profile.models import Decision

SPEC = Path(__file__).resolve().parents[2] / "models" / "logreg.yaml"


@pytest.fixture(scope="module")
def mlflow_env(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("serving")
    data = save_transactions(
        simulate(n_customers=300, n_terminals=600, n_days=90, start="2018-06-01"),
        tmp / "tx.parquet",
    )
    uri = f"sqlite:///{tmp}/mlflow.db"
    result = train_from_spec(SPEC, data)
    registry.register(result, tracking_uri=uri)
    decision = registry.promote(data=data, force=True, tracking_uri=uri)
    assert decision.promoted
    return SimpleNamespace(uri=uri, data=data, result=result, tmp=tmp)


def _app(database: Any, settings: Settings, tracking_uri: str) -> Any:
    champion = settings.model_copy(
        update={
            "risk_scorer": "champion",
            "mlflow_tracking_uri": tracking_uri,
            "champion_poll_seconds": 0.2,
            "feature_sync_seconds": 0.2,
        }
    )
    return create_app(champion, database=database)


def _wait_ready(app: Any, *, champion: bool) -> None:
    """Until the feature store has synced (and, with ``champion``, the champion is loaded)."""
    scorer = app.state.profile_services.scorer
    deadline = time.monotonic() + 60
    while scorer.store.synced_at is None or (champion and scorer.watcher.current is None):
        assert time.monotonic() < deadline, f"scorer not ready: {scorer.describe()}"
        time.sleep(0.05)


@pytest.fixture
def champion_client(database, settings, mlflow_env) -> Iterator[tuple[TestClient, Any]]:
    app = _app(database, settings, mlflow_env.uri)
    with TestClient(app) as client:
        _wait_ready(app, champion=True)
        yield client, app


def _profile(client: TestClient, merchant, new_session: dict) -> dict:
    response = client.post(
        "/v1/payment_profile",
        json={
            "client_secret": new_session["client_secret"],
            "context": {"device": {"type": "desktop"}},
        },
        headers=merchant.public_headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _session(client: TestClient, merchant, **fields) -> dict:
    body = {"amount": 4200, "currency": "EUR", "customer": "cus_1"} | fields
    response = client.post("/v1/checkout_sessions", json=body, headers=merchant.secret_headers)
    assert response.status_code == 201, response.text
    return response.json()


def _alias_version(uri: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return str(client.get_model_version_by_alias("fraud-scorer", "champion").version)


def test_profile_is_scored_by_the_champion(champion_client, merchant, database, mlflow_env) -> None:
    client, _ = champion_client
    profile = _profile(client, merchant, _session(client, merchant))
    risk = profile["risk"]
    champion = _alias_version(mlflow_env.uri)
    assert (risk["model"], risk["model_version"], risk["degraded"]) == (
        "fraud-scorer",
        champion,
        False,
    )
    assert 0.0 <= risk["score"] <= 1.0
    with database.session() as db:
        decision = db.scalars(select(Decision).where(Decision.id == profile["id"])).one()
    assert decision.model_version == champion
    assert decision.features["model_features"]["TX_AMOUNT"] == 42.0
    assert decision.features["model_features"]["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 1.0


def test_new_champion_is_picked_up_without_restart(champion_client, merchant, mlflow_env) -> None:
    client, app = champion_client
    new = registry.register(mlflow_env.result, tracking_uri=mlflow_env.uri).version
    assert registry.promote(data=mlflow_env.data, force=True, tracking_uri=mlflow_env.uri).promoted
    deadline = time.monotonic() + 30
    while app.state.profile_services.scorer.watcher.current.version != str(new):
        assert time.monotonic() < deadline, f"champion v{new} not picked up"
        time.sleep(0.05)
    assert _profile(client, merchant, _session(client, merchant))["risk"]["model_version"] == str(
        new
    )


@pytest.mark.parametrize("uri", ["empty", "http://127.0.0.1:9"], ids=["no-champion", "unreachable"])
def test_without_a_champion_profiles_are_degraded_not_5xx(
    database, settings, merchant, tmp_path, uri, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracking = f"sqlite:///{tmp_path}/empty.db" if uri == "empty" else uri
    app = _app(database, settings, tracking)
    with TestClient(app) as client:
        _wait_ready(app, champion=False)
        profile = _profile(client, merchant, _session(client, merchant))
    risk = profile["risk"]
    assert risk["degraded"] is True and risk["model"] == "rules"
    assert "model_unavailable" in risk["reasons"]
    assert risk["level"] in ("elevated", "highest")
    assert profile["verification"]["cvv"] and profile["verification"]["avs"]
