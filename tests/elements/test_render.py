"""Behaviour of the element generator through its public API only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from typing import Any

import pytest

from checkoutlab.elements import RenderedElements, render_elements
from checkoutlab.elements import render as render_module
from checkoutlab.elements.catalog import method_config
from checkoutlab.elements.i18n import LOCALES, MESSAGES, format_money, translate
from checkoutlab.merchants.schemas import Layout, MethodType, Theme
from checkoutlab.profile.schema import (
    UI,
    Amount,
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

XSS = "<img src=x onerror=alert(1)>"
ALL_METHODS = list(MethodType)
CONTROLS = {"input", "select", "textarea"}


def make_profile(
    *,
    methods: list[MethodType] | None = None,
    configs: dict[MethodType, dict[str, Any]] | None = None,
    layout: Layout = Layout.tabs,
    locale: str = "en",
    value: int = 1234,
    currency: str = "EUR",
    presentment: PresentmentFX | None = None,
    verification: Verification | None = None,
    loyalty: Loyalty | None = None,
    inventory: Inventory | None = None,
    theme: Theme | None = None,
) -> PaymentProfile:
    """A complete profile, as the profile builder would serve it, with per-test overrides."""
    chosen = ALL_METHODS if methods is None else methods
    overrides = configs or {}
    return PaymentProfile(
        id="pp_test_1",
        token="tok_test",
        session_id="cs_test_1",
        amount=Amount(value=value, currency=currency, display="", presentment=presentment),
        risk=Risk(score=0.1, risk_score=10, level="normal", model="fraud", model_version="1"),
        methods=[
            PaymentMethod(
                type=m,
                config=overrides.get(m, method_config(m, currency=currency, country="NL")),
            )
            for m in chosen
        ],
        verification=verification or Verification(),
        loyalty=loyalty or Loyalty(),
        inventory=inventory or Inventory(),
        ordering=Ordering(policy="merchant_order", policy_version="1", propensity=1.0),
        ui=UI(layout=layout, locale=locale, theme=theme or Theme()),
        expires_at=datetime.now(UTC) + timedelta(minutes=15),
    )


class Doc(HTMLParser):
    """Flat list of start tags plus label texts, enough to check structure without a DOM."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.labels: dict[str, str] = {}
        self._label_for: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "label":
            self._label_for = attributes.get("for") or ""
            self.labels[self._label_for] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_for = None

    def handle_data(self, data: str) -> None:
        if self._label_for is not None:
            self.labels[self._label_for] += data

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str | None]]:
        wanted = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [
            a
            for t, a in self.tags
            if (tag is None or t == tag) and all(a.get(k) == v for k, v in wanted.items())
        ]

    def controls(self) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t in CONTROLS and a.get("type") != "hidden"]

    def label_for_name(self, name: str) -> str:
        (control,) = [a for a in self.controls() if a.get("name") == name and a.get("id")]
        return self.labels[str(control["id"])].strip()


def submit_text(html: str) -> str:
    match = re.search(r'<button[^>]*data-action="submit"[^>]*>(.*?)</button>', html, re.S)
    assert match, "no submit button"
    return unescape(match.group(1)).strip()


def everything_on(**kwargs: Any) -> PaymentProfile:
    return make_profile(
        verification=Verification(cvv=True, avs=True, three_ds=True, biometric=True),
        loyalty=Loyalty(
            enabled=True,
            program="Club",
            balance_points=1200,
            balance_display="€12.00",
            can_redeem=True,
        ),
        presentment=PresentmentFX(
            currency="JPY",
            value=1834,
            display="¥1,834",
            rate=148.6,
            rate_date="2024-05-01",
            source="ecb",
        ),
        **kwargs,
    )


# --- layouts and ordering -------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(Layout))
def test_root_carries_layout_profile_and_locale(layout: Layout) -> None:
    out = render_elements(make_profile(layout=layout, locale="de"))
    assert isinstance(out, RenderedElements)
    assert out.html.startswith(
        f'<div class="cl-root" data-layout="{layout.value}" data-profile-id="pp_test_1" lang="de">'
    )


