"""MLflow: log a training run, register a ``fraud-scorer`` version, promote a champion.

* :func:`register` logs a :class:`~checkoutlab.fraud.train.TrainResult` as one MLflow run of the
  experiment ``fraud-scorer``: the spec as params (and ``spec.yaml``), the holdout metrics, the
  PR curve and reliability diagram (PNG), the data fingerprint (sha256), and the pipeline with
  its signature and an input example (``pyfunc`` predicts ``predict_proba``). It then registers
  a version of the registered model ``fraud-scorer`` whose tags carry the holdout metrics and
  what is needed to rebuild features and split (``spec`` as JSON, ``features``, ``split.*``).
* :func:`promote` moves the alias ``champion`` to a version only if, re-scored together with
  the current champion on the **same holdout** (the candidate's test window cut from the given
  data, known-compromised cards removed), it beats the champion by ``margin`` on ``metric``,
  or when forced; the decision and its reason are returned and stored as version tags.

The tracking URI is ``--tracking-uri`` or ``CHECKOUTLAB_MLFLOW_TRACKING_URI``
(default ``sqlite:///var/mlflow.db``). With a ``sqlite:///`` URI the artifacts of a new
experiment go to ``mlartifacts/`` next to the database file (``var/mlartifacts``), not to
``./mlruns`` of whatever directory the command ran in.

Models are stored in the skops format (MLflow's default, no arbitrary code on load); the types
it does not trust by default (the pipeline's own ``FeatureFrame``, scikit-learn's calibration
and tree internals) are recorded in the model's flavor configuration so that
``mlflow.sklearn.load_model`` can load it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from checkoutlab.fraud.evaluate import LOWER_IS_BETTER, METRICS, TimeSplit, compute_metrics
from checkoutlab.fraud.specs import ModelSpec, parse_spec

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from checkoutlab.fraud.train import TrainResult

__all__ = [
    "CHAMPION_ALIAS",
    "EXPERIMENT_NAME",
    "MODEL_NAME",
    "PromotionDecision",
    "RegisteredRun",
    "RegistryError",
    "load_version",
    "pr_curve_figure",
    "promote",
    "register",
    "reliability_figure",
    "resolve_tracking_uri",
]

MODEL_NAME = "fraud-scorer"
EXPERIMENT_NAME = "fraud-scorer"
CHAMPION_ALIAS = "champion"
_TRUSTED_PREFIXES = ("sklearn.", "checkoutlab.fraud.", "numpy.", "scipy.")


class RegistryError(RuntimeError):
    """A registry operation that cannot proceed (no such version, no versions, ...)."""


# --------------------------------------------------------------------------------------------
# Tracking URI and experiment


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """``tracking_uri`` or the configured one; creates the folder of a ``sqlite:///`` file."""
    if tracking_uri is None:
        from checkoutlab.config import get_settings

        tracking_uri = get_settings().mlflow_tracking_uri
    db = _sqlite_path(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return tracking_uri


def _sqlite_path(uri: str) -> Path | None:
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == f"{prefix}:memory:":
        return None
    return Path(uri[len(prefix) :])


@contextmanager
def _tracking(tracking_uri: str) -> Iterator[MlflowClient]:
    """Point mlflow's tracking and registry at ``tracking_uri``; restore the previous ones."""
    import mlflow

    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    finally:
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)


