"""Serving the champion fraud model inside an API worker.

Nothing here imports MLflow or training code on the request path: a background thread asks
the MLflow registry which version holds the ``champion`` alias, loads and compiles a new one
when it changes (:mod:`checkoutlab.fraud.compiled`) and swaps a single reference, which is
atomic in CPython. Another loop keeps the platform feature store current. A request only
reads the current model and the store.

Fail safe (DESIGN.md): with no champion, a model that fails to load, or a scoring error, the
learned scorer answers with the rules scorer's assessment marked ``degraded``, and the
profile builder then turns verification on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from checkoutlab.background import PeriodicTask
from checkoutlab.fraud.compiled import CompiledModel, compile_pipeline
from checkoutlab.fraud.platform_store import PlatformFeatureStore
from checkoutlab.fraud.scorer import RiskAssessment, RiskFeatures, RulesRiskScorer
from checkoutlab.observability import metrics

log = logging.getLogger(__name__)
MODEL_NAME = "fraud-scorer"
CHAMPION_ALIAS = "champion"


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    model: CompiledModel


class ChampionWatcher(PeriodicTask):
    """Polls the registry alias and keeps the newest champion compiled and ready."""

    thread_name = "champion-watcher"

    def __init__(
        self,
        tracking_uri: str,
        *,
        model_name: str = MODEL_NAME,
        alias: str = CHAMPION_ALIAS,
        interval_seconds: float = 30.0,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.alias = alias
        self.interval_seconds = interval_seconds
        self.current: Champion | None = None
        self.last_error: str | None = None

    def tick(self) -> None:
        try:
            self.check()
        finally:
            current = self.current
            metrics.set_fraud_model(self.model_name, current.version if current else None)

    def check(self) -> bool:
        """Load the alias's version if it changed; True when a new champion was installed."""
        try:
            from mlflow import MlflowClient

            from checkoutlab.fraud.registry import load_version

            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            version = str(client.get_model_version_by_alias(self.model_name, self.alias).version)
            if self.current is not None and self.current.version == version:
                return False
            loaded = load_version(
                version, model_name=self.model_name, tracking_uri=self.tracking_uri
            )
            self.current = Champion(self.model_name, version, compile_pipeline(loaded.model))
            self.last_error = None
            log.info("fraud champion is now %s version %s", self.model_name, version)
            return True
        except Exception as exc:  # registry down, no alias yet, unsupported model...
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("fraud champion not refreshed: %s", self.last_error)
            return False


class FeatureSync(PeriodicTask):
    """Background refresh of the platform feature store (bounded staleness)."""

    thread_name = "feature-sync"

    def __init__(self, store: PlatformFeatureStore, *, interval_seconds: float = 2.0) -> None:
        self.store = store
        self.interval_seconds = interval_seconds

    def tick(self) -> None:
        self.store.sync()


class LearnedRiskScorer:
    """The champion's calibrated probability, with the rules scorer as degraded fallback."""

    name = MODEL_NAME

    def __init__(
        self,
        watcher: ChampionWatcher,
        store: PlatformFeatureStore,
        fallback: RulesRiskScorer | None = None,
    ) -> None:
        self.watcher = watcher
        self.store = store
        self.fallback = fallback or RulesRiskScorer()

    def _degraded(self, features: RiskFeatures, reason: str) -> RiskAssessment:
        assessment = self.fallback.score(features)
        return replace(assessment, degraded=True, reasons=[*assessment.reasons, reason])

    def score(self, features: RiskFeatures) -> RiskAssessment:
        champion = self.watcher.current
        if champion is None or self.store.synced_at is None:
            return self._degraded(features, "model_unavailable")
        try:
            model_features = self.store.features(
                customer_id=features.customer_id,
                terminal_id=features.terminal_id,
                amount=features.amount_minor,
                currency=features.currency,
                at=features.at,
                context=features.context,
            )
            probability = champion.model.predict_one(model_features)
        except Exception:
            log.exception("champion %s failed to score; degraded", champion.version)
            return self._degraded(features, "model_error")
        return RiskAssessment(
            probability, champion.name, champion.version, [], features=model_features
        )

    def describe(self) -> dict[str, Any]:
        champion = self.watcher.current
        return {
            "model": champion.name if champion else None,
            "version": champion.version if champion else None,
            "last_error": self.watcher.last_error,
            "features_synced_at": self.store.synced_at.isoformat()
            if self.store.synced_at
            else None,
        }