def test_tabs_layout_has_tablist_with_first_selected() -> None:
    doc = Doc(render_elements(make_profile(layout=Layout.tabs)).html)
    tabs = doc.find("button", role="tab")
    panels = doc.find(role="tabpanel")
    assert len(doc.find(role="tablist")) == 1
    assert len(tabs) == len(panels) == len(ALL_METHODS)
    assert [t["aria-selected"] for t in tabs] == ["true"] + ["false"] * (len(tabs) - 1)
    assert [t["aria-controls"] for t in tabs] == [p["id"] for p in panels]
    assert "hidden" not in panels[0]
    assert all("hidden" in p for p in panels[1:])


def test_accordion_layout_has_expandable_headers() -> None:
    doc = Doc(render_elements(make_profile(layout=Layout.accordion)).html)
    headers = [a for _, a in doc.tags if "aria-expanded" in a]
    assert [h["aria-expanded"] for h in headers] == ["true"] + ["false"] * (len(ALL_METHODS) - 1)
    panel_ids = {a["id"] for a in doc.find(class_="cl-panel")}
    assert {h["aria-controls"] for h in headers} == panel_ids
    assert not doc.find(role="tab")


def test_list_layout_has_one_radio_and_panel_per_method() -> None:
    doc = Doc(render_elements(make_profile(layout=Layout.list)).html)
    radios = doc.find("input", type="radio", name="payment_method")
    assert [r["value"] for r in radios] == [m.value for m in ALL_METHODS]
    assert "checked" in radios[0] and not any("checked" in r for r in radios[1:])
    assert len(doc.find(class_="cl-panel")) == len(ALL_METHODS)


@pytest.mark.parametrize("layout", list(Layout))
def test_methods_appear_in_profile_order(layout: Layout) -> None:
    order = [
        MethodType.klarna,
        MethodType.ideal,
        MethodType.card,
        MethodType.sepa_debit,
        MethodType.google_pay,
    ]
    html = render_elements(make_profile(methods=order, layout=layout)).html
    positions = [html.index(f'data-method="{m.value}"') for m in order]
    assert positions == sorted(positions)
    assert 'data-method="apple_pay"' not in html
    assert 'data-method="bank_transfer"' not in html


def test_duplicate_method_rendered_once_at_first_position() -> None:
    order = [MethodType.ideal, MethodType.card, MethodType.ideal]
    doc = Doc(render_elements(make_profile(methods=order)).html)
    assert [t["data-method"] for t in doc.find(role="tab")] == ["ideal", "card"]


# --- labels, ids, errors ----------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(Layout))
def test_every_control_has_a_label_unique_id_and_live_error(layout: Layout) -> None:
    doc = Doc(render_elements(everything_on(layout=layout)).html)
    ids = [a["id"] for _, a in doc.tags if a.get("id")]
    assert len(ids) == len(set(ids))
    assert all(str(i).startswith("cl-") for i in ids)
    assert set(doc.labels) <= set(ids)
    errors = {a["id"]: a for a in doc.find(data_role="error")}
    assert errors and all(e["aria-live"] == "polite" for e in errors.values())
    for control in doc.controls():
        assert control["id"] in doc.labels, control
        assert doc.labels[str(control["id"])].strip(), control
        if control.get("type") != "radio":
            assert control["aria-describedby"] in errors, control


def test_card_fields_and_english_labels() -> None:
    doc = Doc(render_elements(make_profile()).html)
    assert doc.label_for_name("card_number") == "Card number"
    assert doc.label_for_name("exp") == "Expiry"
    assert doc.label_for_name("cvc") == "CVC"
    assert doc.label_for_name("cardholder_name") == "Name on card"
    (exp,) = doc.find("input", name="exp")
    assert exp["placeholder"] == "MM / YY"


def test_labels_are_translated() -> None:
    doc = Doc(render_elements(make_profile(locale="de")).html)
    assert doc.label_for_name("card_number") == "Kartennummer"
    assert doc.label_for_name("iban") == "IBAN"


def test_method_specific_fields() -> None:
    doc = Doc(render_elements(make_profile()).html)
    wallets = doc.find("button", data_action="payment-request")
    assert [(w["type"], w["data-network"]) for w in wallets] == [
        ("button", "apple_pay"),
        ("button", "google_pay"),
    ]
    (bank_select,) = doc.find("select", name="ideal_bank")
    assert doc.labels[str(bank_select["id"])] == "Bank"
    assert {"abn_amro", "ing", "rabobank"} <= {o["value"] for o in doc.find("option")}
    assert doc.find("input", name="iban") and doc.find("input", name="account_holder")
    html = render_elements(make_profile()).html
    assert "NL00 SAND 0000 0000 00" in html
    assert "you authorise Checkout Lab Sandbox" in html
    assert "redirected to Klarna" in html


