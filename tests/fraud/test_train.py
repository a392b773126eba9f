"""Specs, the calibrated pipeline and train_from_spec on small simulated data."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import average_precision_score
from sklearn.pipeline import Pipeline

from checkoutlab.fraud.data import save_transactions
from checkoutlab.fraud.evaluate import SplitError
from checkoutlab.fraud.features import FEATURE_COLUMNS
from checkoutlab.fraud.simulate import simulate
from checkoutlab.fraud.specs import SpecError, load_spec, parse_spec
from checkoutlab.fraud.train import FeatureFrame, data_fingerprint, train_from_spec

MODELS = Path(__file__).resolve().parents[2] / "models"
RATIOS = [f"TX_AMOUNT_TO_CUSTOMER_AVG_{w}DAY_WINDOW" for w in (1, 7, 30)]


@pytest.fixture(scope="module")
def tx() -> pd.DataFrame:
    return simulate(n_customers=300, n_terminals=600, n_days=90, start="2018-06-01")


@pytest.fixture(scope="module")
def logreg(tx: pd.DataFrame):
    return train_from_spec(load_spec(MODELS / "logreg.yaml"), tx)


# ---------------------------------------------------------------------------- specs


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.name)
def test_repository_specs_are_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.calibration.days < spec.split.train_days


def test_handbook_features_and_derived_inputs() -> None:
    spec = parse_spec(
        {"name": "x", "estimator": "random_forest", "features": ["handbook", *RATIOS]}
    )
    features = spec.resolve_features()
    assert features.outputs == [*FEATURE_COLUMNS, *RATIOS]
    assert features.inputs == FEATURE_COLUMNS
    only = parse_spec(
        {"name": "y", "estimator": "random_forest", "features": [RATIOS[1], "TX_DURING_NIGHT"]}
    ).resolve_features()
    assert only.inputs == ["TX_AMOUNT", "TX_DURING_NIGHT", "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"]
    context = parse_spec(
        {"name": "z", "estimator": "random_forest", "features": ["handbook", "DEVICE_TYPE_MOBILE"]}
    ).resolve_features()
    assert context.context_columns == ["DEVICE_TYPE"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"estimator": "xgboost"}, "estimator"),
        ({"params": {"n_trees": 5}}, "unknown parameter(s) ['n_trees']"),
        ({"features": ["handbook", "TX_COLOUR"]}, "unknown feature 'TX_COLOUR'"),
        ({"features": ["TX_AMOUNT_TO_CUSTOMER_AVG_2DAY_WINDOW"]}, "window 2 is not one of"),
        ({"calibration": {"method": "sigmoid", "days": 7}}, "must be smaller than"),
        ({"calibration": {"method": "beta"}}, "calibration.method"),
        ({"split": {"train_start": "soon"}}, "split.train_start"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_specs_name_the_field(change: dict, message: str) -> None:
    data = {"name": "bad", "estimator": "logistic_regression", **change}
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="bad.yaml")
    assert message in str(info.value) and str(info.value).startswith("bad.yaml")


def test_load_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(listed)


# ---------------------------------------------------------------------------- FeatureFrame


def test_feature_frame_derives_ratios_and_checks_its_input() -> None:
    X = pd.DataFrame({"TX_AMOUNT": [50.0, 8.0], "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW": [10.0, 0.0]})
    frame = FeatureFrame(["TX_AMOUNT", RATIOS[1]]).fit(X)
    assert frame.transform(X).tolist() == [[50.0, 5.0], [8.0, 0.0]]
    assert frame.get_feature_names_out().tolist() == ["TX_AMOUNT", RATIOS[1]]
    with pytest.raises(ValueError, match="CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"):
        frame.transform(X[["TX_AMOUNT"]])
    with pytest.raises(TypeError, match="DataFrame"):
        frame.transform(X.to_numpy())


# ---------------------------------------------------------------------------- training


def test_train_gives_one_calibrated_pipeline(logreg, tx: pd.DataFrame) -> None:
    model = logreg.model
    assert isinstance(model, Pipeline)
    assert [name for name, _ in model.steps] == ["features", "scale", "classifier"]
    assert isinstance(model.named_steps["classifier"], CalibratedClassifierCV)
    p = logreg.predictions["probability"].to_numpy()
    assert np.all((p >= 0) & (p <= 1))
    base_rate = logreg.fraud_rate["test"]
    assert logreg.metrics["average_precision"] > 3 * base_rate
    assert logreg.metrics["average_precision"] == pytest.approx(
        average_precision_score(logreg.predictions["TX_FRAUD"], p)
    )
    assert logreg.rows["fit"] > 0 and logreg.rows["calibration"] > 0 and logreg.rows["test"] > 0


def test_pipeline_scores_a_dataframe_of_input_columns(logreg) -> None:
    example = logreg.input_example
    assert list(example.columns) == logreg.features.inputs == FEATURE_COLUMNS
    expected = logreg.model.predict_proba(example)[:, 1]
    shuffled = example[example.columns[::-1]].assign(EXTRA=1)  # order and extras do not matter
    assert np.allclose(logreg.model.predict_proba(shuffled)[:, 1], expected)


def test_split_layout_respects_the_label_delay(logreg) -> None:
    split = logreg.split
    assert split.train_start == date(2018, 7, 25)
    assert split.fit_end == date(2018, 7, 30)  # calibration = last 2 of the 7 training days
    assert split.test_start == split.train_end + timedelta(days=7)
    days = logreg.predictions["day"]
    assert days.min() == pd.Timestamp("2018-08-08") and days.max() == pd.Timestamp("2018-08-14")


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_tree_spec_with_derived_features(tx: pd.DataFrame, method: str) -> None:
    spec = parse_spec(
        {
            "name": "rf-small",
            "estimator": "random_forest",
            "params": {"n_estimators": 30, "max_depth": 8, "n_jobs": 1},
            "features": ["handbook", *RATIOS],
            "calibration": {"method": method, "days": 2},
        }
    )
    result = train_from_spec(spec, tx)
    assert result.model.named_steps["scale"] == "passthrough"
    assert result.model.named_steps["classifier"].method == method
    p = result.predictions["probability"]
    assert p.between(0, 1).all()
    assert result.metrics["average_precision"] > 3 * result.fraud_rate["test"]


def test_train_from_file_fingerprint_and_train_start(tx: pd.DataFrame, tmp_path: Path) -> None:
    path = save_transactions(tx, tmp_path / "tx.parquet")
    spec = MODELS / "logreg.yaml"
    result = train_from_spec(spec, path, train_start=date(2018, 7, 18))
    assert result.data_sha256 == data_fingerprint(path) and len(result.data_sha256) == 64
    assert result.data_source == str(path)
    assert result.split.test_start == date(2018, 8, 1)
    assert data_fingerprint(tx) == data_fingerprint(tx.copy())
    assert data_fingerprint(tx) != data_fingerprint(tx.iloc[1:])
    with pytest.raises(SplitError, match=r"pick a split\.train_start inside the data"):
        train_from_spec(spec, tx, train_start=date(2018, 8, 20))
