"""Prometheus metrics: what /metrics exposes and the hooks the domains call.

prometheus-client keeps one registry per process, so every assertion compares a sample's
value before and after the action instead of expecting an absolute count.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from bandits.test_learner import Log  # tests/ is the import root (no __init__.py)
from fastapi.testclient import TestClient
from pydantic import SecretStr

from checkoutlab.api.app import create_app
from checkoutlab.bandits.learner import LAG_CAP, Learner
from checkoutlab.bandits.serving import PolicyProvider
from checkoutlab.db import utcnow
from checkoutlab.fraud.serving import ChampionWatcher
from checkoutlab.merchants.schemas import MerchantConfig
from checkoutlab.observability import metrics


def value(name: str, **labels: str) -> float:
    return metrics.sample(name, labels) or 0.0


def scrape(client: TestClient, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_latency_is_labelled_by_route_template_not_raw_path(client, new_checkout, merchant):
    checkout = new_checkout()
    route = "/v1/checkout_sessions/{session_id}"
    before = value("checkoutlab_http_request_duration_seconds_count", method="GET", route=route)
    assert client.get(f"/v1/checkout_sessions/{checkout.id}", headers=merchant.secret_headers)
    client.get("/v1/checkout_sessions/cs_missing", headers=merchant.secret_headers)
    client.get("/no/such/page")
    after = value("checkoutlab_http_request_duration_seconds_count", method="GET", route=route)
    assert after - before == 2
    text = scrape(client)
    assert checkout.id not in text and "cs_missing" not in text and "/no/such/page" not in text
    assert 'route="unmatched",status="404"' in text
    assert f'checkoutlab_http_requests_total{{method="GET",route="{route}",status="200"}}' in text
    assert 'checkoutlab_http_request_duration_seconds_bucket{le="0.005"' in text


def test_profiles_served_counted_by_risk_level_and_variant(new_checkout):
    labels = {"risk_level": "normal", "experiment": "none", "variant": "none", "degraded": "false"}
    before = value("checkoutlab_profiles_served_total", **labels)
    new_checkout().profile({"device": {"type": "desktop"}})
    new_checkout().profile({"device": {"type": "desktop"}})
    assert value("checkoutlab_profiles_served_total", **labels) - before == 2


def test_profiles_served_name_the_experiment_variant(client, new_checkout, merchant):
    experiment = {
        "key": "obs_layout",
        "hypothesis": "Metrics name the variant.",
        "variants": [
            {"key": "control", "control": True, "weight": 1},
            {"key": "list", "weight": 1, "config": {"layout": "list"}},
        ],
    }
    created = client.post("/v1/experiments", json=experiment, headers=merchant.secret_headers)
    assert created.status_code in (200, 201), created.text
    started = client.post("/v1/experiments/obs_layout/start", headers=merchant.secret_headers)
    assert started.status_code == 200, started.text
    variant = new_checkout().profile()["experiment"]["variant"]
    labels = {"risk_level": "normal", "experiment": "obs_layout", "variant": variant}
    assert value("checkoutlab_profiles_served_total", **labels, degraded="false") >= 1


def test_gateway_attempts_failures_and_latency():
    before = {
        "ok": value("checkoutlab_gateway_attempts_total", gateway="obs_gw", result="succeeded"),
        "declined": value(
            "checkoutlab_gateway_attempts_total", gateway="obs_gw", result="declined"
        ),
        "timeouts": value("checkoutlab_gateway_failures_total", gateway="obs_gw", result="timeout"),
        "errors": value("checkoutlab_gateway_failures_total", gateway="obs_gw", result="error"),
        "n": value("checkoutlab_gateway_attempt_duration_seconds_count", gateway="obs_gw"),
    }
    metrics.observe_gateway_attempt("obs_gw", "succeeded", 0.12)
    metrics.observe_gateway_attempt("obs_gw", "declined", 0.1)
    metrics.observe_gateway_attempt("obs_gw", "timeout", 10.0)
    metrics.observe_gateway_attempt("obs_gw", metrics.gateway_result("failed", retryable=True), 0.3)
    metrics.observe_gateway_attempt("obs_gw", "made-up", -1)  # bounded labels, never raises
    assert value("checkoutlab_gateway_attempts_total", gateway="obs_gw", result="succeeded") == (
        before["ok"] + 1
    )
    declined = value("checkoutlab_gateway_attempts_total", gateway="obs_gw", result="declined")
    assert declined == before["declined"] + 1
    timeouts = value("checkoutlab_gateway_failures_total", gateway="obs_gw", result="timeout")
    assert timeouts == before["timeouts"] + 1
    errors = value("checkoutlab_gateway_failures_total", gateway="obs_gw", result="error")
    assert errors == before["errors"] + 1
    assert value("checkoutlab_gateway_attempts_total", gateway="obs_gw", result="other") >= 1
    count = value("checkoutlab_gateway_attempt_duration_seconds_count", gateway="obs_gw")
    assert count == before["n"] + 5


def test_gateway_result_vocabulary():
    assert metrics.gateway_result("succeeded") == "succeeded"
    assert metrics.gateway_result("failed", retryable=False) == "declined"
    assert metrics.gateway_result("failed", retryable=True) == "error"
    assert metrics.gateway_result("requires_action") == "requires_action"
    assert metrics.gateway_result("unknown", decline_code="gateway_timeout") == "timeout"
    assert metrics.gateway_result("unknown", decline_code="gateway_unavailable") == "error"
    assert metrics.gateway_result("skipped") == "skipped"


def test_metrics_token_and_switch(settings, database):
    guarded = settings.model_copy(update={"metrics_token": SecretStr("scrape-me-0123456789")})
    with TestClient(create_app(guarded, database=database)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_metrics_token"
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        scrape(client, Authorization="Bearer scrape-me-0123456789")
    off = settings.model_copy(update={"metrics_enabled": False})
    with TestClient(create_app(off, database=database)) as client:
        response = client.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_fraud_model_version_in_use(monkeypatch):
    """The registry itself is exercised in test_mlflow_server.py; here only the reporting."""
    watcher = ChampionWatcher("http://127.0.0.1:9/unused")

    def no_champion(self) -> bool:
        raise RuntimeError("registry down")  # tick must report even when the check fails

    monkeypatch.setattr(ChampionWatcher, "check", no_champion)
    with pytest.raises(RuntimeError):
        watcher.tick()
    assert value("checkoutlab_fraud_model_version", model="fraud-scorer") == 0
    metrics.set_fraud_model("fraud-scorer", "7")
    assert value("checkoutlab_fraud_model_version", model="fraud-scorer") == 7


def test_bandit_snapshot_version_and_staleness(database, make_merchant):
    config = {"ordering_policy": "thompson", "ordering_params": {"seed": 1}}
    shop = make_merchant("Snapshots", config)
    log = Log(database, shop.id, config)
    t0 = utcnow() - timedelta(hours=2)
    log.succeed(log.serve(t0), t0 + timedelta(minutes=1))
    Learner(database, now=t0 + timedelta(hours=1)).run_once()  # writes snapshot 1
    provider = PolicyProvider(database)
    provider.policy_for(MerchantConfig.model_validate(config), shop.id)
    provider.tick()
    labels = {"merchant": shop.id, "policy": "thompson"}
    assert value("checkoutlab_bandit_snapshot_seq", **labels) == 1
    staleness = value("checkoutlab_bandit_snapshot_staleness_seconds", **labels)
    assert 0 <= staleness < provider.staleness_seconds


def test_learner_lag_counts_unconsumed_events_and_their_age(database, make_merchant):
    config = {"ordering_policy": "thompson", "ordering_params": {"seed": 1}}
    log = Log(database, make_merchant("Lagging", config).id, config)
    t0 = utcnow() - timedelta(minutes=10)
    decisions = [log.serve(t0 + timedelta(seconds=i)) for i in range(3)]
    log.succeed(decisions[0], t0 + timedelta(seconds=5))
    learner = Learner(database)
    lag = learner.lag()
    assert (lag.events, lag.cursor) == (4, 0)
    assert 590 < lag.seconds < 700  # the oldest waits since t0
    learner.run_once()
    caught_up = learner.lag()
    assert (caught_up.events, caught_up.seconds) == (0, 0.0)
    assert caught_up.cursor > 0
    learner._report_lag()
    assert value("checkoutlab_learner_lag_events") == 0
    assert value("checkoutlab_learner_cursor") == caught_up.cursor
    assert LAG_CAP >= 100_000


def test_learner_run_loop_reports_rewards_and_failures(database, make_merchant, monkeypatch):
    import threading

    config = {"ordering_policy": "thompson", "ordering_params": {"seed": 1}}
    log = Log(database, make_merchant("Loop", config).id, config)
    t0 = utcnow() - timedelta(hours=2)
    log.succeed(log.serve(t0), t0 + timedelta(minutes=1))
    before = value("checkoutlab_learner_rewards_total", outcome="succeeded")
    failures = value("checkoutlab_learner_batch_failures_total")
    learner = Learner(database)
    stop = threading.Event()
    calls = {"n": 0}
    real = learner.run_once

    def once(limit: int = 1000):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database went away")
        stats = real(limit=limit)
        stop.set()
        return stats

    monkeypatch.setattr(learner, "run_once", once)
    learner.run(interval_seconds=0.01, stop=stop)
    assert value("checkoutlab_learner_rewards_total", outcome="succeeded") == before + 1
    assert value("checkoutlab_learner_batch_failures_total") == failures + 1
    assert value("checkoutlab_learner_last_batch_timestamp_seconds") > 0


def test_multiprocess_directory_is_wiped_and_dead_workers_live_gauges_dropped(
    tmp_path: Path, monkeypatch
):
    (tmp_path / "counter_1.db").write_bytes(b"old run")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "restored-after-the-test")
    path, created = metrics.prepare_multiprocess_dir(tmp_path)
    assert (path, created) == (str(tmp_path), False)
    assert os.environ[metrics.MULTIPROC_ENV] == str(tmp_path)
    assert list(tmp_path.iterdir()) == []

    dead = 2**22 + 12345  # above Linux's pid_max default: never a live process
    mine = os.getpid()
    for pid in (dead, mine):
        (tmp_path / f"gauge_liveall_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    metrics.worker_started()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert f"gauge_liveall_{dead}.db" not in names
    assert f"gauge_liveall_{mine}.db" in names
    assert f"counter_{dead}.db" in names  # counters of dead workers still count
    metrics.worker_stopped()
    assert f"gauge_liveall_{mine}.db" not in {p.name for p in tmp_path.iterdir()}

    fresh, created = metrics.prepare_multiprocess_dir()
    assert created and Path(fresh).is_dir()
    metrics.remove_multiprocess_dir(fresh)
    assert not Path(fresh).exists()


@pytest.mark.parametrize("method", ["BREW", "GET"])
def test_unknown_methods_do_not_create_label_values(method):
    before = value(
        "checkoutlab_http_requests_total", method="other", route="unmatched", status="405"
    )
    metrics.observe_request(method, "unmatched", 405, 0.001)
    after = value(
        "checkoutlab_http_requests_total", method="other", route="unmatched", status="405"
    )
    assert after - before == (1 if method == "BREW" else 0)


def test_confirms_count_as_gateway_attempts(client, new_checkout) -> None:
    """Routing records every attempt in one function; that is where the metric is counted."""
    before = {
        result: value("checkoutlab_gateway_attempts_total", gateway="sandbox", result=result)
        for result in ("succeeded", "declined")
    }
    paid = new_checkout()
    assert paid.confirm(paid.profile()["token"], key="ok").status_code == 200
    declined = new_checkout()
    answer = declined.confirm(declined.profile()["token"], key="no", card="4000000000000002")
    assert answer.status_code == 402
    after = {
        result: value("checkoutlab_gateway_attempts_total", gateway="sandbox", result=result)
        for result in ("succeeded", "declined")
    }
    assert after == {"succeeded": before["succeeded"] + 1, "declined": before["declined"] + 1}


def test_multiprocess_wipe_keeps_files_that_are_not_prometheus_clients(tmp_path: Path, monkeypatch):
    """The directory is the operator's choice: only prometheus-client's files are removed."""
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "restored-after-the-test")
    for name in ("counter_7.db", "gauge_liveall_7.db", "histogram_7.db", "summary_7.db"):
        (tmp_path / name).write_bytes(b"old run")
    for name in ("checkoutlab.db", "mlflow.db", "notes.txt"):
        (tmp_path / name).write_bytes(b"keep me")
    metrics.prepare_multiprocess_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkoutlab.db",
        "mlflow.db",
        "notes.txt",
    ]


def test_production_refuses_to_start_with_open_metrics() -> None:
    """/metrics names merchants, experiments and model versions: not open in production."""
    from checkoutlab.config import Settings

    secret = "s" * 40
    with pytest.raises(ValueError, match="CHECKOUTLAB_METRICS_TOKEN must be set in production"):
        Settings(environment="production", secret_key=secret)
    Settings(environment="production", secret_key=secret, metrics_token="t" * 32)
    Settings(environment="production", secret_key=secret, metrics_enabled=False)
    Settings(environment="development")  # open by default for the demo and tests