def test_empty_config_falls_back_to_catalogue_defaults() -> None:
    profile = make_profile(
        methods=[MethodType.ideal, MethodType.bank_transfer],
        configs={MethodType.ideal: {}, MethodType.bank_transfer: {}},
    )
    doc = Doc(render_elements(profile).html)
    assert len(doc.find("option")) > 5
    assert "NL00 SAND 0000 0000 00" in render_elements(profile).html


# --- amounts and locales ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "Pay €12.34"),
        ("de", "Bezahlen 12,34\xa0€"),
        ("fr", "Payer 12,34\xa0€"),
        ("es", "Pagar 12,34\xa0€"),
        ("ja", "支払う €12.34"),
    ],
)
def test_submit_button_is_localized(locale: str, expected: str) -> None:
    html = render_elements(make_profile(locale=locale)).html
    assert submit_text(html) == expected
    assert len(Doc(html).find("button", type="submit", data_action="submit")) == 1


def test_english_submit_name_starts_with_pay_for_any_layout() -> None:
    for layout in Layout:
        assert submit_text(render_elements(make_profile(layout=layout)).html).startswith("Pay ")


def test_jpy_has_no_decimals() -> None:
    assert format_money(1834, "JPY", "en") == "¥1,834"
    html = render_elements(make_profile(value=1834, currency="JPY")).html
    assert submit_text(html) == "Pay ¥1,834"


def test_eur_in_german_uses_decimal_comma() -> None:
    assert format_money(123456, "EUR", "de") == "1.234,56\xa0€"
    assert format_money(5, "EUR", "en") == "€0.05"


def test_presentment_shown_as_approximation_only_when_set() -> None:
    html = render_elements(everything_on()).html
    assert "≈ ¥1,834" in html
    doc = Doc(html)
    (submit,) = doc.find("button", data_action="submit")
    assert submit["aria-describedby"] == "cl-presentment"
    assert "≈" not in render_elements(make_profile()).html


# --- conditional sections ---------------------------------------------------------------------


def test_no_verification_sections_by_default() -> None:
    html = render_elements(make_profile()).html
    for marker in (
        "cvv_recheck",
        "billing_line1",
        'data-step="biometric"',
        'data-action="biometric',
    ):
        assert marker not in html


def test_cvv_recheck_only_when_required() -> None:
    doc = Doc(render_elements(make_profile(verification=Verification(cvv=True))).html)
    assert doc.label_for_name("cvv_recheck") == "Re-enter CVC"
    assert not doc.find(name="billing_line1")


def test_avs_billing_address_only_when_required() -> None:
    doc = Doc(render_elements(make_profile(verification=Verification(avs=True))).html)
    assert doc.label_for_name("billing_line1") == "Address line 1"
    assert doc.label_for_name("billing_postal_code") == "Postal code"
    assert doc.label_for_name("billing_country") == "Country"
    countries = {o["value"] for o in doc.find("option")}
    assert {"DE", "NL", "JP", "US"} <= countries
    assert not countries & {"EU", "UN", "ZZ", "001"}
    assert not doc.find(name="cvv_recheck")


def test_biometric_step_only_when_required() -> None:
    doc = Doc(render_elements(make_profile(verification=Verification(biometric=True))).html)
    assert doc.find("section", data_step="biometric")
    (button,) = doc.find("button", data_action="biometric")
    assert button["type"] == "button"


def test_three_ds_step_always_present_and_hidden() -> None:
    for verification in (Verification(), Verification(three_ds=True)):
        doc = Doc(render_elements(make_profile(verification=verification)).html)
        (step,) = doc.find("section", data_step="three_ds")
        assert "hidden" in step
        assert doc.find(data_role="three-ds-challenge")
        assert doc.find("button", data_action="three-ds-complete")
        assert doc.find("button", data_action="three-ds-fail")


def test_loyalty_only_when_enabled() -> None:
    assert 'data-role="loyalty"' not in render_elements(make_profile()).html
    shown = Loyalty(enabled=True, program="Club", balance_points=1200, balance_display="€12.00")
    doc = Doc(render_elements(make_profile(loyalty=shown)).html)
    assert doc.find("section", data_role="loyalty")
    assert "Balance: 1,200 points (€12.00)" in render_elements(make_profile(loyalty=shown)).html
    assert not doc.find(name="redeem_points")


