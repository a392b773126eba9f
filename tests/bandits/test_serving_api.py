"""``GET /v1/bandits/{policy}``, merchant configuration of bandits, and the loop end to end.

Until the lead wires ``checkoutlab.bandits`` into ``create_app``, the ``bandit_client``
fixture mounts the router and a provider on the test app itself; once wired it uses the
app's own. The end-to-end profile test needs the profile builder to ask the provider
(``ProfileServices.policy(config, merchant_id)``) and is skipped until then.
"""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from checkoutlab.bandits.learner import Learner
from checkoutlab.bandits.models import DecisionReward
from checkoutlab.bandits.router import router as bandits_router
from checkoutlab.bandits.serving import PolicyProvider, fresh_policy_for, policy_config_id
from checkoutlab.db import utcnow
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.schemas import MerchantConfig
from checkoutlab.profile.builder import ProfileServices

from .test_learner import Log

THOMPSON = {"ordering_policy": "thompson", "ordering_params": {"seed": 4}}


def _router_mounted(app) -> bool:
    return any(getattr(r, "path", None) == "/v1/bandits/{policy}" for r in app.routes)


def _builder_wired() -> bool:
    return len(inspect.signature(ProfileServices.policy).parameters) >= 3


@pytest.fixture
def bandit_client(client: TestClient, database) -> TestClient:
    app = client.app
    if not _router_mounted(app):
        app.include_router(bandits_router)
    if getattr(app.state, "bandit_provider", None) is None:
        app.state.bandit_provider = PolicyProvider(database)
    return client


def trained_log(database, merchant_id: str, config: dict, n: int = 6) -> Log:
    log = Log(database, merchant_id, config)
    t0 = utcnow() - timedelta(hours=2)
    for i in range(n):
        decision = log.serve(t0 + timedelta(seconds=i), ordering=[["ideal", "card"][i % 2]])
        if i % 2 == 0:
            log.succeed(decision, t0 + timedelta(minutes=1))
    Learner(database, now=t0 + timedelta(hours=1)).run_once()
    return log


# -- /v1/bandits/{policy} -----------------------------------------------------------------------


