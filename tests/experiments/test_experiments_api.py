"""/v1/experiments: CRUD, lifecycle, validation and merchant scoping."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from checkoutlab.api.app import create_app
from checkoutlab.config import Settings
from checkoutlab.db import Database
from checkoutlab.experiments.router import router as experiments_router
from checkoutlab.merchants import service as merchants


@pytest.fixture
def app(settings: Settings, database: Database) -> Any:
    """The app, with the experiments router whether or not app.py includes it yet."""
    application = create_app(settings, database=database)
    if not any(getattr(r, "path", "").startswith("/v1/experiments") for r in application.routes):
        application.include_router(experiments_router)
    return application


def definition(key: str = "one_page", **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "hypothesis": "An accordion layout converts better on mobile.",
        "variants": [
            {"key": "control", "control": True, "weight": 1},
            {
                "key": "accordion",
                "weight": 1,
                "config": {
                    "layout": "accordion",
                    "ordering_policy": "thompson",
                    "theme": {"primary_color": "#0a7d32"},
                    "copy_overrides": {"pay_button": "Pay securely"},
                    "verification_add": ["cvv"],
                },
            },
        ],
        "targeting": 'context.device.type == "mobile"',
        "namespace": {"name": "checkout", "start": 0, "end": 0.5},
    } | extra


def test_create_get_list(client: TestClient, merchant: Any) -> None:
    created = client.post("/v1/experiments", json=definition(), headers=merchant.secret_headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["object"] == "experiment" and body["status"] == "draft"
    assert body["seed"] and body["metrics"]["primary"] == "conversion"
    assert [g["metric"] for g in body["metrics"]["guardrails"]] == [
        "fraud_rate",
        "decline_rate",
        "time_to_pay",
    ]
    assert body["allocation"]["type"] == "fixed"
    got = client.get("/v1/experiments/one_page", headers=merchant.secret_headers)
    assert got.status_code == 200 and got.json() == body
    listed = client.get("/v1/experiments", headers=merchant.secret_headers).json()
    assert [e["key"] for e in listed["data"]] == ["one_page"]
    again = client.post("/v1/experiments", json=definition(), headers=merchant.secret_headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "experiment_exists"


@pytest.mark.parametrize(
    ("change", "param", "fragment"),
    [
        (
            {"variants": [{"key": "a", "control": True, "weight": -1}, {"key": "b"}]},
            "variants",
            "positive",
        ),
        ({"variants": [{"key": "a", "control": True}, {"key": "a"}]}, "variants", "unique"),
        ({"variants": [{"key": "a"}, {"key": "b"}]}, "variants", "exactly one"),
        (
            {"variants": [{"key": "a", "control": True}, {"key": "b", "control": True}]},
            "variants",
            "exactly one",
        ),
        ({"targeting": "context.device.type == "}, "targeting", "line"),
        ({"key": "Bad Key!"}, "key", ""),
        ({"namespace": {"name": "n", "start": 0.6, "end": 0.4}}, "namespace", "empty"),
        (
            {
                "variants": [
                    {"key": "a", "control": True},
                    {"key": "b", "config": {"verification_remove": ["cvv"]}},
                ]
            },
            "variants",
            "",
        ),
    ],
)
def test_validation_errors_are_clear(
    client: TestClient, merchant: Any, change: dict[str, Any], param: str, fragment: str
) -> None:
    response = client.post(
        "/v1/experiments", json=definition() | change, headers=merchant.secret_headers
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"].startswith(param)
    assert fragment in error["message"]


def test_lifecycle_and_invalid_transitions(client: TestClient, merchant: Any) -> None:
    h = merchant.secret_headers
    client.post("/v1/experiments", json=definition(), headers=h)
    stop = client.post("/v1/experiments/one_page/stop", headers=h)
    assert stop.status_code == 409 and stop.json()["error"]["code"] == "invalid_transition"
    assert client.post("/v1/experiments/one_page/start", headers=h).json()["status"] == "running"
    assert client.post("/v1/experiments/one_page/start", headers=h).status_code == 409

    weights = client.patch(
        "/v1/experiments/one_page", json={"weights": {"accordion": 3}}, headers=h
    )
    assert weights.status_code == 200, weights.text
    assert [v["weight"] for v in weights.json()["variants"]] == [1, 3]
    locked = client.patch("/v1/experiments/one_page", json={"targeting": "true"}, headers=h)
    assert locked.status_code == 409 and locked.json()["error"]["param"] == "targeting"
    unknown = client.patch("/v1/experiments/one_page", json={"weights": {"zzz": 1}}, headers=h)
    assert unknown.status_code == 400
    zero = client.patch("/v1/experiments/one_page", json={"weights": {"control": 0}}, headers=h)
    assert zero.status_code == 400

    assert client.post("/v1/experiments/one_page/stop", headers=h).json()["status"] == "stopped"
    missing = client.post("/v1/experiments/one_page/ship", json={}, headers=h)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "variant"
    wrong = client.post("/v1/experiments/one_page/ship", json={"variant": "nope"}, headers=h)
    assert wrong.status_code == 400
    shipped = client.post("/v1/experiments/one_page/ship", json={"variant": "accordion"}, headers=h)
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["status"] == "shipped"
    assert shipped.json()["shipped_variant"] == "accordion"
    assert client.post("/v1/experiments/one_page/start", headers=h).status_code == 409


def test_shipping_makes_the_winner_the_merchant_default(
    client: TestClient, merchant: Any, database: Database
) -> None:
    h = merchant.secret_headers
    client.post("/v1/experiments", json=definition(), headers=h)
    client.post("/v1/experiments/one_page/start", headers=h)
    client.post("/v1/experiments/one_page/ship", json={"variant": "accordion"}, headers=h)
    with database.session() as db:
        config = merchants.config_of(merchants.get(db=db, merchant_id=merchant.id))
    assert config.layout == "accordion"
    assert config.ordering_policy == "thompson"
    assert config.theme.primary_color == "#0a7d32"
    assert config.copy_overrides.pay_button == "Pay securely"


def test_shipped_copy_and_loyalty_placement_reach_later_forms(
    client: TestClient, merchant: Any, new_checkout: Any
) -> None:
    """Copy and loyalty placement are part of the winner's form, so they ship too."""
    h = merchant.secret_headers
    winner = definition(targeting=None, namespace=None)
    winner["variants"][1]["config"]["loyalty_placement"] = "summary"
    client.post("/v1/experiments", json=winner, headers=h)
    client.post("/v1/experiments/one_page/start", headers=h)
    client.post("/v1/experiments/one_page/stop", headers=h)
    shipped = client.post("/v1/experiments/one_page/ship", json={"variant": "accordion"}, headers=h)
    assert shipped.status_code == 200, shipped.text
    ui = new_checkout().profile()["ui"]
    assert ui["layout"] == "accordion"
    assert ui["copy_overrides"]["pay_button"] == "Pay securely"
    assert ui["loyalty_placement"] == "summary"


