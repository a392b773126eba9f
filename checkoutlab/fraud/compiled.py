"""A compiled scoring path for one transaction at a time.

scikit-learn's per-call overhead (validation, DataFrame handling, joblib dispatch for
forests) costs milliseconds for a single row, far above the serving budget. This module
reads a fitted training pipeline (``FeatureFrame`` → scaler → ``CalibratedClassifierCV``
over a frozen estimator, see :mod:`checkoutlab.fraud.train`) once and evaluates it with a few
numpy operations:

* linear models fold the scaler into one weight vector;
* tree ensembles (random forest, extra trees, HistGradientBoosting) are stacked into flat
  node arrays and all trees are walked at once, one vectorized step per depth level;
* sigmoid and isotonic calibration are applied as ``expit(-(a·f + b))`` and ``np.interp``.

:func:`compile_pipeline` refuses what it does not understand (``UnsupportedModel``), and
tests check that it gives the pipeline's own probabilities to 1e-9 on random inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from checkoutlab.fraud.features import FeatureSpec, ratio
from checkoutlab.fraud.specs import derived_window


class UnsupportedModel(ValueError):
    """The pipeline has a step the compiled path does not implement."""


@dataclass(frozen=True)
class _Trees:
    """All trees of an ensemble as flat arrays; leaves point to themselves."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray  # per node: P(class 1) for forests, raw leaf value for boosting
    roots: np.ndarray
    depth: int

    def leaves(self, x: np.ndarray) -> np.ndarray:
        node = self.roots
        for _ in range(self.depth):
            go_left = x[self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return node


def _stack(trees: Sequence[tuple[np.ndarray, ...]]) -> _Trees:
    features, thresholds, lefts, rights, values, roots = [], [], [], [], [], []
    offset, depth = 0, 0
    for feature, threshold, left, right, value, is_leaf, tree_depth in trees:
        n = len(feature)
        idx = np.arange(n) + offset
        features.append(np.where(is_leaf, 0, feature).astype(np.intp))
        thresholds.append(np.where(is_leaf, np.inf, threshold).astype(np.float64))
        lefts.append(np.where(is_leaf, idx, left + offset).astype(np.intp))
        rights.append(np.where(is_leaf, idx, right + offset).astype(np.intp))
        values.append(value.astype(np.float64))
        roots.append(offset)
        offset += n
        depth = max(depth, tree_depth)
    return _Trees(
        np.concatenate(features), np.concatenate(thresholds), np.concatenate(lefts),
        np.concatenate(rights), np.concatenate(values), np.asarray(roots, dtype=np.intp), depth,
    )  # fmt: skip


def _forest(estimator: Any) -> Callable[[np.ndarray], float]:
    trees = []
    for tree in getattr(estimator, "estimators_", [estimator]):
        t = tree.tree_
        counts = t.value[:, 0, :]
        proba = counts[:, 1] / np.maximum(counts.sum(axis=1), 1e-300)
        trees.append(
            (t.feature, t.threshold, t.children_left, t.children_right, proba,
             t.children_left == -1, t.max_depth)
        )  # fmt: skip
    stacked = _stack(trees)
    n = len(stacked.roots)
    # scikit-learn's trees compare float32 inputs against float64 thresholds
    return lambda x: float(stacked.value[stacked.leaves(x.astype(np.float32))].sum() / n)


def _boosting(estimator: HistGradientBoostingClassifier) -> Callable[[np.ndarray], float]:
    if estimator.n_trees_per_iteration_ != 1:
        raise UnsupportedModel("only binary HistGradientBoostingClassifier is compiled")
    trees = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise UnsupportedModel("categorical splits are not compiled")
        trees.append(
            (nodes["feature_idx"], nodes["num_threshold"], nodes["left"], nodes["right"],
             nodes["value"], nodes["is_leaf"].astype(bool), int(nodes["depth"].max()))
        )  # fmt: skip
    stacked = _stack(trees)
    baseline = float(np.ravel(estimator._baseline_prediction)[0])
    return lambda x: baseline + float(stacked.value[stacked.leaves(x)].sum())


def _response(estimator: Any) -> Callable[[np.ndarray], float]:
    """The estimator's score that the calibrator was fitted on (decision function or P(1))."""
    if isinstance(estimator, LogisticRegression):
        w = np.ravel(estimator.coef_).astype(np.float64)
        b = float(np.ravel(estimator.intercept_)[0])
        return lambda x: float(x @ w) + b
    if isinstance(estimator, HistGradientBoostingClassifier):
        return _boosting(estimator)
    if isinstance(
        estimator, RandomForestClassifier | ExtraTreesClassifier | DecisionTreeClassifier
    ):
        return _forest(estimator)
    raise UnsupportedModel(f"no compiled path for {type(estimator).__name__}")


def _calibrator(calibrator: Any) -> Callable[[float], float]:
    if isinstance(calibrator, IsotonicRegression):
        xs = np.asarray(calibrator.X_thresholds_, dtype=np.float64)
        ys = np.asarray(calibrator.y_thresholds_, dtype=np.float64)
        return lambda f: float(np.interp(f, xs, ys))
    if hasattr(calibrator, "a_") and hasattr(calibrator, "b_"):
        a, b = float(calibrator.a_), float(calibrator.b_)
        return lambda f: 1.0 / (1.0 + np.exp(a * f + b))
    raise UnsupportedModel(f"no compiled path for calibrator {type(calibrator).__name__}")


class CompiledModel:
    """Calibrated P(fraud) for one feature mapping, equal to the pipeline's predict_proba."""

    def __init__(self, pipeline: Any) -> None:
        steps = dict(pipeline.named_steps)
        select, scale, classifier = (
            steps.get("features"),
            steps.get("scale"),
            steps.get("classifier"),
        )
        if select is None or classifier is None:
            raise UnsupportedModel("expected a pipeline with 'features' and 'classifier' steps")
        self.columns: list[str] = list(select.columns)
        self._derived = [derived_window(c) for c in self.columns]
        if scale not in (None, "passthrough") and not isinstance(scale, StandardScaler):
            raise UnsupportedModel(f"no compiled path for scaler {type(scale).__name__}")
        self._mean = (
            np.asarray(scale.mean_, dtype=np.float64)
            if scale not in (None, "passthrough")
            else None
        )
        self._scale = np.asarray(scale.scale_, dtype=np.float64) if self._mean is not None else None
        if getattr(classifier, "method", None) not in ("sigmoid", "isotonic"):
            raise UnsupportedModel("expected CalibratedClassifierCV with sigmoid or isotonic")
        self._members = []
        for member in classifier.calibrated_classifiers_:
            estimator = getattr(member.estimator, "estimator", member.estimator)  # FrozenEstimator
            if len(member.calibrators) != 1:
                raise UnsupportedModel("only binary classifiers are compiled")
            self._members.append((_response(estimator), _calibrator(member.calibrators[0])))
        self.inputs: list[str] = []
        for name, window in zip(self.columns, self._derived, strict=True):
            needed = [name] if window is None else ["TX_AMOUNT", FeatureSpec.customer_mean(window)]
            self.inputs += [c for c in needed if c not in self.inputs]

    def vector(self, features: Mapping[str, float]) -> np.ndarray:
        x = np.empty(len(self.columns), dtype=np.float64)
        for i, (name, window) in enumerate(zip(self.columns, self._derived, strict=True)):
            if window is None:
                x[i] = features[name]
            else:
                x[i] = ratio(features["TX_AMOUNT"], features[FeatureSpec.customer_mean(window)])
        if self._mean is not None:
            x = (x - self._mean) / self._scale
        return x

    def predict_one(self, features: Mapping[str, float]) -> float:
        x = self.vector(features)
        total = 0.0
        for response, calibrate in self._members:
            total += calibrate(response(x))
        return total / len(self._members)


def compile_pipeline(pipeline: Any) -> CompiledModel:
    return CompiledModel(pipeline)
