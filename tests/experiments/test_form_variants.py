"""A variant's form configuration reaches the rendered form (profile → ``/v1/elements``), its
exposure is logged with the assignment probability, and risk always comes first."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from checkoutlab.db import Database
from checkoutlab.events.models import Event

COPY = {
    "heading": "Almost yours <b>now</b>",
    "pay_button": "Complete order ({amount})",
    "footer_note": "Free returns for 30 days",
}


def _experiment(client: TestClient, merchant: Any, treatment: dict[str, Any]) -> None:
    body = {
        "key": "form",
        "seed": "form-seed",
        "variants": [
            {"key": "control", "control": True, "weight": 1},
            {"key": "treatment", "weight": 3, "config": treatment},
        ],
    }
    created = client.post("/v1/experiments", json=body, headers=merchant.secret_headers)
    assert created.status_code == 201, created.text
    client.post("/v1/experiments/form/start", headers=merchant.secret_headers).raise_for_status()


def _profiles(new_checkout: Any, n: int, **context: Any) -> dict[str, list[tuple[Any, dict]]]:
    """Checkouts by variant: (checkout, profile) pairs until both variants were served."""
    by_variant: dict[str, list[tuple[Any, dict]]] = {}
    for i in range(n):
        checkout = new_checkout(customer=f"shopper-{i}", loyalty_balance=800)
        profile = checkout.profile(context or None)
        by_variant.setdefault(profile["experiment"]["variant"], []).append((checkout, profile))
    assert set(by_variant) == {"control", "treatment"}
    return by_variant


@pytest.fixture
def loyal_merchant(make_merchant: Any) -> Any:
    return make_merchant("Loyal Shop", {"loyalty": {"enabled": True, "name": "Club"}})


@pytest.fixture
def loyal_checkout(client: TestClient, loyal_merchant: Any, new_checkout: Any) -> Any:
    return lambda **fields: new_checkout(loyal_merchant, **fields)


def test_variant_copy_theme_and_loyalty_placement_reach_the_html(
    client: TestClient, loyal_merchant: Any, loyal_checkout: Any, database: Database
) -> None:
    _experiment(
        client,
        loyal_merchant,
        {
            "layout": "accordion",
            "theme": {"primary_color": "#0a7d32"},
            "copy_overrides": COPY,
            "loyalty_placement": "above_methods",
        },
    )
    served = _profiles(loyal_checkout, 12)
    h = loyal_merchant.public_headers
    for variant, pairs in served.items():
        profile = pairs[0][1]
        rendered = client.post("/v1/elements", json={"token": profile["token"]}, headers=h)
        assert rendered.status_code == 200, rendered.text
        html, css = rendered.json()["html"], rendered.json()["css"]
        loyalty, methods = html.find('data-role="loyalty"'), html.find('class="cl-methods')
        assert loyalty >= 0 and methods >= 0
        if variant == "treatment":
            assert profile["ui"]["copy_overrides"] == COPY
            assert profile["ui"]["loyalty_placement"] == "above_methods"
            assert 'data-layout="accordion"' in html
            assert "Almost yours &lt;b&gt;now&lt;/b&gt;" in html and "<b>" not in html
            assert "Complete order (€25.99)</button>" in html
            assert "Free returns for 30 days" in html
            assert loyalty < methods
            assert "#0a7d32" in css
        else:
            assert profile["ui"]["loyalty_placement"] == "below_methods"
            assert "Pay €25.99</button>" in html
            assert 'data-role="heading"' not in html and "Free returns" not in html
            assert methods < loyalty
            assert "#0a7d32" not in css

    # the exposure: logged when the form is rendered, with the assignment probability
    with database.session() as db:
        events = db.scalars(
            select(Event).where(
                Event.merchant_id == loyal_merchant.id, Event.type == "elements_rendered"
            )
        ).all()
    exposures = {e.decision_id: e.properties["experiment"] for e in events}
    assert len(exposures) == 2
    for variant, pairs in served.items():
        profile = pairs[0][1]
        expected = {"control": 0.25, "treatment": 0.75}[variant]
        assert exposures[profile["id"]] == {
            "key": "form",
            "variant": variant,
            "probability": expected,
        }


def test_hidden_loyalty_variant_leaves_the_section_out(
    client: TestClient, loyal_merchant: Any, loyal_checkout: Any
) -> None:
    _experiment(client, loyal_merchant, {"loyalty_placement": "hidden"})
    served = _profiles(loyal_checkout, 12)
    h = loyal_merchant.public_headers
    for variant, pairs in served.items():
        html = client.post("/v1/elements", json={"token": pairs[0][1]["token"]}, headers=h).json()[
            "html"
        ]
        assert ('data-role="loyalty"' in html) == (variant == "control")


def test_unknown_copy_slot_is_refused_with_the_known_ones(
    client: TestClient, merchant: Any
) -> None:
    body = {
        "key": "copy",
        "variants": [
            {"key": "control", "control": True},
            {"key": "b", "config": {"copy_overrides": {"legend": "Pay how?"}}},
        ],
    }
    response = client.post("/v1/experiments", json=body, headers=merchant.secret_headers)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "heading" in message and "pay_button" in message and "legend" in message


def test_no_variant_removes_a_step_that_risk_or_rules_require(
    client: TestClient, make_merchant: Any, new_checkout: Any
) -> None:
    """The merchant rule requires 3-D Secure and address checks; the treatment adds CVV. Both
    variants keep the rule's steps, and confirm refuses a payment without them."""
    strict = make_merchant(
        "Strict Shop", {"rules": [{"when": "amount.value > 0", "then": {"require": ["avs"]}}]}
    )
    _experiment(client, strict, {"layout": "list", "verification_add": ["cvv"]})
    served: dict[str, dict] = {}
    for i in range(12):
        checkout = new_checkout(strict, customer=f"c{i}")
        profile = checkout.profile()
        variant = profile["experiment"]["variant"]
        assert profile["verification"]["avs"] is True, variant
        assert profile["verification"]["cvv"] is (variant == "treatment")
        if variant not in served:
            served[variant] = profile
            refused = checkout.confirm(profile["token"], key=f"k{i}")
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["code"] == "verification_required"
    assert set(served) == {"control", "treatment"}


def test_served_profile_schema_describes_copy_and_loyalty_placement(client: TestClient) -> None:
    schema = client.get("/v1/schemas/payment_profile.json").json()
    ui = schema["$defs"]["UI"]["properties"]
    assert ui["loyalty_placement"]["enum"] == [
        "above_methods",
        "below_methods",
        "summary",
        "hidden",
    ]
    assert "loyalty_placement" not in schema["$defs"]["UI"]["required"]  # additive, optional
    slots = schema["$defs"]["CopyOverrides"]
    assert set(slots["properties"]) == {"heading", "pay_button", "footer_note"}
    assert slots["additionalProperties"] is False
