"""The ``RiskScorer`` seam of the profile builder, and the rules-based scorer behind it.

The learned scorer (MLflow champion) will implement the same protocol; the rules scorer
stays as the fail-safe fallback and is labelled ``model="rules"`` so nobody mistakes its
output for a learned, calibrated probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

RiskLevel = Literal["normal", "elevated", "highest"]


@dataclass(frozen=True)
class RiskFeatures:
    """Server-side features (trusted) plus context signals (untrusted, may only raise risk)."""

    amount_major: float
    customer_known: bool
    customer_payments: int
    customer_avg_amount: float | None
    customer_disputes: int
    session_failed_attempts: int
    proxy: bool
    country_mismatch: bool
    # identity of the transaction, for learned scorers that compute their own features
    customer_id: str = ""
    terminal_id: str = ""
    amount_minor: int = 0
    currency: str = "EUR"
    at: datetime | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RiskAssessment:
    score: float
    model: str
    model_version: str
    reasons: list[str] = field(default_factory=list)
    degraded: bool = False
    features: dict[str, float] = field(default_factory=dict)  # model inputs, for the decision log


class RiskScorer(Protocol):
    name: str

    def score(self, features: RiskFeatures) -> RiskAssessment: ...


def risk_score_0_99(probability: float) -> int:
    return max(0, min(99, int(probability * 100)))


def risk_level(risk_score: int, *, elevated: int, highest: int) -> RiskLevel:
    if risk_score >= highest:
        return "highest"
    if risk_score >= elevated:
        return "elevated"
    return "normal"


class RulesRiskScorer:
    """Additive log-odds over hand-set signals; a stand-in until a learned model is champion.

    Each signal contributes a fixed amount to the logit, so the contribution of every
    reason is visible and the score is monotone in each signal.
    """

    name = "rules"
    version = "rules-1"
    _BASE = -3.5

    def score(self, features: RiskFeatures) -> RiskAssessment:
        logit = self._BASE
        reasons: list[str] = []

        def add(weight: float, reason: str) -> None:
            nonlocal logit
            logit += weight
            reasons.append(reason)

        if not features.customer_known or features.customer_payments == 0:
            add(0.8, "first_purchase")
        if (
            features.customer_avg_amount
            and features.amount_major > 3 * features.customer_avg_amount
        ):
            add(1.5, "amount_far_above_customer_average")
        if features.amount_major > 500:
            add(1.0, "high_amount")
        if features.customer_disputes:
            add(1.5 * min(features.customer_disputes, 3), "previous_disputes")
        if features.session_failed_attempts >= 2:
            add(0.7 * min(features.session_failed_attempts, 5), "repeated_failed_attempts")
        if features.proxy:
            add(3.5, "anonymizing_proxy")
        if features.country_mismatch:
            add(1.2, "country_mismatch")
        probability = 1.0 / (1.0 + math.exp(-logit))
        return RiskAssessment(probability, self.name, self.version, reasons)
