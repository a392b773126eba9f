"""evaluate_rules: CEL merchant rules merged into one outcome; broken rules never apply."""

from __future__ import annotations

from typing import Any

from checkoutlab.merchants.schemas import Layout, MethodType, Rule, VerificationStep
from checkoutlab.profile.rules import evaluate_rules


def rule(when: str, **then: Any) -> Rule:
    return Rule.model_validate({"when": when, "then": then})


def activation(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "amount": {"value": 500, "currency": "EUR"},
        "risk": {"score": 0.7, "risk_score": 70, "level": "elevated"},
        "context": {
            "device": {"type": "mobile", "os": "ios", "biometric": True},
            "location": {"country": None, "locale": "en"},
        },
        "customer": {"returning": False, "payments_count": 0, "average_amount": None},
    }
    return base | overrides


def test_no_rules_is_an_empty_outcome() -> None:
    outcome = evaluate_rules([], activation())
    assert (outcome.require, outcome.prioritize, outcome.hide, outcome.layout) == (
        set(),
        [],
        set(),
        None,
    )


def test_matching_actions_are_merged() -> None:
    rules = [
        rule("risk.risk_score >= 65", require=["cvv", "avs"]),
        rule("context.device.type == 'mobile' && context.device.biometric", prioritize="apple_pay"),
        rule("amount.value < 1000", hide="bank_transfer"),
        rule("amount.value < 1000", set_layout="accordion"),
        rule("amount.value < 1000", set_layout="list"),  # last layout wins
        rule("amount.value >= 1000", hide="card"),  # false: no effect
    ]
    outcome = evaluate_rules(rules, activation())
    assert outcome.require == {VerificationStep.cvv, VerificationStep.avs}
    assert outcome.prioritize == [MethodType.apple_pay]
    assert outcome.hide == {MethodType.bank_transfer}
    assert outcome.layout is Layout.list
    assert outcome.matched == [0, 1, 2, 3, 4]
    assert outcome.errors == []


def test_prioritize_keeps_rule_order_without_duplicates() -> None:
    rules = [
        rule("true", prioritize="klarna"),
        rule("true", prioritize="ideal"),
        rule("true", prioritize="klarna"),
    ]
    assert evaluate_rules(rules, activation()).prioritize == [MethodType.klarna, MethodType.ideal]


def test_rules_see_each_activation_root() -> None:
    rules = [
        rule("amount.currency == 'EUR'", hide="ideal"),
        rule("risk.level == 'elevated'", require=["cvv"]),
        rule("context.device.os == 'ios'", prioritize="apple_pay"),
        rule("!customer.returning", set_layout="tabs"),
    ]
    assert evaluate_rules(rules, activation()).matched == [0, 1, 2, 3]


def test_rule_reading_a_missing_field_does_not_apply_and_is_reported() -> None:
    rules = [
        rule("context.network.proxy", require=["three_ds"]),  # 'network' absent
        rule("amount.value < 1000", hide="bank_transfer"),
    ]
    outcome = evaluate_rules(rules, activation())
    assert outcome.require == set()
    assert outcome.matched == [1]
    assert outcome.hide == {MethodType.bank_transfer}
    assert len(outcome.errors) == 1
    assert outcome.errors[0].startswith("rule 0:")
    assert "network" in outcome.errors[0]


def test_rule_comparing_a_null_field_is_reported_not_applied() -> None:
    outcome = evaluate_rules([rule("customer.average_amount > 10.0", hide="klarna")], activation())
    assert outcome.hide == set()
    assert outcome.errors and outcome.errors[0].startswith("rule 0:")


def test_non_boolean_expression_is_reported() -> None:
    outcome = evaluate_rules([rule("amount.value + 1", hide="card")], activation())
    assert outcome.hide == set()
    assert outcome.matched == []
    assert outcome.errors == ["rule 0: expression is not boolean"]


def test_runtime_error_is_reported() -> None:
    outcome = evaluate_rules([rule("amount.value / 0 > 1", hide="card")], activation())
    assert outcome.hide == set()
    assert "rule 0:" in outcome.errors[0]
    assert "divide by zero" in outcome.errors[0]