def test_redeem_checkbox_when_points_can_be_redeemed() -> None:
    loyalty = Loyalty(enabled=True, balance_points=500, balance_value=500, can_redeem=True)
    doc = Doc(render_elements(make_profile(loyalty=loyalty, locale="de")).html)
    (box,) = doc.find("input", name="redeem_points")
    assert box["type"] == "checkbox"
    assert doc.labels[str(box["id"])] == "Meine Punkte einlösen"
    html = render_elements(make_profile(loyalty=loyalty, locale="de")).html
    assert "Guthaben: 500 Punkte (5,00\xa0€)" in html
    assert "Prämien" in html


def test_out_of_stock_renders_notice_without_payable_form() -> None:
    inventory = Inventory(
        in_stock=False,
        lines=[
            InventoryLine(sku="SKU-RED-M", requested=2, available=1),
            InventoryLine(sku="SKU-BLUE-L", requested=1, available=None),
            InventoryLine(sku="SKU-OK", requested=1, available=5),
        ],
    )
    html = render_elements(make_profile(inventory=inventory)).html
    doc = Doc(html)
    assert doc.find(data_role="out-of-stock")
    assert [li["data-sku"] for li in doc.find("li")] == ["SKU-RED-M", "SKU-BLUE-L"]
    assert 'data-action="submit"' not in html and "<form" not in html
    assert not doc.controls()


def test_no_methods_means_no_submit() -> None:
    html = render_elements(make_profile(methods=[])).html
    assert 'data-role="no-methods"' in html
    assert 'data-action="submit"' not in html


# --- CSP, escaping and CSS scoping -------------------------------------------------------------


@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("locale", LOCALES)
def test_output_is_strict_csp_safe(layout: Layout, locale: str) -> None:
    out = render_elements(everything_on(layout=layout, locale=locale))
    attrs = {name for _, a in Doc(out.html).tags for name in a}
    assert not any(name.startswith("on") for name in attrs)
    assert "style" not in attrs
    assert "<script" not in out.html.lower()
    assert not re.search(r"\son\w+\s*=", out.html)
    assert "style=" not in out.html
    for text in (out.html, out.css):
        assert "http://" not in text and "https://" not in text
    assert "@import" not in out.css and "url(" not in out.css


def test_untrusted_config_and_profile_strings_are_escaped() -> None:
    profile = make_profile(
        configs={
            MethodType.ideal: {"banks": [{"id": '"><b>x', "name": XSS}, "not-a-bank"]},
            MethodType.bank_transfer: {"instructions": XSS, "iban": XSS, "reference_prefix": XSS},
            MethodType.sepa_debit: {"mandate_text_key": "sepa.mandate", "creditor_name": XSS},
            MethodType.card: {"brands": [XSS]},
            MethodType.apple_pay: {"country": XSS},
        },
        loyalty=Loyalty(enabled=True, program=XSS, balance_display=XSS),
    )
    html = render_elements(profile).html
    doc = Doc(html)
    assert "<img" not in html and "<b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not doc.find("img") and not doc.find("b")
    assert not any(name.startswith("on") for _, a in doc.tags for name in a)
    assert {o["value"] for o in doc.find("option")} == {"", '"><b>x'}


def test_out_of_stock_skus_are_escaped() -> None:
    inventory = Inventory(in_stock=False, lines=[InventoryLine(sku=XSS, requested=1, available=0)])
    html = render_elements(make_profile(inventory=inventory)).html
    assert "<img" not in html and "&lt;img" in html


def _css_rules(css: str) -> list[tuple[str, str]]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    assert "@" not in css, "no at-rules expected"
    return [(sel.strip(), body) for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css)]


def test_css_selectors_are_scoped_under_root() -> None:
    rules = _css_rules(render_elements(make_profile()).css)
    assert len(rules) > 10
    for selectors, _ in rules:
        for selector in selectors.split(","):
            assert selector.strip().startswith(".cl-root"), selector


