"""MerchantConfig: the JSON a merchant saves is validated, with messages that say what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from checkoutlab.merchants.schemas import MerchantConfig

SEVEN_METHODS = [
    "card",
    "apple_pay",
    "google_pay",
    "bank_transfer",
    "sepa_debit",
    "ideal",
    "klarna",
]


def refused(config: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        MerchantConfig.model_validate(config)
    return str(info.value)


def test_defaults() -> None:
    config = MerchantConfig()
    assert config.risk_thresholds.elevated == 65
    assert config.risk_thresholds.highest == 75
    assert [m.value for m in config.enabled_methods] == SEVEN_METHODS
    assert [m.value for m in config.ordered_methods()] == SEVEN_METHODS
    assert config.loyalty.enabled is False
    assert config.rules == []


def test_valid_config_with_every_rule_action_round_trips() -> None:
    raw = {
        "enabled_methods": ["card", "klarna", "ideal"],
        "default_order": ["ideal", "card"],
        "allowed_origins": ["https://shop.example"],
        "risk_thresholds": {"elevated": 50, "highest": 50},
        "loyalty": {"enabled": True, "points_per_unit": 2, "redemption_value": 1},
        "theme": {"primary_color": "#112233"},
        "rules": [
            {"when": "risk.risk_score >= 65", "then": {"require": ["cvv", "avs"]}},
            {
                "when": "context.device.type == 'mobile' && context.device.biometric",
                "then": {"prioritize": "apple_pay"},
            },
            {"when": "amount.value < 1000", "then": {"hide": "bank_transfer"}},
            {"when": "amount.value > 100000", "then": {"set_layout": "list"}},
        ],
    }
    config = MerchantConfig.model_validate(raw)
    # the merchant's order first, then enabled methods it did not list
    assert [m.value for m in config.ordered_methods()] == ["ideal", "card", "klarna"]
    assert MerchantConfig.model_validate(config.model_dump(mode="json")) == config


@pytest.mark.parametrize(
    ("expression", "position"),
    [("risk.risk_score >= ", "line 1, column 17"), ("a &&\n (b ||", "line 2, column")],
)
def test_invalid_cel_is_refused_with_its_position(expression: str, position: str) -> None:
    message = refused({"rules": [{"when": expression, "then": {"require": ["cvv"]}}]})
    assert "invalid CEL expression" in message
    assert position in message
    assert "rules.0.when" in message


def test_rule_without_action_is_refused() -> None:
    message = refused({"rules": [{"when": "true", "then": {}}]})
    assert "require, prioritize, hide, set_layout" in message


def test_rule_action_names_unknown_step_or_method() -> None:
    assert "rules.0.then.require.0" in refused(
        {"rules": [{"when": "true", "then": {"require": ["pin"]}}]}
    )
    assert "rules.0.then.hide" in refused({"rules": [{"when": "true", "then": {"hide": "cash"}}]})


def test_unknown_method_is_refused() -> None:
    message = refused({"enabled_methods": ["card", "paypal"]})
    assert "enabled_methods.1" in message
    assert "'klarna'" in message  # lists the methods that exist


def test_default_order_naming_a_disabled_method_is_refused() -> None:
    message = refused({"enabled_methods": ["card", "ideal"], "default_order": ["klarna", "card"]})
    assert "default_order names methods that are not enabled" in message
    assert "klarna" in message


def test_duplicate_and_empty_method_lists_are_refused() -> None:
    assert "duplicates" in refused({"enabled_methods": ["card", "card"]})
    assert "at least one" in refused({"enabled_methods": []})


def test_highest_threshold_below_elevated_is_refused() -> None:
    message = refused({"risk_thresholds": {"elevated": 80, "highest": 70}})
    assert "highest must be >= risk_thresholds.elevated" in message


def test_threshold_out_of_range_is_refused() -> None:
    assert "risk_thresholds.elevated" in refused({"risk_thresholds": {"elevated": 100}})


@pytest.mark.parametrize("colour", ["red", "#fff", "#12345g", "url(x)"])
def test_bad_theme_colour_is_refused(colour: str) -> None:
    message = refused({"theme": {"primary_color": colour}})
    assert "theme.primary_color" in message
    assert "six-digit hex like '#635bff'" in message


def test_theme_schema_still_documents_the_colour_pattern() -> None:
    schema = MerchantConfig.model_json_schema()
    theme = schema["$defs"]["Theme"]["properties"]
    assert theme["primary_color"]["pattern"] == "^#[0-9a-fA-F]{6}$"


def test_unknown_keys_and_bad_origins_are_refused() -> None:
    assert "enabled_method" in refused({"enabled_method": ["card"]})
    assert "allowed_origins.0" in refused({"allowed_origins": ["https://shop.example/path"]})
