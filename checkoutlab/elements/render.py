"""Render a PaymentProfile into the checkout form's HTML and CSS.

The profile has already made every decision (method order, verification steps, layout, theme);
this module only turns it into markup. Python prepares plain view data (translated labels,
Babel-formatted amounts, normalised configs) so templates stay free of logic, and the jinja2
environment is built once at import because template compilation dominates render time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from babel import Locale
from jinja2 import Environment, PackageLoader, StrictUndefined, meta, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict

from checkoutlab.elements.catalog import method_config
from checkoutlab.elements.i18n import format_money, format_number, has_message, translate
from checkoutlab.merchants.schemas import MethodType
from checkoutlab.profile.schema import PaymentMethod, PaymentProfile

# Theme values are validated by the Theme model; this second, stricter gate means a profile
# built with ``model_construct`` still cannot break out of a custom-property declaration.
_CSS_VALUE: Final = re.compile(r"^[#A-Za-z0-9 ,.\-\"']{1,120}$")

# Babel territories that are regions, groupings or reserved codes rather than countries.
_NOT_COUNTRIES: Final = frozenset(
    {"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "ZZ"}
)

_WALLETS: Final = frozenset({MethodType.apple_pay, MethodType.google_pay})


class RenderedElements(BaseModel):
    """What ``POST /v1/elements`` returns; the widget mounts ``html`` and adopts ``css``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    html: str
    css: str


@dataclass(frozen=True, slots=True)
class MethodView:
    """One payment method as the templates see it."""

    type: str
    label: str
    template: str
    config: dict[str, Any]
    options: tuple[tuple[str, str], ...] = ()


def _css_value(value: object) -> str:
    """Refuse anything that could end a declaration or rule, or open an unbalanced string."""
    text = str(value)
    if not _CSS_VALUE.fullmatch(text) or text.count('"') % 2 or text.count("'") % 2:
        raise ValueError(f"unsafe CSS value: {text!r}")
    return text


def _build_environment() -> Environment:
    """CSS is excluded from HTML escaping (quotes in font names must survive) and guarded by
    the ``css_value`` filter instead; every other template, and strings, autoescape."""
    env = Environment(
        loader=PackageLoader("checkoutlab.elements", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "xml", "j2"),
            disabled_extensions=("css",),
            default_for_string=True,
            default=True,
        ),
        undefined=StrictUndefined,
        # Templates ship inside the package and never change while a worker runs: without
        # this, every include and import stats its file to check whether it changed.
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["css_value"] = _css_value
    return env


_ENV: Final[Environment] = _build_environment()


