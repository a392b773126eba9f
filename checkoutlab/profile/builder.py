"""Build a PaymentProfile for one checkout: the decision path of DESIGN.md.

context → risk → merchant rules → (experiment variant) → method ordering → profile,
then the decision is logged with everything needed to replay it, in the same transaction
as its ``profile_served`` event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy.orm import Session

from checkoutlab.bandits.policy import MerchantOrderPolicy, OrderingPolicy
from checkoutlab.bandits.serving import fresh_policy_for
from checkoutlab.db import new_id, utcnow
from checkoutlab.elements.catalog import method_config
from checkoutlab.elements.i18n import format_money
from checkoutlab.errors import InvalidRequest
from checkoutlab.events.service import insert_server_event, server_event_row
from checkoutlab.experiments.assignment import apply_verification, assign, unit_id_for
from checkoutlab.fraud.export import customer_key
from checkoutlab.fraud.scorer import (
    RiskAssessment,
    RiskFeatures,
    RiskScorer,
    RulesRiskScorer,
    risk_level,
    risk_score_0_99,
)
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.models import Merchant
from checkoutlab.merchants.schemas import MerchantConfig, MethodType
from checkoutlab.money import to_major, to_minor
from checkoutlab.payments import sessions
from checkoutlab.payments.cards import redact_card_numbers
from checkoutlab.payments.models import CheckoutSession
from checkoutlab.profile.context import ContextIn, acquire
from checkoutlab.profile.feeds import FxProvider, currency_for_country, default_fx_provider
from checkoutlab.profile.history import PurchaseHistory
from checkoutlab.profile.methods import is_eligible
from checkoutlab.profile.models import Decision
from checkoutlab.profile.reads import CheckoutReads, checkout_reads
from checkoutlab.profile.rules import RuleOutcome, evaluate_rules
from checkoutlab.profile.schema import (
    UI,
    Amount,
    CopyOverrides,
    ExperimentAssignment,
    Inventory,
    InventoryLine,
    Loyalty,
    Ordering,
    PaymentMethod,
    PaymentProfile,
    PresentmentFX,
    Risk,
    Verification,
)
from checkoutlab.profile.signing import ProfileClaims, sign

log = logging.getLogger(__name__)


@dataclass
class ProfileServices:
    """The replaceable parts of the decision path (the fraud and bandit issues swap these)."""

    scorer: RiskScorer
    fx: FxProvider
    policy_for: Any = None  # callable(config, merchant_id) -> OrderingPolicy

    def policy(self, config: MerchantConfig, merchant_id: str) -> OrderingPolicy:
        if self.policy_for is not None:
            return self.policy_for(config, merchant_id)
        return fresh_policy_for(config, merchant_id)


def default_services() -> ProfileServices:
    return ProfileServices(scorer=RulesRiskScorer(), fx=default_fx_provider())


def _assess(
    scorer: RiskScorer, features: RiskFeatures, config: MerchantConfig
) -> tuple[RiskAssessment, int, str]:
    try:
        assessment = scorer.score(features)
    except Exception:  # fail safe: keep taking payments, with verification on
        log.exception("risk scorer %s failed; serving a degraded profile", scorer.name)
        assessment = RiskAssessment(0.5, scorer.name, "unavailable", ["scorer_unavailable"], True)
    score = risk_score_0_99(assessment.score)
    thresholds = config.risk_thresholds
    level = risk_level(score, elevated=thresholds.elevated, highest=thresholds.highest)
    if assessment.degraded and level == "normal":
        level = "elevated"
    return assessment, score, level


def _verification(
    level: str, context: dict[str, Any], rules: RuleOutcome, degraded: bool
) -> Verification:
    steps = {str(step) for step in rules.require}
    # A high-risk context adds CVV re-entry and address verification; the highest level
    # (or a degraded scorer) also steps up to 3-D Secure.
    if level in ("elevated", "highest") or degraded:
        steps.update({"cvv", "avs"})
    if level == "highest" or degraded:
        steps.add("three_ds")
    device = context["device"]
    if device["biometric"] and device["type"] in ("mobile", "tablet"):
        steps.add("biometric")
    return Verification(**{step: True for step in steps})


def _methods(
    config: MerchantConfig,
    checkout: CheckoutSession,
    context: dict[str, Any],
    rules: RuleOutcome,
    policy: OrderingPolicy,
) -> tuple[list[MethodType], float, str, str]:
    eligible = [
        m
        for m in config.ordered_methods()
        if is_eligible(m, currency=checkout.currency, context=context)
    ]
    visible = [m for m in eligible if m not in rules.hide] or eligible
    if not visible:
        raise InvalidRequest(
            "No payment method is available for this checkout (currency "
            f"{checkout.currency}, device {context['device']['type']}); enable a method that "
            "supports it in the merchant configuration.",
            code="no_payment_method_available",
        )
    try:
        ranking = policy.rank(visible, context)
    except Exception:  # fail safe: a broken policy must not stop payments
        log.exception("ordering policy %s failed; using the merchant's order", policy.name)
        ranking = MerchantOrderPolicy().rank(visible, context)
    pinned = [m for m in rules.prioritize if m in visible]
    order = pinned + [m for m in ranking.order if m not in pinned]
    propensity = 1.0 if pinned else ranking.propensity
    return order, propensity, ranking.policy, ranking.policy_version


def _presentment(
    fx: FxProvider, checkout: CheckoutSession, context: dict[str, Any], locale: str
) -> PresentmentFX | None:
    target = context.get("currency") or currency_for_country(context["location"]["country"])
    if not target or target == checkout.currency:
        return None
    quote = fx.quote(checkout.currency, target)
    if quote is None:
        return None
    value = to_minor(to_major(checkout.amount, checkout.currency) * quote.rate, target)
    return PresentmentFX(
        currency=target,
        value=value,
        display=format_money(value, target, locale),
        rate=round(quote.rate, 6),
        rate_date=quote.date,
        source=quote.source,
    )


def _inventory(reads: CheckoutReads) -> Inventory:
    lines = [
        InventoryLine(sku=sku, requested=wanted, available=available)
        for sku, wanted, available in reads.stock_lines()
    ]
    in_stock = all(line.available is None or line.available >= line.requested for line in lines)
    return Inventory(in_stock=in_stock, lines=lines)


def _loyalty(config: MerchantConfig, checkout: CheckoutSession, locale: str) -> Loyalty:
    program = config.loyalty
    if not program.enabled:
        return Loyalty()
    value = checkout.loyalty_balance * program.redemption_value
    return Loyalty(
        enabled=True,
        program=program.name,
        balance_points=checkout.loyalty_balance,
        balance_value=value,
        balance_display=format_money(value, checkout.currency, locale),
        can_redeem=value > 0,
    )


def _features(
    checkout: CheckoutSession, history: PurchaseHistory, context: dict[str, Any], failed: int
) -> RiskFeatures:
    major = to_major(checkout.amount, checkout.currency)
    avg = history.average_amount
    return RiskFeatures(
        amount_major=major,
        customer_known=checkout.customer_ref is not None,
        customer_payments=history.payments_count,
        customer_avg_amount=to_major(avg, checkout.currency) if avg else None,
        customer_disputes=history.disputes,
        session_failed_attempts=failed,
        proxy=bool(context["network"]["proxy"]),
        country_mismatch=False,
        customer_id=customer_key(checkout.merchant_id, checkout.customer_ref, checkout.id),
        terminal_id=checkout.merchant_id,
        amount_minor=checkout.amount,
        currency=checkout.currency,
        at=utcnow(),
        context={k: v for k, v in context.items() if k in ("device", "location")},
    )


def build(
    *,
    db: Session,
    merchant: Merchant,
    checkout: CheckoutSession,
    context_in: ContextIn,
    headers: dict[str, str],
    secret: str,
    services: ProfileServices,
) -> PaymentProfile:
    sessions.ensure_open(checkout)
    config = merchants.cached_config_of(merchant)  # shared: never mutated here
    context = acquire(context_in, headers, default_locale=config.default_locale)
    locale = context["location"]["locale"]
    # failed attempts, purchase history, running experiments and stock: one round trip
    reads = checkout_reads(db=db, checkout=checkout)
    history = reads.history
    context["customer"] = history.as_context()
    context["amount"] = {"value": checkout.amount, "currency": checkout.currency}

    features = _features(checkout, history, context, reads.failed_attempts)
    assessment, score, level = _assess(services.scorer, features, config)
    risk = Risk(
        score=round(assessment.score, 6),
        risk_score=score,
        level=level,
        model=assessment.model,
        model_version=assessment.model_version,
        degraded=assessment.degraded,
        reasons=assessment.reasons,
    )
    activation = {
        "amount": {"value": checkout.amount, "currency": checkout.currency},
        "risk": {"score": risk.score, "risk_score": score, "level": level},
        "context": {k: v for k, v in context.items() if k != "customer"},
        "customer": context["customer"],
    }
    rules = evaluate_rules(config.rules, activation)
    # Experiment variant: after risk and rules, so a variant can add steps but never remove one.
    unit_id = unit_id_for(customer_ref=checkout.customer_ref, session_id=checkout.id)
    assignment = assign(db, merchant.id, unit_id, activation) if reads.experiments_running else None
    verification = apply_verification(
        _verification(level, context, rules, assessment.degraded), assignment
    )
    form = assignment.config if assignment is not None else None
    if form is not None and form.ordering_policy is not None:
        config = config.model_copy(
            update={"ordering_policy": form.ordering_policy, "ordering_params": {}}
        )
    policy = services.policy(config, merchant.id)
    order, propensity, policy_name, policy_version = _methods(
        config, checkout, context, rules, policy
    )
    country = context["location"]["country"]

    decision_id = new_id("prof")
    claims = ProfileClaims(
        decision_id=decision_id,
        merchant_id=merchant.id,
        session_id=checkout.id,
        required=verification.required(),
        methods=[m.value for m in order],
        amount=checkout.amount,
        currency=checkout.currency,
    )
    profile = PaymentProfile(
        id=decision_id,
        token=sign(claims, secret=secret, expires_at=checkout.expires_at),
        session_id=checkout.id,
        amount=Amount(
            value=checkout.amount,
            currency=checkout.currency,
            display=format_money(checkout.amount, checkout.currency, locale),
            presentment=_presentment(services.fx, checkout, context, locale),
        ),
        risk=risk,
        methods=[
            PaymentMethod(
                type=m, config=method_config(m, currency=checkout.currency, country=country)
            )
            for m in order
        ],
        verification=verification,
        loyalty=_loyalty(config, checkout, locale),
        inventory=_inventory(reads),
        experiment=(
            ExperimentAssignment(
                key=assignment.key,
                variant=assignment.variant,
                probability=assignment.probability,
            )
            if assignment is not None
            else None
        ),
        ordering=Ordering(policy=policy_name, policy_version=policy_version, propensity=propensity),
        ui=UI(
            layout=rules.layout or (form.layout if form else None) or config.layout,
            locale=locale,
            theme=(form.theme if form and form.theme else None) or config.theme,
            copy_overrides=CopyOverrides.model_validate(  # a variant's slots win
                config.copy_overrides.model_dump(exclude_none=True)
                | (form.copy_overrides if form else {})
            ),
            loyalty_placement=(form.loyalty_placement if form else None)
            or config.loyalty_placement,
        ),
        expires_at=checkout.expires_at,
    )
    _log_decision(db, merchant, checkout, profile, context, features, assessment, rules)
    return profile


def _log_decision(
    db: Session,
    merchant: Merchant,
    checkout: CheckoutSession,
    profile: PaymentProfile,
    context: dict[str, Any],
    features: RiskFeatures,
    assessment: RiskAssessment,
    rules: RuleOutcome,
) -> None:
    features_row = {f.name: getattr(features, f.name) for f in fields(features)}
    del features_row["context"]
    features_row["at"] = features.at.isoformat() if features.at else None
    # One Core INSERT per table, no ORM unit of work: nothing reads these rows back here.
    db.connection().execute(
        _DECISION_INSERT,
        {
            "id": profile.id,
            "merchant_id": merchant.id,
            "session_id": checkout.id,
            "customer_ref": checkout.customer_ref,
            # browser strings: never keep a card number
            "context": redact_card_numbers(context),
            "features": {
                **features_row,
                "model_features": assessment.features,
                "rules_matched": rules.matched,
            },
            "risk_score": profile.risk.score,
            "risk_level": profile.risk.level,
            "model": profile.risk.model,
            "model_version": profile.risk.model_version,
            "policy": profile.ordering.policy,
            "policy_version": profile.ordering.policy_version,
            "propensity": profile.ordering.propensity,
            "ordering": [m.type.value for m in profile.methods],
            "experiment_key": profile.experiment.key if profile.experiment else None,
            "variant": profile.experiment.variant if profile.experiment else None,
            "assignment_probability": (
                profile.experiment.probability if profile.experiment else None
            ),
            "verification": profile.verification.model_dump(),
            "profile": profile.model_dump(mode="json", exclude={"token"}),
            "created_at": utcnow(),
            "expires_at": profile.expires_at,
        },
    )
    insert_server_event(
        db=db,
        row=server_event_row(
            merchant_id=merchant.id,
            type="profile_served",
            session_id=checkout.id,
            decision_id=profile.id,
            properties={
                "risk_level": profile.risk.level,
                "methods": [m.type.value for m in profile.methods],
                "policy": profile.ordering.policy,
                "propensity": profile.ordering.propensity,
            },
        ),
    )
    db.commit()  # durable before the profile is returned


_DECISION_INSERT = Decision.__table__.insert()
