"""Contextual data acquisition: what the browser reports, plus what the request headers say.

Everything here is untrusted: it may shape the form (order, layout, locale) and may only
*raise* risk, never lower it below what the server-side signals say.
"""

from __future__ import annotations

from typing import Any, Literal

from babel import Locale, UnknownLocaleError, negotiate_locale
from pydantic import BaseModel, ConfigDict, Field
from user_agents import parse as parse_user_agent

SUPPORTED_LOCALES = ("en", "de", "fr", "es", "ja")


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["mobile", "tablet", "desktop"] | None = None
    os: str | None = Field(default=None, max_length=40)
    biometric: bool = False
    apple_pay: bool = False
    google_pay: bool = False
    payment_request: bool = False


class NetworkIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    proxy: bool = False


class ContextIn(BaseModel):
    """The widget's report; unknown keys are dropped rather than refused (older widgets)."""

    model_config = ConfigDict(extra="ignore")

    device: DeviceIn = Field(default_factory=DeviceIn)
    network: NetworkIn = Field(default_factory=NetworkIn)
    locale: str | None = Field(default=None, max_length=35)
    country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    timezone: str | None = Field(default=None, max_length=64)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    user_agent: str | None = Field(default=None, max_length=1024)


def _device_type(user_agent: str, ch_mobile: str | None, reported: str | None) -> str:
    if reported:
        return reported
    if ch_mobile == "?1":
        return "mobile"
    ua = parse_user_agent(user_agent or "")
    if ua.is_tablet:
        return "tablet"
    if ua.is_mobile:
        return "mobile"
    return "desktop"


def _os(user_agent: str, ch_platform: str | None, reported: str | None) -> str:
    if reported:
        return reported.lower()
    if ch_platform:
        return ch_platform.strip('"').lower()
    family = parse_user_agent(user_agent or "").os.family.lower()
    return {"mac os x": "macos", "ios": "ios", "android": "android"}.get(family, family or "other")


def _locale_and_region(requested: list[str], default: str) -> tuple[str, str | None]:
    locale = negotiate_locale(requested, SUPPORTED_LOCALES, sep="-") or default
    region = None
    for tag in requested:
        try:
            territory = Locale.parse(tag, sep="-").territory
        except (ValueError, UnknownLocaleError):
            continue
        # UN M.49 regions such as "419" (es-419) are not countries: keep looking.
        if territory and len(territory) == 2 and territory.isalpha():
            region = territory
            break
    return locale.split("-")[0], region


def _accept_language(header: str) -> list[str]:
    """Language tags by descending ``q`` (RFC 9110); ties keep header order, ``q=0`` is dropped."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def acquire(context: ContextIn, headers: dict[str, str], *, default_locale: str) -> dict[str, Any]:
    """Merge the widget's report with request headers into the context rules and models see."""
    user_agent = context.user_agent or headers.get("user-agent", "")
    requested = ([context.locale] if context.locale else []) + _accept_language(
        headers.get("accept-language", "")
    )
    locale, region = _locale_and_region(requested, default_locale)
    os_name = _os(user_agent, headers.get("sec-ch-ua-platform"), context.device.os)
    return {
        "device": {
            "type": _device_type(user_agent, headers.get("sec-ch-ua-mobile"), context.device.type),
            "os": os_name,
            "biometric": context.device.biometric,
            "apple_pay": context.device.apple_pay,
            # Payment Request on Apple platforms means Apple Pay, elsewhere usually Google Pay.
            "google_pay": context.device.google_pay
            or (context.device.payment_request and os_name not in ("ios", "macos")),
            "payment_request": context.device.payment_request,
        },
        "network": {"proxy": context.network.proxy},
        "location": {
            "country": (context.country or region or "").upper() or None,
            "locale": locale,
            "timezone": context.timezone,
        },
        "currency": context.currency.upper() if context.currency else None,
    }
