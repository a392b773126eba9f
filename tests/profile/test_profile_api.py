"""POST /v1/payment_profile through HTTP: context acquisition, risk, rules, ordering, log, token."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jsonschema
import jwt
import pytest
from sqlalchemy import func, select

from checkoutlab.events.models import Event
from checkoutlab.events.service import read_since
from checkoutlab.profile.models import Decision
from checkoutlab.profile.schema import PaymentProfile

IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
DESKTOP_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)
IOS_WALLET = {
    "device": {
        "type": "mobile",
        "os": "ios",
        "biometric": True,
        "apple_pay": True,
        "google_pay": False,
    }
}
DESKTOP = {"device": {"type": "desktop"}}
PROFILE_FIELDS = {
    "id",
    "token",
    "session_id",
    "amount",
    "risk",
    "methods",
    "verification",
    "loyalty",
    "inventory",
    "experiment",
    "ordering",
    "ui",
    "expires_at",
}


def methods(profile: dict[str, Any]) -> list[str]:
    return [m["type"] for m in profile["methods"]]


def required(profile: dict[str, Any]) -> set[str]:
    return {step for step, on in profile["verification"].items() if on}


def decision(database: Any, profile: dict[str, Any]) -> Decision:
    with database.session() as db:
        row = db.get(Decision, profile["id"])
    assert row is not None
    return row


# -- contract -------------------------------------------------------------------------------


def test_profile_validates_against_the_served_schema(client, new_checkout) -> None:
    response = client.get("/v1/schemas/payment_profile.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["type"] == "object"
    assert set(schema["properties"]) == PROFILE_FIELDS
    assert set(schema["required"]) >= PROFILE_FIELDS - {"experiment"}
    risk = schema["$defs"]["Risk"]["properties"]
    assert risk["level"]["enum"] == ["normal", "elevated", "highest"]
    assert (risk["risk_score"]["minimum"], risk["risk_score"]["maximum"]) == (0, 99)

    profile = new_checkout().profile(DESKTOP)
    jsonschema.Draft202012Validator(schema).validate(profile)
    PaymentProfile.model_validate(profile)
    broken = {**profile, "risk": {**profile["risk"], "level": "catastrophic"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)
    assert set(profile) == PROFILE_FIELDS
    assert set(schema["required"]) <= set(profile)
    assert profile["experiment"] is None


def test_profile_amount_comes_from_the_session(new_checkout) -> None:
    checkout = new_checkout(amount=1234, currency="usd")
    profile = checkout.profile({**DESKTOP, "amount": 1, "currency": None})
    assert profile["session_id"] == checkout.id
    assert profile["amount"]["value"] == 1234
    assert profile["amount"]["currency"] == "USD"
    assert profile["amount"]["display"] == "$12.34"


# -- seed examples -------------------------------------------------------------------------


def test_mobile_shopper_with_biometrics_and_apple_pay(new_checkout) -> None:
    profile = new_checkout().profile(IOS_WALLET)
    assert profile["verification"]["biometric"] is True
    assert methods(profile)[0] == "apple_pay"
    assert "google_pay" not in methods(profile)  # the device reported no Google Pay


def test_android_shopper_gets_google_pay_first(new_checkout) -> None:
    context = {"device": {"type": "mobile", "os": "android", "google_pay": True}}
    profile = new_checkout().profile(context)
    assert methods(profile)[0] == "google_pay"
    assert "apple_pay" not in methods(profile)
    assert profile["verification"]["biometric"] is False  # no biometric capability


def test_desktop_without_wallets_gets_no_wallet_methods(new_checkout) -> None:
    profile = new_checkout().profile(DESKTOP)
    assert methods(profile)[0] == "card"
    assert not {"apple_pay", "google_pay"} & set(methods(profile))
    assert required(profile) == set()


def test_normal_risk_is_marked_as_rules_model(new_checkout) -> None:
    profile = new_checkout(customer="cus_1").profile(DESKTOP)
    risk = profile["risk"]
    assert risk["model"] == "rules"
    assert risk["model_version"] == "rules-1"
    assert risk["level"] == "normal"
    assert risk["degraded"] is False
    assert 0 <= risk["score"] <= 1
    assert risk["risk_score"] == int(risk["score"] * 100)


def test_high_risk_context_requires_cvv_avs_and_three_ds(new_checkout) -> None:
    checkout = new_checkout(amount=90_000, customer="cus_first_time")
    profile = checkout.profile({**DESKTOP, "network": {"proxy": True}})
    risk = profile["risk"]
    assert risk["model"] == "rules"
    assert risk["level"] == "highest"
    assert risk["risk_score"] >= 75
    assert {"anonymizing_proxy", "first_purchase", "high_amount"} <= set(risk["reasons"])
    assert required(profile) == {"cvv", "avs", "three_ds"}


def test_elevated_risk_requires_cvv_and_avs_but_not_three_ds(make_merchant, new_checkout) -> None:
    shop = make_merchant(config={"risk_thresholds": {"elevated": 50, "highest": 90}})
    profile = new_checkout(owner=shop, customer="cus_new").profile(
        {**DESKTOP, "network": {"proxy": True}}
    )
    assert profile["risk"]["level"] == "elevated"
    assert 50 <= profile["risk"]["risk_score"] < 90
    assert required(profile) == {"cvv", "avs"}


def test_active_loyalty_program_shows_balance_and_redeem(make_merchant, new_checkout) -> None:
    shop = make_merchant(config={"loyalty": {"enabled": True, "redemption_value": 1}})
    checkout = new_checkout(owner=shop, loyalty_balance=700)
    loyalty = checkout.profile(DESKTOP)["loyalty"]
    assert loyalty["enabled"] is True
    assert loyalty["balance_points"] == 700
    assert loyalty["balance_value"] == 700
    assert loyalty["balance_display"] == "€7.00"
    assert loyalty["can_redeem"] is True
    german = checkout.profile({**DESKTOP, "locale": "de-DE"})["loyalty"]
    assert german["balance_display"] == "7,00\xa0€"


def test_loyalty_off_or_empty_cannot_redeem(make_merchant, new_checkout) -> None:
    assert new_checkout(loyalty_balance=700).profile(DESKTOP)["loyalty"] == {
        "enabled": False,
        "program": None,
        "balance_points": 0,
        "balance_value": 0,
        "balance_display": None,
        "can_redeem": False,
    }
    shop = make_merchant(config={"loyalty": {"enabled": True}})
    empty = new_checkout(owner=shop, loyalty_balance=0).profile(DESKTOP)["loyalty"]
    assert empty["enabled"] is True
    assert empty["can_redeem"] is False


def test_method_order_follows_merchant_default_order(make_merchant, new_checkout) -> None:
    shop = make_merchant(
        config={"ordering_policy": "merchant_order", "default_order": ["klarna", "ideal", "card"]}
    )
    checkout = new_checkout(owner=shop)
    profile = checkout.profile(DESKTOP)
    assert methods(profile) == ["klarna", "ideal", "card", "bank_transfer", "sepa_debit"]
    assert profile["ordering"]["policy"] == "merchant_order"
    assert profile["ordering"]["propensity"] == 1.0
    # merchant_order ignores the mobile wallet heuristics
    assert methods(checkout.profile(IOS_WALLET))[:4] == ["klarna", "ideal", "card", "apple_pay"]


def test_only_enabled_methods_are_offered(make_merchant, new_checkout) -> None:
    shop = make_merchant(config={"enabled_methods": ["card", "ideal"]})
    assert methods(new_checkout(owner=shop).profile(IOS_WALLET)) == ["card", "ideal"]


def test_merchant_rules_take_effect(make_merchant, new_checkout) -> None:
    shop = make_merchant(
        config={
            "rules": [
                {"when": "amount.value < 1000", "then": {"hide": "bank_transfer"}},
                {"when": "amount.value < 1000", "then": {"prioritize": "klarna"}},
                {"when": "amount.value < 1000", "then": {"set_layout": "list"}},
                {"when": "context.location.locale == 'de'", "then": {"require": ["avs"]}},
                {"when": "context.no_such_field", "then": {"hide": "card"}},
            ]
        }
    )
    small = new_checkout(owner=shop, amount=999).profile({**DESKTOP, "locale": "de"})
    assert "bank_transfer" not in methods(small)
    assert methods(small)[0] == "klarna"
    assert "card" in methods(small)  # the rule that cannot be evaluated does not apply
    assert small["ui"]["layout"] == "list"
    assert required(small) == {"avs"}

    large = new_checkout(owner=shop, amount=1000).profile(DESKTOP)
    assert "bank_transfer" in methods(large)
    assert methods(large)[0] == "card"
    assert large["ui"]["layout"] == "tabs"
    assert required(large) == set()


def test_rule_prioritize_beats_the_ordering_policy(make_merchant, new_checkout) -> None:
    shop = make_merchant(
        config={
            "rules": [
                {
                    "when": "context.device.type == 'mobile' && context.device.biometric",
                    "then": {"prioritize": "apple_pay"},
                },
                {"when": "true", "then": {"prioritize": "ideal"}},
            ]
        }
    )
    context = {**IOS_WALLET, "device": {**IOS_WALLET["device"], "google_pay": True}}
    assert methods(new_checkout(owner=shop).profile(context))[:3] == [
        "apple_pay",
        "ideal",
        "google_pay",
    ]


def test_ideal_and_sepa_only_for_eur(new_checkout) -> None:
    eur = methods(new_checkout(currency="EUR").profile(DESKTOP))
    assert {"ideal", "sepa_debit"} <= set(eur)
    usd = methods(new_checkout(currency="USD").profile(DESKTOP))
    assert not {"ideal", "sepa_debit"} & set(usd)
    assert {"card", "klarna", "bank_transfer"} <= set(usd)


def test_out_of_stock_items_are_reported(client, merchant, new_checkout) -> None:
    stock = client.put(
        "/v1/inventory",
        json={"items": [{"sku": "SKU-1", "quantity": 1}]},
        headers=merchant.secret_headers,
    )
    assert stock.status_code == 200, stock.text
    inventory = new_checkout(line_items=[{"sku": "SKU-1", "quantity": 2}]).profile(DESKTOP)[
        "inventory"
    ]
    assert inventory == {
        "in_stock": False,
        "lines": [{"sku": "SKU-1", "requested": 2, "available": 1}],
    }


# -- context from headers --------------------------------------------------------------------


def test_device_from_user_agent_when_context_has_no_type(database, new_checkout) -> None:
    profile = new_checkout().profile({"device": {"biometric": True}}, **{"User-Agent": IPHONE_UA})
    assert profile["verification"]["biometric"] is True
    device = decision(database, profile).context["device"]
    assert (device["type"], device["os"]) == ("mobile", "ios")


def test_reported_device_type_wins_over_user_agent(database, new_checkout) -> None:
    profile = new_checkout().profile(
        {"device": {"type": "desktop", "biometric": True}}, **{"User-Agent": IPHONE_UA}
    )
    assert profile["verification"]["biometric"] is False
    assert decision(database, profile).context["device"]["type"] == "desktop"


def test_desktop_user_agent(database, new_checkout) -> None:
    profile = new_checkout().profile({"device": {"biometric": True}}, **{"User-Agent": DESKTOP_UA})
    assert profile["verification"]["biometric"] is False
    device = decision(database, profile).context["device"]
    assert (device["type"], device["os"]) == ("desktop", "windows")


def test_device_from_client_hints(database, new_checkout) -> None:
    profile = new_checkout().profile(
        {"device": {"biometric": True}},
        **{"User-Agent": DESKTOP_UA, "Sec-CH-UA-Mobile": "?1", "Sec-CH-UA-Platform": '"Android"'},
    )
    assert profile["verification"]["biometric"] is True
    device = decision(database, profile).context["device"]
    assert (device["type"], device["os"]) == ("mobile", "android")


@pytest.mark.parametrize(
    ("context", "headers", "merchant_locale", "expected"),
    [
        ({"locale": "de-DE"}, {}, "en", "de"),
        ({"locale": "ja"}, {"Accept-Language": "fr"}, "en", "ja"),
        ({}, {"Accept-Language": "fr-FR,fr;q=0.9"}, "en", "fr"),
        ({}, {"Accept-Language": "de;q=0.3, es;q=0.9"}, "en", "es"),
        ({}, {"Accept-Language": "pt-BR"}, "en", "en"),
        ({}, {"Accept-Language": "pt-BR,pt;q=0.9"}, "es", "es"),
        ({"locale": "xx-YY"}, {}, "de", "de"),
        ({}, {}, "fr", "fr"),
    ],
)
def test_locale_negotiation(
    make_merchant, new_checkout, context, headers, merchant_locale, expected
) -> None:
    shop = make_merchant(config={"default_locale": merchant_locale})
    profile = new_checkout(owner=shop).profile({**DESKTOP, **context}, **headers)
    assert profile["ui"]["locale"] == expected


def test_amount_display_is_localized(new_checkout) -> None:
    checkout = new_checkout(amount=123456, currency="EUR")
    assert checkout.profile({"locale": "en"})["amount"]["display"] == "€1,234.56"
    assert checkout.profile({"locale": "de"})["amount"]["display"] == "1.234,56\xa0€"
    assert checkout.profile({"locale": "fr"})["amount"]["display"] == "1\u202f234,56\xa0€"


# -- FX presentment --------------------------------------------------------------------------


def test_presentment_in_the_shoppers_currency(new_checkout) -> None:
    amount = new_checkout(amount=2599, currency="EUR").profile({**DESKTOP, "country": "JP"})[
        "amount"
    ]
    assert amount["value"] == 2599
    assert amount["currency"] == "EUR"  # the charge stays in the session currency
    fx = amount["presentment"]
    assert fx["currency"] == "JPY"
    assert fx["value"] > 0
    assert fx["value"] == round(25.99 * fx["rate"])  # JPY has no minor unit
    assert datetime.fromisoformat(fx["rate_date"])
    assert fx["source"]
    assert "¥" in fx["display"] or "￥" in fx["display"]


def test_presentment_from_accept_language_region(new_checkout) -> None:
    fx = new_checkout(currency="EUR").profile(DESKTOP, **{"Accept-Language": "en-GB"})["amount"][
        "presentment"
    ]
    assert fx["currency"] == "GBP"


def test_same_currency_has_no_presentment(new_checkout) -> None:
    checkout = new_checkout(currency="EUR")
    assert checkout.profile({**DESKTOP, "country": "DE"})["amount"]["presentment"] is None
    assert checkout.profile(DESKTOP)["amount"]["presentment"] is None


def test_region_that_is_not_a_country_is_ignored(database, new_checkout) -> None:
    profile = new_checkout(currency="EUR").profile(
        DESKTOP, **{"Accept-Language": "es-419,es;q=0.9"}
    )
    assert profile["ui"]["locale"] == "es"
    assert profile["amount"]["presentment"] is None
    assert decision(database, profile).context["location"]["country"] is None


# -- purchase history ------------------------------------------------------------------------


def test_last_successful_method_goes_first_for_a_returning_customer(database, new_checkout) -> None:
    first = new_checkout(customer="cus_x")
    token = first.profile(DESKTOP)["token"]
    paid = first.confirm(token, key="pay-1", method="klarna")
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"

    again = new_checkout(customer="cus_x", amount=5000)
    profile = again.profile(DESKTOP)
    assert profile["ordering"]["policy"] == "context_rules"
    assert methods(profile)[0] == "klarna"
    assert "first_purchase" not in profile["risk"]["reasons"]
    customer = decision(database, profile).context["customer"]
    assert customer["returning"] is True
    assert customer["payments_count"] == 1
    assert customer["last_method"] == "klarna"
    assert customer["average_amount"] == 2599

    # on mobile the device's wallet still comes first, then the customer's last method
    assert methods(again.profile(IOS_WALLET))[:2] == ["apple_pay", "klarna"]
    # another customer has no history
    assert methods(new_checkout(customer="cus_y").profile(DESKTOP))[0] == "card"


def test_failed_payments_are_not_history(new_checkout) -> None:
    first = new_checkout(customer="cus_z")
    declined = first.confirm(first.profile(DESKTOP)["token"], key="d1", card="4000000000000002")
    assert declined.status_code == 402, declined.text
    profile = new_checkout(customer="cus_z").profile(DESKTOP)
    assert "first_purchase" in profile["risk"]["reasons"]
    assert methods(profile)[0] == "card"


# -- decision log ----------------------------------------------------------------------------


def test_each_profile_writes_one_decision_and_a_profile_served_event(
    database, new_checkout
) -> None:
    checkout = new_checkout(customer="cus_log")
    profile = checkout.profile({**IOS_WALLET, "country": "NL"})
    row = decision(database, profile)
    assert row.session_id == checkout.id
    assert row.customer_ref == "cus_log"
    assert row.context["device"]["type"] == "mobile"
    assert row.context["location"]["country"] == "NL"
    assert row.context["customer"]["payments_count"] == 0
    assert row.model == profile["risk"]["model"] == "rules"
    assert row.model_version == profile["risk"]["model_version"]
    assert row.policy == profile["ordering"]["policy"]
    assert row.policy_version == profile["ordering"]["policy_version"]
    assert row.propensity == profile["ordering"]["propensity"]
    assert row.ordering == methods(profile)
    assert row.risk_level == profile["risk"]["level"]
    assert row.verification == profile["verification"]
    assert row.expires_at == datetime.fromisoformat(profile["expires_at"])
    assert row.profile["id"] == profile["id"]
    assert "token" not in row.profile

    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(Decision)) == 1
        events = read_since(db=db, types=["profile_served"])
    assert len(events) == 1
    assert events[0].session_id == checkout.id
    assert events[0].decision_id == profile["id"]
    assert events[0].source == "server"
    assert events[0].properties["methods"] == methods(profile)

    second = checkout.profile(DESKTOP)
    assert second["id"] != profile["id"]
    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(Decision)) == 2
        assert db.scalar(select(func.count()).select_from(Event)) == 2


def test_refused_profile_writes_nothing(client, database, merchant, new_checkout) -> None:
    checkout = new_checkout()
    response = client.post(
        "/v1/payment_profile",
        json={"client_secret": checkout.session["client_secret"] + "x", "context": {}},
        headers=merchant.public_headers,
    )
    assert response.status_code == 400
    with database.session() as db:
        assert db.scalar(select(func.count()).select_from(Decision)) == 0
        assert db.scalar(select(func.count()).select_from(Event)) == 0


# -- token and elements -------------------------------------------------------------------


def test_token_is_signed_and_expires_with_the_session(settings, merchant, new_checkout) -> None:
    checkout = new_checkout(customer="cus_t")
    profile = checkout.profile(DESKTOP)
    expires_at = datetime.fromisoformat(checkout.session["expires_at"])
    assert datetime.fromisoformat(profile["expires_at"]) == expires_at

    claims = jwt.decode(profile["token"], options={"verify_signature": False})
    assert claims["exp"] == int(expires_at.timestamp())
    assert claims["sid"] == checkout.id
    assert claims["sub"] == profile["id"]
    assert claims["mid"] == merchant.id
    assert claims["amt"] == checkout.session["amount"]
    assert claims["mth"] == methods(profile)
    assert jwt.get_unverified_header(profile["token"])["alg"] == "HS256"
    # the signature is an HMAC with the server's secret, and only that secret
    jwt.decode(
        profile["token"],
        settings.secret_key,
        algorithms=["HS256"],
        audience="checkoutlab:profile",
    )
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            profile["token"],
            "another-secret-key-that-is-long-enough-000",
            algorithms=["HS256"],
            audience="checkoutlab:profile",
        )


def _elements(client, keys, token: str):
    return client.post("/v1/elements", json={"token": token}, headers=keys.public_headers)


def test_elements_render_and_log_an_event(client, database, merchant, new_checkout) -> None:
    checkout = new_checkout()
    profile = checkout.profile({**DESKTOP, "locale": "de"})
    response = _elements(client, merchant, profile["token"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert "<" in body["html"]
    assert body["css"].strip()
    with database.session() as db:
        events = read_since(db=db, types=["elements_rendered"])
    assert [(e.session_id, e.decision_id) for e in events] == [(checkout.id, profile["id"])]
    assert events[0].properties["locale"] == "de"


def test_tampered_token_is_refused(client, database, merchant, new_checkout) -> None:
    token = new_checkout().profile(DESKTOP)["token"]
    header, payload, signature = token.split(".")
    forged_claims = jwt.decode(token, options={"verify_signature": False}) | {"req": []}
    forged = jwt.encode(forged_claims, "guessed-secret-that-is-long-enough-0123456")
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    for bad in (forged, f"{header}.{payload}.{flipped}", "not-a-token"):
        response = _elements(client, merchant, bad)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "profile_token_invalid"
        assert response.json()["error"]["param"] == "token"
    with database.session() as db:
        assert read_since(db=db, types=["elements_rendered"]) == []


def test_token_of_another_merchant_is_refused(client, make_merchant, new_checkout) -> None:
    token = new_checkout().profile(DESKTOP)["token"]
    other = make_merchant("Other Shop")
    response = _elements(client, other, token)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == "token"


def test_payment_request_means_google_pay_except_on_apple_platforms(new_checkout) -> None:
    android = {"device": {"type": "mobile", "os": "android", "payment_request": True}}
    ios = {"device": {"type": "mobile", "os": "ios", "payment_request": True, "apple_pay": True}}
    assert "google_pay" in methods(new_checkout().profile(android))
    ios_methods = methods(new_checkout().profile(ios))
    assert "google_pay" not in ios_methods and ios_methods[0] == "apple_pay"


def test_no_eligible_method_is_a_clear_4xx(make_merchant, new_checkout) -> None:
    shop = make_merchant(config={"enabled_methods": ["ideal"], "ordering_policy": "thompson"})
    checkout = new_checkout(owner=shop, currency="USD")
    response = checkout.client.post(
        "/v1/payment_profile",
        json={"client_secret": checkout.session["client_secret"], "context": DESKTOP},
        headers=shop.public_headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_payment_method_available"


def test_card_numbers_in_browser_context_are_not_logged(new_checkout, database) -> None:
    profile = new_checkout().profile(
        {"device": {"os": "4242424242424242"}, "timezone": "4000 0000 0000 0002"}
    )
    with database.session() as db:
        decision = db.scalars(select(Decision).where(Decision.id == profile["id"])).one()
    assert "4242424242424242" not in str(decision.context)
    assert "4000 0000 0000 0002" not in str(decision.context)