def test_theme_is_emitted_only_as_custom_properties() -> None:
    theme = Theme(
        primary_color="#0a7c2f",
        background_color="#fafafa",
        text_color="#111111",
        border_radius_px=12,
        font_family='"Inter", sans-serif',
    )
    css = render_elements(make_profile(theme=theme)).css
    root_rules = [body for sel, body in _css_rules(css) if sel == ".cl-root"]
    assert len(root_rules) == 1
    declarations = dict(
        (k.strip(), v.strip())
        for k, v in (d.split(":", 1) for d in root_rules[0].split(";") if ":" in d)
    )
    assert declarations["--cl-primary"] == "#0a7c2f"
    assert declarations["--cl-on-primary"] == "#ffffff"
    assert declarations["--cl-radius"] == "12px"
    assert declarations["--cl-font"] == '"Inter", sans-serif'
    for value in ("#0a7c2f", "#fafafa", "#111111", "Inter"):
        assert css.count(value) == 1, value


def test_tampered_theme_value_is_refused() -> None:
    bad = Theme.model_construct(
        primary_color="red;}body{color:red",
        background_color="#ffffff",
        text_color="#000000",
        border_radius_px=6,
        font_family="system-ui",
    )
    with pytest.raises(ValueError, match="unsafe CSS value"):
        render_elements(make_profile(theme=bad))


# --- catalogue and translations ---------------------------------------------------------------


def test_method_config_shapes() -> None:
    assert method_config(MethodType.card, currency="eur", country=None) == {
        "brands": ["visa", "mastercard", "amex", "discover"]
    }
    assert method_config(MethodType.klarna, currency="EUR", country="DE") == {"mode": "redirect"}
    apple = method_config(MethodType.apple_pay, currency="eur", country="nl")
    assert apple == {
        "payment_request": True,
        "network": "apple_pay",
        "currency": "EUR",
        "country": "NL",
    }
    google = method_config(MethodType.google_pay, currency="EUR", country=None)
    assert google["network"] == "google_pay" and google["payment_request"] is True
    banks = method_config(MethodType.ideal, currency="EUR", country="NL")["banks"]
    assert banks and all(set(b) == {"id", "name"} for b in banks)
    transfer = method_config(MethodType.bank_transfer, currency="EUR", country="NL")
    assert {"reference_prefix", "instructions"} <= set(transfer)
    assert "SAND" in transfer["iban"]
    sepa = method_config(MethodType.sepa_debit, currency="EUR", country="DE")
    assert sepa["mandate_text_key"] in MESSAGES


def test_method_config_returns_fresh_dicts() -> None:
    first = method_config(MethodType.ideal, currency="EUR", country="NL")
    first["banks"].clear()
    assert method_config(MethodType.ideal, currency="EUR", country="NL")["banks"]


def test_catalogue_is_complete_for_every_locale() -> None:
    def fields(text: str) -> set[str]:
        return set(re.findall(r"\{(\w+)\}", text))

    for key, entries in MESSAGES.items():
        assert set(entries) == set(LOCALES), key
        for locale, text in entries.items():
            assert fields(text) == fields(entries["en"]), (key, locale)


def test_translate_falls_back_to_english_and_rejects_unknown_ids() -> None:
    assert translate("card.number", "ja") == "カード番号"
    assert translate("card.number", "pt") == "Card number"
    assert translate("submit.pay", "fr", amount="5 €") == "Payer 5 €"
    with pytest.raises(KeyError):
        translate("no.such.label", "en")


# --- experiment copy and loyalty placement ----------------------------------------------------


def with_ui(profile: PaymentProfile, **ui: Any) -> PaymentProfile:
    return profile.model_copy(update={"ui": UI.model_validate(profile.ui.model_dump() | ui)})


def _positions(html: str, *markers: str) -> list[int]:
    found = [html.find(marker) for marker in markers]
    assert all(at >= 0 for at in found), dict(zip(markers, found, strict=True))
    return found


def test_copy_overrides_fill_their_slots_escaped() -> None:
    profile = with_ui(
        make_profile(),
        copy_overrides={
            "heading": "Almost yours",
            "pay_button": "Pay {amount} securely",
            "footer_note": XSS,
        },
    )
    html = render_elements(profile).html
    doc = Doc(html)
    assert doc.find("h2", data_role="heading")
    assert ">Almost yours</h2>" in html
    assert submit_text(html) == "Pay €12.34 securely"
    assert doc.find("p", data_role="footer-note")
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_without_copy_overrides_the_defaults_stay() -> None:
    html = render_elements(make_profile()).html
    assert submit_text(html) == "Pay €12.34"
    assert 'data-role="heading"' not in html and 'data-role="footer-note"' not in html