def test_draft_can_be_edited_freely(client: TestClient, merchant: Any) -> None:
    h = merchant.secret_headers
    client.post("/v1/experiments", json=definition(), headers=h)
    patched = client.patch(
        "/v1/experiments/one_page",
        json={"targeting": None, "namespace": None, "hypothesis": "h2"},
        headers=h,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["targeting"] is None and patched.json()["namespace"] is None
    bad = client.patch("/v1/experiments/one_page", json={"targeting": "1 +"}, headers=h)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "targeting"


def test_overlapping_namespace_cannot_start(client: TestClient, merchant: Any) -> None:
    h = merchant.secret_headers
    client.post("/v1/experiments", json=definition("a"), headers=h)
    client.post(
        "/v1/experiments",
        json=definition("b", namespace={"name": "checkout", "start": 0.25, "end": 1}),
        headers=h,
    )
    assert client.post("/v1/experiments/a/start", headers=h).status_code == 200
    conflict = client.post("/v1/experiments/b/start", headers=h)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "namespace_conflict"


def test_merchant_scoping(client: TestClient, merchant: Any, make_merchant: Any) -> None:
    other = make_merchant("Other Shop")
    client.post("/v1/experiments", json=definition(), headers=merchant.secret_headers)
    for method, path in [
        ("get", "/v1/experiments/one_page"),
        ("get", "/v1/experiments/one_page/results"),
        ("post", "/v1/experiments/one_page/start"),
        ("patch", "/v1/experiments/one_page"),
    ]:
        kwargs: dict[str, Any] = {"json": {}} if method == "patch" else {}
        response = getattr(client, method)(path, headers=other.secret_headers, **kwargs)
        assert response.status_code == 404, (path, response.text)
    assert client.get("/v1/experiments", headers=other.secret_headers).json()["data"] == []
    # the same key is free for another merchant
    mine = client.post("/v1/experiments", json=definition(), headers=other.secret_headers)
    assert mine.status_code == 201
    assert client.get("/v1/experiments", headers=merchant.public_headers).status_code == 403
    assert client.get("/v1/experiments").status_code == 401


def test_results_before_any_traffic(client: TestClient, merchant: Any) -> None:
    h = merchant.secret_headers
    client.post("/v1/experiments", json=definition(), headers=h)
    results = client.get("/v1/experiments/one_page/results", headers=h)
    assert results.status_code == 200, results.text
    body = results.json()
    assert body["object"] == "experiment_results"
    assert [v["units"] for v in body["variants"]] == [0, 0]
    assert body["srm"]["mismatch"] is False
    assert all(c["error"] for c in body["comparisons"])
    assert {g["status"] for g in body["guardrails"]} == {"insufficient_data"}
    assert body["timeseries"] == []
    assert body["cuped"] == []  # only on request
    adjusted = client.get("/v1/experiments/one_page/results?cuped=true", headers=h).json()
    assert [(c["variant"], c["error"]) for c in adjusted["cuped"]] == [
        ("accordion", "no exposures yet")
    ]


# --------------------------------------------------------------------------------------------
# Through the profile builder (skipped until the builder calls experiments.assignment.assign)
# --------------------------------------------------------------------------------------------

import inspect  # noqa: E402

import checkoutlab.profile.builder as _builder  # noqa: E402

wired = pytest.mark.skipif(
    "experiments.assignment" not in inspect.getsource(_builder),
    reason="the profile builder does not call checkoutlab.experiments.assignment.assign yet",
)


@wired
def test_profile_carries_the_variant_and_the_decision_logs_it(
    client: TestClient, merchant: Any, new_checkout: Any, database: Database
) -> None:
    from sqlalchemy import select

    from checkoutlab.profile.models import Decision

    h = merchant.secret_headers
    client.post(
        "/v1/experiments",
        json=definition(targeting=None, namespace=None, seed="fixed"),
        headers=h,
    )
    client.post("/v1/experiments/one_page/start", headers=h)
    seen = {}
    for i in range(12):
        profile = new_checkout(customer=f"cust-{i % 6}").profile({"device": {"type": "mobile"}})
        experiment = profile["experiment"]
        assert experiment["key"] == "one_page" and experiment["probability"] == 0.5
        customer = f"cust-{i % 6}"
        assert seen.setdefault(customer, experiment["variant"]) == experiment["variant"]
        if experiment["variant"] == "accordion":
            assert profile["ui"]["layout"] == "accordion"
            assert profile["verification"]["cvv"] is True  # added by the variant
            assert profile["ui"]["theme"]["primary_color"] == "#0a7d32"
        with database.session() as db:
            decision = db.get(Decision, profile["id"])
            assert decision.experiment_key == "one_page"
            assert decision.variant == experiment["variant"]
            assert decision.assignment_probability == 0.5
    assert set(seen.values()) == {"control", "accordion"}
    with database.session() as db:
        assert db.scalar(select(Decision.id).where(Decision.variant.is_(None))) is None


@wired
def test_simulated_lift_is_covered_by_the_interval(client: TestClient, merchant: Any) -> None:
    from checkoutlab.experiments.cli import simulate_shoppers

    h = merchant.secret_headers
    body = definition(targeting=None, namespace=None, seed="sim")
    body["variants"][1]["config"] = {"layout": "accordion"}
    client.post("/v1/experiments", json=body, headers=h)
    client.post("/v1/experiments/one_page/start", headers=h)
    counts = simulate_shoppers(
        client,
        secret_headers=h,
        public_headers=merchant.public_headers,
        sessions=300,
        effects={"accordion": 0.3},
        base_rate=0.3,
        seed=1,
    )
    assert set(counts) == {"control", "accordion"}
    results = client.get("/v1/experiments/one_page/results", headers=h).json()
    conversion = next(c for c in results["comparisons"] if c["metric"] == "conversion")
    assert conversion["ci"][0] < 1.0 < conversion["ci"][1]  # true relative lift 0.3 / 0.3
    assert conversion["ci"][0] > 0
    units = {v["key"]: v["units"] for v in results["variants"]}
    assert units == {k: counts[k]["sessions"] for k in units}
    assert results["srm"]["mismatch"] is False
    assert {p["variant"] for p in results["timeseries"]} == {"control", "accordion"}


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

EXP_YAML = """
key: cta_copy
hypothesis: Friendlier button copy converts better.
seed: cli
variants:
  - key: control
    control: true
    weight: 1
  - key: friendly
    weight: 1
    config:
      layout: list
      copy_overrides:
        pay_button: Complete my order
"""


@pytest.fixture
def cli_db(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from checkoutlab.config import get_settings

    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CHECKOUTLAB_DATABASE_URL", url)
    get_settings.cache_clear()
    database = Database(url)
    database.upgrade()
    with database.session() as db:
        created = merchants.create(db=db, name="CLI shop")
    yield database, created.merchant_id
    database.dispose()
    get_settings.cache_clear()


def test_cli_lifecycle_and_results(cli_db: Any, tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from checkoutlab.experiments.cli import app as cli

    runner = CliRunner()
    database, merchant_id = cli_db
    spec = tmp_path / "exp.yaml"
    spec.write_text(EXP_YAML)
    result = runner.invoke(cli, ["create", "--file", str(spec), "--merchant", merchant_id])
    assert result.exit_code == 0, result.output
    assert "cta_copy draft" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXP_YAML.replace("weight: 1\n    config", "weight: -2\n    config"))
    result = runner.invoke(cli, ["create", "--file", str(bad), "--merchant", merchant_id])
    assert result.exit_code == 1 and "positive" in result.output
    assert runner.invoke(cli, ["stop", "cta_copy"]).exit_code == 1  # draft: invalid
    assert "running" in runner.invoke(cli, ["start", "cta_copy"]).output
    table = runner.invoke(cli, ["results", "cta_copy"])
    assert table.exit_code == 0, table.output
    assert "conversion" in table.output and "SRM" in table.output
    as_json = runner.invoke(cli, ["results", "cta_copy", "--json"])
    assert json.loads(as_json.stdout)["object"] == "experiment_results"
    with_cuped = runner.invoke(cli, ["results", "cta_copy", "--json", "--cuped"])
    assert [c["variant"] for c in json.loads(with_cuped.stdout)["cuped"]] == ["friendly"]
    assert "CUPED" in runner.invoke(cli, ["results", "cta_copy", "--cuped"]).output
    shipped = runner.invoke(cli, ["ship", "cta_copy", "--variant", "friendly"])
    assert shipped.exit_code == 0 and "shipped" in shipped.output, shipped.output
    with database.session() as db:
        config = merchants.config_of(merchants.get(db=db, merchant_id=merchant_id))
    assert config.layout == "list"
    missing = runner.invoke(cli, ["start", "nope"])
    assert missing.exit_code == 1 and "No such experiment" in missing.output


@wired
def test_cli_simulate_in_process(cli_db: Any, tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from checkoutlab.experiments.cli import app as cli

    runner = CliRunner()
    _, merchant_id = cli_db
    spec = tmp_path / "exp.yaml"
    spec.write_text(EXP_YAML)
    runner.invoke(cli, ["create", "--file", str(spec), "--merchant", merchant_id])
    runner.invoke(cli, ["start", "cta_copy"])
    result = runner.invoke(
        cli,
        ["simulate", "cta_copy", "--sessions", "40", "--effect", "friendly=0.2", "--json"],
    )
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert set(counts) == {"control", "friendly"}
    assert sum(c["sessions"] for c in counts.values()) == 40
