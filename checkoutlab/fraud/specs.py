"""Model specs: the YAML files in ``models/`` that say what to train and how to split the data.

A spec names an estimator and its hyper-parameters, the features, the time-based split and the
calibration. It is validated with pydantic when loaded, so a typo fails with a message that
names the field instead of minutes later inside scikit-learn.

.. code-block:: yaml

    name: logreg
    description: Handbook baseline, logistic regression on the 15 baseline features.
    estimator: logistic_regression        # | hist_gradient_boosting | random_forest | extra_trees
    params: {C: 1.0, max_iter: 1000}      # keyword arguments of the scikit-learn estimator
    features: handbook                    # or a list, e.g. [handbook, TX_AMOUNT_TO_...]
    windows: [1, 7, 30]                   # feature windows in days (default)
    split:
      train_start: 2018-07-25             # first day with labels used for training
      train_days: 7                       # labelled days: estimator fit + calibration slice
      delay_days: 7                       # label delay: gap between training and test
      test_days: 7
    calibration:
      method: sigmoid                     # | isotonic
      days: 2                             # the LAST days of the training window

How the split is laid out (see :class:`checkoutlab.fraud.evaluate.TimeSplit`)::

    |<------------- train_days ------------->|<-- delay_days -->|<-- test_days -->|
    |<- fit: train_days - days ->|<- calib ->|     (unused)     |  known-compromised
                                                                   cards removed

The calibration slice is the end of the labelled training window, *after* the days the
estimator is fitted on and *before* the label-delay gap, so every label the model uses (fit or
calibration) is at least ``delay_days`` old on the first test day, as it would be in production.

Feature names
-------------
``features`` lists columns of :func:`checkoutlab.fraud.features.add_features` (the Handbook's
baseline and, when the data has them, platform context features) and *derived* features that
the pipeline computes from those columns (so online scoring needs only the batch/online feature
columns):

* ``TX_AMOUNT_TO_CUSTOMER_AVG_{w}DAY_WINDOW``: ``TX_AMOUNT / CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW``
  (0 when the mean is 0), for each window ``w``. It uses no labels at all.

The item ``handbook`` stands for the 15 baseline columns, in the Handbook's order.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from checkoutlab.fraud.features import CONTEXT_COLUMNS, FeatureSpec

__all__ = [
    "DERIVED_PREFIX",
    "ESTIMATORS",
    "CalibrationSpec",
    "ModelSpec",
    "ResolvedFeatures",
    "SpecError",
    "SplitSpec",
    "load_spec",
    "parse_spec",
]

#: Estimator names a spec may use, and the scikit-learn class behind each.
ESTIMATORS: dict[str, str] = {
    "logistic_regression": "sklearn.linear_model.LogisticRegression",
    "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingClassifier",
    "random_forest": "sklearn.ensemble.RandomForestClassifier",
    "extra_trees": "sklearn.ensemble.ExtraTreesClassifier",
}
EstimatorName = Literal[
    "logistic_regression", "hist_gradient_boosting", "random_forest", "extra_trees"
]
HANDBOOK = "handbook"
DERIVED_PREFIX = "TX_AMOUNT_TO_CUSTOMER_AVG_"
_DERIVED = re.compile(rf"^{DERIVED_PREFIX}(\d+)DAY_WINDOW$")


class SpecError(ValueError):
    """A model spec that cannot be read or is invalid; the message names the file and field."""


class SplitSpec(BaseModel):
    """Time-based split: ``train_days`` labelled days, a ``delay_days`` gap, ``test_days``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_start: date = date(2018, 7, 25)
    train_days: Annotated[int, Field(ge=2, le=366)] = 7
    delay_days: Annotated[int, Field(ge=1, le=366)] = 7
    test_days: Annotated[int, Field(ge=1, le=366)] = 7