def _ideal_options(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Config is untrusted data: drop malformed bank entries instead of failing the whole form."""
    banks = config.get("banks")
    if not isinstance(banks, list):
        return ()
    return tuple(
        (str(bank["id"]), str(bank.get("name", bank["id"])))
        for bank in banks
        if isinstance(bank, dict) and "id" in bank
    )


def _method_view(method: PaymentMethod, *, locale: str, currency: str) -> MethodView:
    """Merge the catalogue defaults under the profile's config so an empty config still renders."""
    method_type = method.type
    config = {**method_config(method_type, currency=currency, country=None), **method.config}
    template = "method_wallet" if method_type in _WALLETS else f"method_{method_type.value}"
    return MethodView(
        type=method_type.value,
        label=translate(f"method.{method_type.value}", locale),
        template=f"{template}.html.j2",
        config=config,
        options=_ideal_options(config) if method_type is MethodType.ideal else (),
    )


def _method_views(profile: PaymentProfile) -> list[MethodView]:
    """Element ids derive from the method type, so a repeated type would collide; keep the
    first occurrence, which is the position the ordering policy chose."""
    seen: set[MethodType] = set()
    views = []
    for method in profile.methods:
        if method.type in seen:
            continue
        seen.add(method.type)
        views.append(
            _method_view(method, locale=profile.ui.locale, currency=profile.amount.currency)
        )
    return views


def _loyalty_view(profile: PaymentProfile) -> dict[str, Any] | None:
    loyalty = profile.loyalty
    if not loyalty.enabled:
        return None
    locale = profile.ui.locale
    value = loyalty.balance_display or format_money(
        loyalty.balance_value, profile.amount.currency, locale
    )
    balance = translate(
        "loyalty.balance", locale, points=format_number(loyalty.balance_points, locale), value=value
    )
    return {
        "program": loyalty.program or translate("loyalty.default_program", locale),
        "balance": balance,
        "can_redeem": loyalty.can_redeem,
    }


def _out_of_stock_lines(profile: PaymentProfile) -> list[dict[str, str]]:
    """List the short lines; if the feed flagged the cart without saying which, list them all."""
    locale = profile.ui.locale
    lines = profile.inventory.lines
    short = [ln for ln in lines if ln.available is None or ln.available < ln.requested]
    views = []
    for line in short or lines:
        if line.available is None:
            text = translate(
                "out_of_stock.line_unknown", locale, sku=line.sku, requested=line.requested
            )
        else:
            text = translate(
                "out_of_stock.line",
                locale,
                sku=line.sku,
                requested=line.requested,
                available=line.available,
            )
        views.append({"sku": line.sku, "text": text})
    return views


@lru_cache(maxsize=8)
def _countries(locale: str) -> tuple[tuple[str, str], ...]:
    """ISO country codes with names in the shopper's language, for the AVS country select."""
    territories = Locale.parse(locale).territories
    countries = (
        (code, name)
        for code, name in territories.items()
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    )
    return tuple(sorted(countries, key=lambda item: item[1].casefold()))


@lru_cache(maxsize=8)
def _country_options(locale: str) -> Markup:
    """The AVS country ``<option>`` list, rendered once per locale by the same macro the
    ``select`` control uses for short lists (some 250 escaped options per form otherwise)."""
    return _ENV.get_template("_macros.html.j2").module.option_list(_countries(locale))


def _presentment(profile: PaymentProfile) -> str | None:
    fx = profile.amount.presentment
    if fx is None:
        return None
    amount = format_money(fx.value, fx.currency, profile.ui.locale)
    return translate("presentment.approx", profile.ui.locale, amount=amount)


@lru_cache(maxsize=8)
def _translators(locale: str) -> tuple[Callable[..., str], Callable[..., str]]:
    """The templates' ``t`` (catalogue label) and ``text`` (label or verbatim text)."""

    def t(key: str, **kwargs: object) -> str:
        return translate(key, locale, **kwargs)

    def text(value: object, **kwargs: object) -> str:
        """Config text is a catalogue id when we wrote it, or merchant text shown verbatim."""
        key = str(value)
        return translate(key, locale, **kwargs) if has_message(key) else key

    return t, text


# A method panel (``method_*.html.j2``) is the same markup for every profile that gives it
# the same inputs, and most of a form's rendering time: panels are rendered once per distinct
# input and reused. The inputs are whatever names the template reads, found by parsing it
# (``jinja2.meta``), so a template edit cannot make a cached panel stale; a template that
# reads a name outside this set is rendered every time: per-checkout values such as
# ``session_id`` and ``amount_display`` (the bank transfer panel) would only fill the cache.
_PANEL_INPUTS: Final = frozenset({"method", "t", "text", "lang", "currency"})
_PANEL_VALUES: Final = ("currency",)  # inputs keyed by their value (``lang`` always is)
_PANEL_CACHE: dict[tuple[Any, ...], Markup] = {}
_PANEL_CACHE_SIZE: Final = 4096
_SCALARS: Final = (str, int, float, bool, type(None))


@lru_cache(maxsize=64)
def _panel_inputs(template: str) -> frozenset[str] | None:
    assert _ENV.loader is not None
    source, _, _ = _ENV.loader.get_source(_ENV, template)
    names = frozenset(meta.find_undeclared_variables(_ENV.parse(source)))
    return names if names <= _PANEL_INPUTS else None


class _Unhashable(Exception):
    pass


def _freeze(value: Any) -> Any:
    """A hashable image of JSON-like ``value`` that keeps types apart (1, 1.0, True, "1")."""
    if type(value) in _SCALARS:
        return (type(value), value)
    if isinstance(value, dict):
        return ("dict", tuple((_freeze(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    raise _Unhashable


def _panel(method: MethodView, context: dict[str, Any]) -> Markup:
    """The rendered panel of ``method``, as ``{% include method.template %}`` would give it."""
    inputs = _panel_inputs(method.template)
    key = None
    if inputs is not None:
        try:
            key = (
                method.template,
                context["lang"],
                method.type,
                method.label,
                _freeze(method.config),
                _freeze(method.options),
                tuple(context[name] for name in _PANEL_VALUES if name in inputs),
            )
        except _Unhashable:
            key = None
        else:
            cached = _PANEL_CACHE.get(key)
            if cached is not None:
                return cached
    # the output of an autoescaped template is markup, inserted as-is like an include's
    html = Markup(_ENV.get_template(method.template).render({**context, "method": method}))  # noqa: S704
    if key is not None:
        if len(_PANEL_CACHE) >= _PANEL_CACHE_SIZE:
            _PANEL_CACHE.clear()
        _PANEL_CACHE[key] = html
    return html


def _html_context(profile: PaymentProfile) -> dict[str, Any]:
    locale = profile.ui.locale
    amount_display = format_money(profile.amount.value, profile.amount.currency, locale)
    t, text = _translators(locale)

    in_stock = profile.inventory.in_stock
    copy = profile.ui.copy_overrides
    pay_label = t("submit.pay", amount=amount_display)
    if copy.pay_button:
        # plain replace, not str.format: experiment text must not reach format fields
        pay_label = copy.pay_button.replace("{amount}", amount_display)
    placement = profile.ui.loyalty_placement
    context: dict[str, Any] = {
        "profile": profile,
        "currency": profile.amount.currency,
        "session_id": profile.session_id,
        "lang": locale,
        "layout": profile.ui.layout.value,
        "t": t,
        "text": text,
        "methods": _method_views(profile),
        "amount_display": amount_display,
        "pay_label": pay_label,
        "heading": copy.heading,
        "footer_note": copy.footer_note,
        "loyalty_placement": placement,
        "presentment": _presentment(profile),
        "verification": profile.verification,
        "loyalty": None if placement == "hidden" else _loyalty_view(profile),
        "out_of_stock": None if in_stock else _out_of_stock_lines(profile),
        "countries": _country_options(locale) if profile.verification.avs else (),
    }
    context["panel"] = lambda method: _panel(method, context)
    return context


def _on_color(hex_color: str) -> str:
    """Pick black or white text for the primary button by WCAG relative luminance."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", hex_color):
        return "#ffffff"
    channels = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#000000" if luminance > 0.179 else "#ffffff"


def render_elements(profile: PaymentProfile) -> RenderedElements:
    """Render the form the profile calls for; the same profile always yields the same output."""
    html = _ENV.get_template("elements.html.j2").render(_html_context(profile))
    theme = profile.ui.theme
    css = _ENV.get_template("elements.css").render(
        theme=theme, on_primary=_on_color(theme.primary_color)
    )
    return RenderedElements(html=html, css=css)