def test_copy_is_limited_to_known_slots() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        with_ui(make_profile(), copy_overrides={"legend": "x"})
    with pytest.raises(ValidationError):
        with_ui(make_profile(), copy_overrides={"pay_button": "x" * 61})


def test_pay_button_copy_is_not_a_format_string() -> None:
    profile = with_ui(make_profile(), copy_overrides={"pay_button": "{0} {amount!r} {__class__}"})
    assert submit_text(render_elements(profile).html) == "{0} {amount!r} {__class__}"


@pytest.mark.parametrize(
    ("placement", "before", "after"),
    [
        ("above_methods", 'data-role="loyalty"', 'class="cl-methods'),
        ("below_methods", 'class="cl-methods', 'data-role="loyalty"'),
        ("summary", 'class="cl-summary"', 'data-role="loyalty"'),
    ],
)
def test_loyalty_placement_moves_the_section(placement: str, before: str, after: str) -> None:
    html = render_elements(with_ui(everything_on(), loyalty_placement=placement)).html
    first, second = _positions(html, before, after)
    assert first < second
    assert html.count('data-role="loyalty"') == 1
    assert f'data-placement="{placement}"' in html
    summary, submit, loyalty = _positions(
        html, 'class="cl-summary"', 'data-action="submit"', 'data-role="loyalty"'
    )
    assert (summary < loyalty < submit) == (placement == "summary")


def test_hidden_loyalty_is_left_out() -> None:
    html = render_elements(with_ui(everything_on(), loyalty_placement="hidden")).html
    assert 'data-role="loyalty"' not in html and 'name="redeem_points"' not in html
    assert 'data-action="submit"' in html


def test_loyalty_defaults_below_the_methods() -> None:
    assert make_profile().ui.loyalty_placement == "below_methods"


# -- cached panels and pre-rendered option lists ------------------------------------------------


def _fresh(monkeypatch: pytest.MonkeyPatch, profile: Any) -> str:
    """Render with every panel rendered in place (no template is cacheable)."""
    with monkeypatch.context() as m:
        m.setattr(render_module, "_PANEL_INPUTS", frozenset())
        render_module._panel_inputs.cache_clear()
        try:
            return render_elements(profile).html
        finally:
            render_module._panel_inputs.cache_clear()


@pytest.mark.parametrize("layout", list(Layout))
@pytest.mark.parametrize("locale", ["en", "de", "ja"])
def test_cached_panels_render_like_fresh_ones(
    monkeypatch: pytest.MonkeyPatch, layout: Layout, locale: str
) -> None:
    configs = {
        MethodType.bank_transfer: {"instructions": XSS, "reference_prefix": XSS},
        MethodType.ideal: {"banks": [{"id": XSS, "name": XSS}, {"id": "ing"}, "junk"]},
    }
    profiles = [
        make_profile(layout=layout, locale=locale, value=value, currency=currency,
                     configs=configs if value % 2 else None,
                     verification=Verification(avs=True, cvv=True))
        for value, currency in [(1234, "EUR"), (1235, "EUR"), (99, "JPY"), (1234, "USD")]
    ]  # fmt: skip
    render_module._PANEL_CACHE.clear()
    first = [render_elements(p).html for p in profiles]
    second = [render_elements(p).html for p in profiles]  # panels from the cache
    assert render_module._PANEL_CACHE
    assert first == second == [_fresh(monkeypatch, p) for p in profiles]


def test_panel_values_of_different_types_are_not_confused() -> None:
    a = make_profile(methods=[MethodType.klarna], configs={MethodType.klarna: {"mode": 1}})
    b = make_profile(methods=[MethodType.klarna], configs={MethodType.klarna: {"mode": True}})
    c = make_profile(methods=[MethodType.klarna], configs={MethodType.klarna: {"mode": "1"}})
    htmls = [render_elements(p).html for p in (a, b, c, a)]
    assert 'data-redirect="1"' in htmls[0]
    assert 'data-redirect="True"' in htmls[1]
    assert htmls[0] == htmls[2] == htmls[3]  # same text, distinct cache entries


def test_only_panels_that_read_cacheable_inputs_are_cached() -> None:
    inputs = render_module._panel_inputs
    assert inputs("method_card.html.j2") == {"method", "t"}
    assert inputs("method_wallet.html.j2") == {"method", "t", "currency"}
    # the bank transfer panel shows the session's reference and amount: rendered every time
    assert inputs("method_bank_transfer.html.j2") is None