def test_bandit_shape(bandit_client, make_merchant, database) -> None:
    shop = make_merchant("Bandit Shop", THOMPSON)
    trained_log(database, shop.id, THOMPSON)
    response = bandit_client.get("/v1/bandits/thompson", headers=shop.secret_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    cid = policy_config_id("thompson", THOMPSON["ordering_params"])
    assert body["object"] == "bandit" and body["policy"] == "thompson" and body["configured"]
    assert (body["config_id"], body["version"], body["snapshot"], body["updates"]) == (
        cid,
        f"{cid}.6",
        1,
        6,
    )
    assert body["params"]["seed"] == 4 and body["updated_at"] is not None
    arms = {arm["method"]: arm for arm in body["arms"]}
    assert set(arms) == {m.value for m in MerchantConfig().ordered_methods()}
    assert (arms["ideal"]["pulls"], arms["card"]["pulls"], arms["klarna"]["pulls"]) == (3, 3, 0)
    assert arms["ideal"]["posterior"] == {"alpha": 4.0, "beta": 1.0, "mean": 0.8}
    assert arms["ideal"]["estimate"] == 0.8 and arms["ideal"]["mean_reward"] == 1.0
    assert arms["card"]["posterior"] == {"alpha": 1.0, "beta": 4.0, "mean": 0.2}
    assert arms["klarna"]["estimate"] == 0.5 and arms["klarna"]["mean_reward"] is None
    serving = body["serving"]
    assert serving["version"] == f"{cid}.6" and serving["snapshot"] == 1
    assert serving["policy"] == "thompson" and not serving["degraded"]
    assert 0 <= serving["staleness_seconds"] <= serving["max_staleness_seconds"] == 5.0
    assert body["max_staleness_seconds"] == 5.0


def test_bandit_before_any_snapshot_and_after_config_change(
    bandit_client, make_merchant, database
) -> None:
    shop = make_merchant("New", {"ordering_policy": "ucb"})
    body = bandit_client.get("/v1/bandits/ucb", headers=shop.secret_headers).json()
    cid = policy_config_id("ucb", {})
    assert (body["version"], body["snapshot"], body["updates"], body["updated_at"]) == (
        f"{cid}.0",
        0,
        0,
        None,
    )
    assert all(arm["pulls"] == 0 and arm["posterior"] is None for arm in body["arms"])

    # A bandit the merchant used before but no longer configures: its newest chain.
    old = make_merchant("Switched", THOMPSON)
    trained_log(database, old.id, THOMPSON)
    with database.session() as db:
        merchants.set_config(db=db, merchant_id=old.id, config=MerchantConfig())
    body = bandit_client.get("/v1/bandits/thompson", headers=old.secret_headers).json()
    assert not body["configured"] and body["updates"] == 6 and body["serving"] is None


def test_bandit_needs_the_secret_key(bandit_client, make_merchant) -> None:
    shop = make_merchant("Keys", THOMPSON)
    response = bandit_client.get("/v1/bandits/thompson", headers=shop.public_headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "secret_key_required"
    assert bandit_client.get("/v1/bandits/thompson").status_code == 401


def test_bandit_is_merchant_scoped(bandit_client, make_merchant, database) -> None:
    a = make_merchant("A", THOMPSON)
    b = make_merchant("B", THOMPSON)
    static = make_merchant("Static", {"ordering_policy": "context_rules"})
    trained_log(database, a.id, THOMPSON)
    body_a = bandit_client.get("/v1/bandits/thompson", headers=a.secret_headers).json()
    body_b = bandit_client.get("/v1/bandits/thompson", headers=b.secret_headers).json()
    assert body_a["updates"] == 6 and sum(arm["pulls"] for arm in body_a["arms"]) == 6
    assert body_b["updates"] == 0 and sum(arm["pulls"] for arm in body_b["arms"]) == 0

    response = bandit_client.get("/v1/bandits/thompson", headers=static.secret_headers)
    assert response.status_code == 404
    assert "ordering_policy" in response.json()["error"]["message"]
    for name in ("nope", "context_rules"):
        response = bandit_client.get(f"/v1/bandits/{name}", headers=a.secret_headers)
        assert response.status_code == 404 and "Bandits:" in response.json()["error"]["message"]


# -- merchant configuration -----------------------------------------------------------------------


def test_ordering_policy_config_is_validated() -> None:
    config = MerchantConfig.model_validate(
        {"ordering_policy": "epsilon_greedy", "ordering_params": {"epsilon": 0.2}}
    )
    assert fresh_policy_for(config).epsilon == 0.2
    assert MerchantConfig().ordering_params == {}
    for bad, message in (
        ({"ordering_policy": "bandit9"}, "ordering_policy"),
        ({"ordering_policy": "thompson", "ordering_params": {"eps": 1}}, "accept"),
        ({"ordering_policy": "epsilon_greedy", "ordering_params": {"epsilon": 2}}, "epsilon"),
        ({"ordering_policy": "merchant_order", "ordering_params": {"epsilon": 0.1}}, "bandit"),
    ):
        with pytest.raises(ValidationError, match=message):
            MerchantConfig.model_validate(bad)


# -- end to end through HTTP (needs the builder wiring) -------------------------------------------


@pytest.mark.skipif(
    not _builder_wired(),
    reason="NEEDS LEAD WIRING: ProfileServices.policy(config, merchant_id) and a "
    "PolicyProvider in create_app (see the bandits hand-over)",
)
def test_bandit_orders_profiles_end_to_end(
    bandit_client, make_merchant, new_checkout, database
) -> None:
    shop = make_merchant("E2E", THOMPSON)
    cid = policy_config_id("thompson", THOMPSON["ordering_params"])
    context = {"device": {"type": "desktop"}}

    paid = 0
    for i in range(6):
        session = new_checkout(owner=shop)
        profile = session.profile(context)
        ordering = profile["ordering"]
        assert ordering["policy"] == "thompson"
        assert ordering["policy_version"] == f"{cid}.0"
        assert 0 < ordering["propensity"] <= 1
        if i % 2 == 0:
            assert "card" in [m["type"] for m in profile["methods"]]
            response = session.confirm(profile["token"], key=f"e2e-{i}")
            assert response.status_code == 200, response.text
            paid += 1

    stats = Learner(database, now=utcnow() + timedelta(minutes=31)).run_once()
    assert (stats.succeeded, stats.window_closed, stats.applied) == (paid, 6 - paid, 6)
    with database.session() as db:
        assert len(db.scalars(select(DecisionReward)).all()) == 6

    provider = bandit_client.app.state.bandit_provider
    provider.refresh()  # instead of waiting for the background thread
    profile = new_checkout(owner=shop).profile(context)
    assert profile["ordering"]["policy_version"] == f"{cid}.6"
    body = bandit_client.get("/v1/bandits/thompson", headers=shop.secret_headers).json()
    assert body["updates"] == 6 and sum(arm["pulls"] for arm in body["arms"]) == 6
    assert body["serving"]["version"] == f"{cid}.6"
