"""The compiled scoring path gives the training pipeline's own probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from checkoutlab.fraud.compiled import UnsupportedModel, compile_pipeline
from checkoutlab.fraud.features import FEATURE_COLUMNS
from checkoutlab.fraud.train import FeatureFrame

COLUMNS = [*FEATURE_COLUMNS, "TX_AMOUNT_TO_CUSTOMER_AVG_7DAY_WINDOW"]


def _data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.gamma(2.0, 10.0, size=(n, len(FEATURE_COLUMNS))), columns=FEATURE_COLUMNS
    )
    frame["TX_DURING_NIGHT"] = rng.integers(0, 2, n)
    frame.loc[::7, "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW"] = 0.0  # ratio's zero-denominator rule
    logit = 0.08 * frame["TX_AMOUNT"] - 3 + 1.5 * frame["TX_DURING_NIGHT"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


def _pipeline(estimator, method: str, scale: bool) -> Pipeline:
    X, y = _data(1500, 0)
    X_cal, y_cal = _data(800, 1)
    select = FeatureFrame(COLUMNS).fit(X)
    scaler = StandardScaler().fit(select.transform(X)) if scale else "passthrough"

    def z(frame: pd.DataFrame) -> np.ndarray:
        values = select.transform(frame)
        return scaler.transform(values) if scale else values

    estimator.fit(z(X), y)
    calibrated = CalibratedClassifierCV(FrozenEstimator(estimator), method=method).fit(
        z(X_cal), y_cal
    )
    return Pipeline([("features", select), ("scale", scaler), ("classifier", calibrated)])


@pytest.mark.parametrize(
    ("estimator", "method", "scale"),
    [
        (LogisticRegression(max_iter=1000), "sigmoid", True),
        (LogisticRegression(max_iter=1000), "isotonic", True),
        (RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0), "sigmoid", False),
        (ExtraTreesClassifier(n_estimators=10, random_state=0), "isotonic", False),
        (HistGradientBoostingClassifier(max_iter=30, random_state=0), "sigmoid", False),
        (HistGradientBoostingClassifier(max_iter=30, random_state=0), "isotonic", False),
    ],
    ids=[
        "logreg-sigmoid",
        "logreg-isotonic",
        "rf-sigmoid",
        "et-isotonic",
        "hgb-sigmoid",
        "hgb-isotonic",
    ],
)
def test_compiled_probabilities_equal_the_pipeline(estimator, method, scale) -> None:
    pipeline = _pipeline(estimator, method, scale)
    compiled = compile_pipeline(pipeline)
    X, _ = _data(300, 2)
    expected = pipeline.predict_proba(X)[:, 1]
    got = np.array([compiled.predict_one(row) for row in X.to_dict("records")])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert expected.std() > 0  # the comparison is over varied probabilities, not a constant


def test_unsupported_estimator_is_refused() -> None:
    pipeline = _pipeline(LinearSVC(), "sigmoid", True)
    with pytest.raises(UnsupportedModel, match="LinearSVC"):
        compile_pipeline(pipeline)