def _experiment_id(client: MlflowClient, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    db = _sqlite_path(tracking_uri)
    location = (db.parent / "mlartifacts").resolve().as_uri() if db is not None else None
    return client.create_experiment(name, artifact_location=location)


# --------------------------------------------------------------------------------------------
# Figures (matplotlib Figure objects, no pyplot: safe in servers and threads)


def pr_curve_figure(y_true: np.ndarray, y_prob: np.ndarray, *, title: str = "") -> Figure:
    """Precision-recall curve with its AP and the fraud base rate."""
    from matplotlib.figure import Figure
    from sklearn.metrics import average_precision_score, precision_recall_curve

    precision, recall, _ = precision_recall_curve(y_true, y_prob)
    ap = average_precision_score(y_true, y_prob)
    fig = Figure(figsize=(5.5, 4.5), dpi=100)
    ax = fig.subplots()
    ax.step(recall, precision, where="post", label=f"model (AP = {ap:.3f})")
    base = float(np.mean(y_true))
    ax.axhline(base, color="grey", linestyle="--", label=f"base rate ({base:.2%})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(title or "Precision-recall curve (test days)")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def reliability_figure(
    y_true: np.ndarray, y_prob: np.ndarray, *, n_bins: int = 15, title: str = ""
) -> Figure:
    """Reliability diagram on log axes (equal-count bins, as frauds are rare) and histogram."""
    from matplotlib.figure import Figure

    from checkoutlab.fraud.evaluate import expected_calibration_error

    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    groups = [g for g in np.array_split(order, n_bins) if g.size]
    mean_p = np.array([p[g].mean() for g in groups])
    rate = np.array([y[g].mean() for g in groups])
    floor = max(1e-5, 0.5 / len(y))
    fig = Figure(figsize=(10, 4.5), dpi=100)
    ax, hist = fig.subplots(1, 2)
    lo = max(floor, min(mean_p.min(), np.maximum(rate, floor).min()) / 2)
    ax.plot([lo, 1], [lo, 1], color="grey", linestyle="--", label="perfectly calibrated")
    ax.plot(np.maximum(mean_p, floor), np.maximum(rate, floor), marker="o", label="model")
    ax.set(xscale="log", yscale="log", xlabel="mean predicted probability (bin)")
    ax.set_ylabel("observed fraud rate (bin)")
    ece = expected_calibration_error(y, p)
    ax.set_title(title or f"Reliability, {len(groups)} equal-count bins (ECE10 = {ece:.4f})")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3, which="both")
    hist.hist(p, bins=50, range=(0, 1), log=True, color="tab:blue")
    hist.set(xlabel="predicted probability", ylabel="transactions (log)")
    hist.set_title("Predicted probabilities (test days)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Logging and registration


@dataclass(frozen=True)
class RegisteredRun:
    """Where a training run went: run, logged model and (if registered) the version."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    model_uri: str
    model_name: str | None
    version: str | None


def _trusted_types(model: Any) -> list[str]:
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if refused:
        raise RegistryError(f"the model holds types skops would not load: {refused}")
    return sorted(untrusted)


def _version_tags(result: TrainResult, run_id: str) -> dict[str, str]:
    tags = {f"holdout.{m}": f"{result.metrics[m]:.6f}" for m in METRICS}
    tags.update({f"split.{k}": v for k, v in result.split.as_dict().items()})
    tags.update(
        {
            "holdout.rows": str(result.rows["test"]),
            "holdout.fraud_rate": f"{result.fraud_rate['test']:.6f}",
            "data.sha256": result.data_sha256,
            "spec.name": result.spec.name,
            "spec": result.spec.model_dump_json(),
            "features": result.features.model_dump_json(),
            "estimator": result.spec.estimator,
            "run_id": run_id,
        }
    )
    return tags


def register(
    result: TrainResult,
    *,
    tracking_uri: str | None = None,
    model_name: str = MODEL_NAME,
    experiment: str = EXPERIMENT_NAME,
    create_version: bool = True,
    run_name: str | None = None,
) -> RegisteredRun:
    """Log ``result`` as an MLflow run and (unless ``create_version=False``) register it.

    Returns the run id, the logged model's URI and the new version of ``model_name``.
    """
    import mlflow
    from mlflow.models import infer_signature

    uri = resolve_tracking_uri(tracking_uri)
    with _tracking(uri) as client:
        experiment_id = _experiment_id(client, experiment, uri)
        name = run_name or f"{result.spec.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            run_id = run.info.run_id
            params = result.spec.flat_params()
            params.update({f"window.{k}": v for k, v in result.split.as_dict().items()})
            params.update(
                {
                    "data.source": result.data_source[-500:],
                    "data.sha256": result.data_sha256,
                    **{f"rows.{k}": str(v) for k, v in result.rows.items()},
                }
            )
            mlflow.log_params(params)
            mlflow.set_tags(
                {
                    "data.sha256": result.data_sha256,
                    "spec.name": result.spec.name,
                    "estimator": result.spec.estimator,
                    "features.inputs": ",".join(result.features.inputs),
                }
            )
            mlflow.log_text(result.spec.to_yaml(), "spec.yaml")
            mlflow.log_dict(result.features.model_dump(), "features.json")
            y = result.predictions["TX_FRAUD"].to_numpy()
            p = result.predictions["probability"].to_numpy()
            mlflow.log_figure(pr_curve_figure(y, p), "plots/pr_curve.png")
            mlflow.log_figure(reliability_figure(y, p), "plots/reliability_diagram.png")

            example = result.input_example
            signature = infer_signature(example, result.model.predict_proba(example))
            info = mlflow.sklearn.log_model(
                result.model,
                name="model",
                signature=signature,
                input_example=example,
                pyfunc_predict_fn="predict_proba",
                serialization_format="skops",
                skops_trusted_types=_trusted_types(result.model),
                pip_requirements=_requirements(),
            )
            # holdout metrics on the run and on the logged model the version points to
            metrics = {m: result.metrics[m] for m in METRICS}
            metrics.update({f"fraud_rate.{k}": v for k, v in result.fraud_rate.items()})
            mlflow.log_metrics(metrics, model_id=info.model_id)
            mlflow.log_metric("train_seconds", result.seconds)
        version = None
        if create_version:
            registered = mlflow.register_model(
                info.model_uri, model_name, tags=_version_tags(result, run_id)
            )
            version = str(registered.version)
            client.update_model_version(
                model_name,
                version,
                description=(
                    f"{result.spec.name} ({result.spec.estimator}); holdout "
                    f"{result.split.test_start}..{result.split.test_end - timedelta(days=1)}: "
                    + ", ".join(f"{m} {result.metrics[m]:.4f}" for m in METRICS)
                ),
            )
    return RegisteredRun(
        tracking_uri=uri,
        experiment_id=experiment_id,
        run_id=run_id,
        model_uri=info.model_uri,
        model_name=model_name if create_version else None,
        version=version,
    )


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("scikit-learn", "numpy", "pandas", "scipy", "skops")]


# --------------------------------------------------------------------------------------------
# Loading and promotion


@dataclass(frozen=True)
class LoadedVersion:
    """A registered version with the spec and split it was trained with."""

    version: str
    model: Any
    spec: ModelSpec
    split: TimeSplit
    tags: dict[str, str]


def load_version(
    version: str | int, *, model_name: str = MODEL_NAME, tracking_uri: str | None = None
) -> LoadedVersion:
    """Load a registered version's pipeline, spec and split (from its tags)."""
    uri = resolve_tracking_uri(tracking_uri)
    with _tracking(uri) as client:
        return _load(client, model_name, str(version))


def _load(client: MlflowClient, model_name: str, version: str) -> LoadedVersion:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(model_name, version)
    except MlflowException as exc:
        raise RegistryError(f"{model_name} has no version {version}") from exc
    tags = dict(mv.tags)
    if "spec" not in tags:
        raise RegistryError(
            f"{model_name} version {version} was not registered by checkoutlab (no spec tag)"
        )
    spec = parse_spec(json.loads(tags["spec"]), source=f"{model_name} v{version} spec tag")
    split = TimeSplit.from_spec(spec, train_start=date.fromisoformat(tags["split.train_start"]))
    model = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    return LoadedVersion(version=version, model=model, spec=spec, split=split, tags=tags)


def _latest_version(client: MlflowClient, model_name: str) -> str:
    versions = client.search_model_versions(f"name = '{model_name}'")
    if not versions:
        raise RegistryError(
            f"no versions of {model_name} are registered; train one with "
            "`checkoutlab fraud train --spec models/<spec>.yaml --data FILE`"
        )
    return str(max(int(v.version) for v in versions))


def _champion_version(client: MlflowClient, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


@dataclass
class PromotionDecision:
    """What :func:`promote` decided and why."""

    promoted: bool
    reason: str
    model_name: str
    metric: str
    margin: float
    forced: bool
    candidate_version: str
    champion_version: str | None
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    holdout: str = ""
    holdout_rows: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _score(
    loaded: LoadedVersion, transactions: pd.DataFrame, holdout: TimeSplit, start: date
) -> tuple[dict[str, float], int]:
    from checkoutlab.fraud.train import build_features

    features = loaded.spec.resolve_features()
    frame = build_features(transactions, features, start=start, end=holdout.test_end)
    rows = holdout.masks(frame)["test"]
    test = frame.loc[rows]
    probability = loaded.model.predict_proba(test[features.inputs])[:, 1]
    metrics = compute_metrics(
        test["TX_FRAUD"],
        probability,
        days=test["TX_DATETIME"].dt.normalize(),
        cards=test["CUSTOMER_ID"],
    )
    return metrics, int(rows.sum())


def _overlap_note(champion: LoadedVersion, holdout: TimeSplit) -> str:
    if (
        champion.split.train_start < holdout.test_end
        and holdout.test_start < champion.split.train_end
    ):
        return (
            f" Note: the champion was trained on {champion.split.train_start}.."
            f"{champion.split.train_end - timedelta(days=1)}, which overlaps this holdout, "
            "so the comparison favours it."
        )
    return ""


def promote(
    *,
    data: str | Path | pd.DataFrame,
    version: str | int | None = None,
    margin: float = 0.005,
    metric: str = "average_precision",
    force: bool = False,
    model_name: str = MODEL_NAME,
    tracking_uri: str | None = None,
) -> PromotionDecision:
    """Move the ``champion`` alias to ``version`` (default: the latest) if it beats the champion.

    Both models are re-scored on the candidate's holdout (its split's test days, cut from
    ``data``, known-compromised cards removed). The candidate is promoted when there is no
    champion, when it is better by at least ``margin`` on ``metric`` (smaller for ``brier``
    and ``calibration_error``, larger for the others), or when ``force`` is set.
    """
    from checkoutlab.fraud.data import load_transactions

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(METRICS)}")
    if margin < 0:
        raise ValueError("margin must be zero or positive")
    transactions = data if isinstance(data, pd.DataFrame) else load_transactions(data)
    uri = resolve_tracking_uri(tracking_uri)
    with _tracking(uri) as client:
        candidate_version = (
            str(version) if version is not None else _latest_version(client, model_name)
        )
        candidate = _load(client, model_name, candidate_version)
        champion_version = _champion_version(client, model_name)
        holdout = candidate.split
        last = holdout.test_end - timedelta(days=1)
        where = f"holdout {holdout.test_start}..{last} (v{candidate_version}'s test days)"
        holdout.check_coverage(transactions, windows=("test",))
        champion = (
            _load(client, model_name, champion_version)
            if champion_version not in (None, candidate_version)
            else None
        )
        loaded = [candidate] + ([champion] if champion else [])
        start = min(holdout.history_start(max(v.spec.resolve_features().windows)) for v in loaded)
        cand_metrics, rows = _score(candidate, transactions, holdout, start)
        champ_metrics = _score(champion, transactions, holdout, start)[0] if champion else None

        decision = PromotionDecision(
            promoted=False,
            reason="",
            model_name=model_name,
            metric=metric,
            margin=margin,
            forced=force,
            candidate_version=candidate_version,
            champion_version=champion_version,
            candidate_metrics=cand_metrics,
            champion_metrics=champ_metrics,
            holdout=where,
            holdout_rows=rows,
        )
        c = cand_metrics[metric]
        if champion_version == candidate_version:
            decision.reason = (
                f"version {candidate_version} is already the champion ({metric} {c:.4f} on "
                f"{where}); nothing to do."
            )
            return decision
        if champion is None or champ_metrics is None:
            decision.promoted = True
            decision.reason = (
                f"promoted version {candidate_version} to {CHAMPION_ALIAS}: there was no "
                f"champion yet ({metric} {c:.4f} on {where}, {rows:,} transactions)."
            )
        else:
            h = champ_metrics[metric]
            lower = metric in LOWER_IS_BETTER
            gain = (h - c) if lower else (c - h)
            better = "lower" if lower else "higher"
            compared = (
                f"{metric} {c:.4f} (v{candidate_version}) vs {h:.4f} "
                f"(champion v{champion_version}) "
                f"on {where}, {rows:,} transactions; improvement {gain:+.4f}, "
                f"margin {margin:g} ({better} is better)."
            )
            note = _overlap_note(champion, holdout)
            if gain >= margin:
                decision.promoted = True
                decision.reason = f"promoted version {candidate_version}: {compared}{note}"
            elif force:
                decision.promoted = True
                decision.reason = (
                    f"promoted version {candidate_version} by --force although it does not beat "
                    f"the champion by the margin: {compared}{note}"
                )
            else:
                decision.reason = (
                    f"not promoted: version {candidate_version} does not beat the champion by "
                    f"the margin: {compared}{note} Use --force to promote anyway."
                )
        _record(client, decision)
    return decision


def _record(client: MlflowClient, decision: PromotionDecision) -> None:
    name, version = decision.model_name, decision.candidate_version
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, version, "promotion.decision", decision.reason[:4900])
    client.set_model_version_tag(name, version, "promotion.decided_at", stamp)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        client.set_model_version_tag(name, version, "promotion.promoted_at", stamp)
        if decision.champion_version:
            client.set_model_version_tag(
                name, decision.champion_version, "promotion.replaced_by", version
            )
