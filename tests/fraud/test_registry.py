"""MLflow logging, registration of fraud-scorer versions and champion promotion (tmp SQLite)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from checkoutlab.fraud import registry
from checkoutlab.fraud.cli import app
from checkoutlab.fraud.data import save_transactions
from checkoutlab.fraud.evaluate import METRICS
from checkoutlab.fraud.simulate import simulate
from checkoutlab.fraud.specs import parse_spec
from checkoutlab.fraud.train import train_from_spec

runner = CliRunner()
GOOD = {"name": "lr", "estimator": "logistic_regression"}
WEAK = {
    "name": "weak",
    "estimator": "logistic_regression",
    "features": ["TX_DURING_WEEKEND", "TX_DURING_NIGHT"],
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("mlflow")
    tx = simulate(n_customers=300, n_terminals=600, n_days=90, start="2018-06-01")
    data = save_transactions(tx, tmp / "tx.parquet")
    uri = f"sqlite:///{tmp}/mlflow.db"
    good = train_from_spec(parse_spec(GOOD), data)
    weak = train_from_spec(parse_spec(WEAK), data)
    logged_good = registry.register(good, tracking_uri=uri)
    logged_weak = registry.register(weak, tracking_uri=uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return SimpleNamespace(
        tmp=tmp,
        tx=tx,
        data=data,
        uri=uri,
        good=good,
        weak=weak,
        logged_good=logged_good,
        logged_weak=logged_weak,
        client=client,
    )


def test_run_has_params_metrics_artifacts_and_fingerprint(env: SimpleNamespace) -> None:
    run = env.client.get_run(env.logged_good.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["estimator"] == "logistic_regression"
    assert params["split.train_start"] == "2018-07-25" and params["calibration.method"] == "sigmoid"
    assert params["data.sha256"] == env.good.data_sha256 == run.data.tags["data.sha256"]
    for m in METRICS:
        assert metrics[m] == pytest.approx(env.good.metrics[m])
    artifacts = {a.path for a in env.client.list_artifacts(run.info.run_id)}
    assert {"spec.yaml", "features.json", "plots"} <= artifacts
    plots = {a.path for a in env.client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/pr_curve.png", "plots/reliability_diagram.png"}
    # artifacts live next to the tmp database, not in ./mlruns
    assert (env.tmp / "mlartifacts").is_dir()
    assert not Path("mlruns").exists() or not any(Path("mlruns").glob(f"*/{run.info.run_id}"))


def test_registered_version_has_holdout_tags_and_loads_with_signature(env: SimpleNamespace) -> None:
    assert (env.logged_good.version, env.logged_weak.version) == ("1", "2")
    version = env.client.get_model_version(registry.MODEL_NAME, "1")
    assert float(version.tags["holdout.average_precision"]) == pytest.approx(
        env.good.metrics["average_precision"], abs=1e-6
    )
    assert version.tags["split.test_start"] == "2018-08-08"
    assert version.tags["data.sha256"] == env.good.data_sha256

    example = env.good.input_example
    uri = f"models:/{registry.MODEL_NAME}/1"
    with registry._tracking(env.uri):
        model = mlflow.sklearn.load_model(uri)
        pyfunc = mlflow.pyfunc.load_model(uri)
    expected = env.good.model.predict_proba(example)
    assert np.allclose(model.predict_proba(example), expected)
    assert np.allclose(np.asarray(pyfunc.predict(example)), expected)  # pyfunc = predict_proba
    assert pyfunc.metadata.get_input_schema().input_names() == env.good.features.inputs


def test_promote_gate_refuses_worse_accepts_with_force_and_says_why(env: SimpleNamespace) -> None:
    first = registry.promote(data=env.tx, version=1, tracking_uri=env.uri)
    assert first.promoted and "no champion yet" in first.reason
    assert env.client.get_model_version_by_alias(registry.MODEL_NAME, "champion").version == 1

    refused = registry.promote(data=env.tx, tracking_uri=env.uri)  # latest = the weak v2
    assert not refused.promoted and refused.candidate_version == "2"
    assert refused.champion_version == "1"
    assert refused.reason.startswith("not promoted") and "--force" in refused.reason
    assert (
        refused.candidate_metrics["average_precision"]
        < refused.champion_metrics["average_precision"]
    )
    # both re-scored on the same holdout rows: the champion's score is its registered one
    assert refused.champion_metrics["average_precision"] == pytest.approx(
        env.good.metrics["average_precision"]
    )
    assert env.client.get_model_version_by_alias(registry.MODEL_NAME, "champion").version == 1
    tags = env.client.get_model_version(registry.MODEL_NAME, "2").tags
    assert tags["promotion.decision"].startswith("not promoted")

    again = registry.promote(data=env.tx, version=1, tracking_uri=env.uri)
    assert not again.promoted and "already the champion" in again.reason

    result = runner.invoke(
        app,
        ["promote", "--data", str(env.data), "--version", "2", "--tracking-uri", env.uri],
    )
    assert result.exit_code == 0, result.output
    assert "not promoted" in result.stdout and "margin 0.005" in result.stdout

    result = runner.invoke(
        app,
        [
            "promote",
            "--data",
            str(env.data),
            "--version",
            "2",
            "--force",
            "--tracking-uri",
            env.uri,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "promoted version 2 by --force" in result.stdout
    assert env.client.get_model_version_by_alias(registry.MODEL_NAME, "champion").version == 2

    back = registry.promote(data=env.tx, version=1, tracking_uri=env.uri, margin=0.01)
    assert back.promoted and back.reason.startswith("promoted version 1:")


def test_promote_errors(env: SimpleNamespace) -> None:
    with pytest.raises(registry.RegistryError, match="no version 99"):
        registry.promote(data=env.tx, version=99, tracking_uri=env.uri)
    with pytest.raises(ValueError, match="unknown metric"):
        registry.promote(data=env.tx, metric="accuracy", tracking_uri=env.uri)
    empty = f"sqlite:///{env.tmp}/empty.db"
    with pytest.raises(registry.RegistryError, match="no versions of fraud-scorer"):
        registry.promote(data=env.tx, tracking_uri=empty)


def test_cli_train_logs_a_run_without_registering(env: SimpleNamespace) -> None:
    spec = env.tmp / "lr.yaml"
    spec.write_text("name: lr-cli\nestimator: logistic_regression\n")
    before = len(env.client.search_model_versions(f"name = '{registry.MODEL_NAME}'"))
    result = runner.invoke(
        app,
        [
            "train",
            "--spec",
            str(spec),
            "--data",
            str(env.data),
            "--tracking-uri",
            env.uri,
            "--no-register",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "average precision" in result.stdout and "not registered" in result.stdout
    after = len(env.client.search_model_versions(f"name = '{registry.MODEL_NAME}'"))
    assert after == before
    runs = env.client.search_runs(
        [env.client.get_experiment_by_name(registry.EXPERIMENT_NAME).experiment_id],
        filter_string="tags.`spec.name` = 'lr-cli'",
    )
    assert len(runs) == 1


def test_cli_train_reports_bad_input_clearly(env: SimpleNamespace, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("TRANSACTION_ID,TX_DATETIME\n1,2018-04-01\n")
    spec = tmp_path / "lr.yaml"
    spec.write_text("name: lr\nestimator: logistic_regression\n")
    result = runner.invoke(app, ["train", "--spec", str(spec), "--data", str(bad), "--no-log"])
    assert result.exit_code == 1
    assert "missing required columns" in result.stderr
    spec.write_text("name: lr\nestimator: logistic_regression\nparams: {C: 1, colour: red}\n")
    result = runner.invoke(app, ["train", "--spec", str(spec), "--data", str(env.data), "--no-log"])
    assert result.exit_code == 1 and "colour" in result.stderr


def test_figures_render(env: SimpleNamespace) -> None:
    y = env.good.predictions["TX_FRAUD"].to_numpy()
    p = env.good.predictions["probability"].to_numpy()
    for fig in (registry.pr_curve_figure(y, p), registry.reliability_figure(y, p)):
        assert fig.axes