class CalibrationSpec(BaseModel):
    """Calibration on the last ``days`` days of the training window (after the fit days)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["isotonic", "sigmoid"] = "sigmoid"
    days: Annotated[int, Field(ge=1, le=365)] = 2


class ResolvedFeatures(BaseModel):
    """What a spec's ``features`` mean concretely.

    ``inputs`` are the columns the model reads (all produced by ``add_features`` with
    ``windows``, ``delay_days`` and ``context_columns``); ``outputs`` are the columns the
    estimator sees, in order, derived ones included.
    """

    model_config = ConfigDict(frozen=True)

    inputs: list[str]
    outputs: list[str]
    windows: list[int]
    delay_days: int
    context_columns: list[str]


class ModelSpec(BaseModel):
    """One model spec (see the module docstring for the YAML layout)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    description: str = ""
    estimator: EstimatorName
    params: dict[str, Any] = Field(default_factory=dict)
    features: Literal["handbook"] | list[str] = HANDBOOK
    windows: list[int] = Field(default_factory=lambda: [1, 7, 30])
    split: SplitSpec = Field(default_factory=SplitSpec)
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)

    @field_validator("params")
    @classmethod
    def _known_params(cls, params: dict[str, Any], info: Any) -> dict[str, Any]:
        estimator = info.data.get("estimator")
        if estimator is None:  # the estimator field already failed; report that one
            return params
        valid = set(estimator_class(estimator)().get_params())
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for {estimator} "
                f"({ESTIMATORS[estimator]}); valid: {sorted(valid)}"
            )
        return params

    @field_validator("features")
    @classmethod
    def _non_empty(cls, features: str | list[str]) -> str | list[str]:
        if isinstance(features, list):
            if not features:
                raise ValueError("features must not be empty; use 'handbook' for the baseline")
            duplicates = sorted({f for f in features if features.count(f) > 1})
            if duplicates:
                raise ValueError(f"features listed twice: {duplicates}")
        return features

    @field_validator("windows")
    @classmethod
    def _windows(cls, windows: list[int]) -> list[int]:
        FeatureSpec(tuple(windows))  # raises ValueError with a clear message
        return windows

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.calibration.days >= self.split.train_days:
            raise ValueError(
                f"calibration.days ({self.calibration.days}) must be smaller than "
                f"split.train_days ({self.split.train_days}): the calibration slice is the end "
                "of the training window and the estimator needs the days before it"
            )
        self.resolve_features()  # raises ValueError naming an unknown feature
        return self

    # ------------------------------------------------------------------------------------------
    def resolve_features(self) -> ResolvedFeatures:
        """Expand ``handbook``, check every name and work out the input columns."""
        base = FeatureSpec(tuple(self.windows), self.split.delay_days)
        names = [HANDBOOK] if self.features == HANDBOOK else list(self.features)
        full = FeatureSpec(tuple(self.windows), self.split.delay_days, CONTEXT_COLUMNS)
        context_of = {
            column: source
            for source in CONTEXT_COLUMNS
            for column in full.context_feature_columns(source)
        }
        outputs: list[str] = []
        inputs: set[str] = set()
        context: set[str] = set()
        for name in names:
            if name == HANDBOOK:
                outputs += [c for c in base.columns if c not in outputs]
                inputs.update(base.columns)
            elif name in base.columns:
                outputs.append(name)
                inputs.add(name)
            elif name in context_of:
                outputs.append(name)
                inputs.add(name)
                context.add(context_of[name])
            elif (match := _DERIVED.match(name)) is not None:
                window = int(match.group(1))
                if window not in self.windows:
                    raise ValueError(
                        f"feature {name}: window {window} is not one of windows {self.windows}"
                    )
                outputs.append(name)
                inputs.update({"TX_AMOUNT", FeatureSpec.customer_mean(window)})
            else:
                known = [*base.columns, *context_of, *derived_feature_names(self.windows)]
                raise ValueError(f"unknown feature {name!r}; known features: {known}")
        context_columns = [c for c in CONTEXT_COLUMNS if c in context]
        order = FeatureSpec(tuple(self.windows), self.split.delay_days, tuple(context_columns))
        return ResolvedFeatures(
            inputs=[c for c in order.columns if c in inputs],
            outputs=outputs,
            windows=list(self.windows),
            delay_days=self.split.delay_days,
            context_columns=context_columns,
        )

    def flat_params(self) -> dict[str, str]:
        """The spec as flat ``key -> string`` pairs (for MLflow params)."""
        out = {
            "spec.name": self.name,
            "estimator": self.estimator,
            "features": self.features
            if isinstance(self.features, str)
            else ",".join(self.features),
            "windows": ",".join(str(w) for w in self.windows),
            "calibration.method": self.calibration.method,
            "calibration.days": str(self.calibration.days),
        }
        out.update({f"split.{k}": str(v) for k, v in self.split.model_dump().items()})
        out.update({f"params.{k}": repr(v) for k, v in sorted(self.params.items())})
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def derived_feature_names(windows: list[int] | tuple[int, ...]) -> list[str]:
    """The derived feature names available for these windows."""
    return [f"{DERIVED_PREFIX}{w}DAY_WINDOW" for w in windows]


def derived_window(name: str) -> int | None:
    """The window of a derived feature name, or ``None`` if the name is not a derived feature."""
    match = _DERIVED.match(name)
    return int(match.group(1)) if match else None


def estimator_class(name: str) -> type:
    """The scikit-learn class for an estimator name of :data:`ESTIMATORS`."""
    from importlib import import_module

    module, _, cls = ESTIMATORS[name].rpartition(".")
    return getattr(import_module(module), cls)


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def parse_spec(data: Any, *, source: str = "spec") -> ModelSpec:
    """Validate a spec given as a mapping (e.g. from YAML); raises :class:`SpecError`."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a model spec must be a YAML mapping, got {type(data).__name__}")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{source}: invalid model spec:\n{_format_errors(exc)}") from exc


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a YAML model spec; raises :class:`SpecError` naming file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    return parse_spec(data, source=str(path))
