"""Per-method element configuration, stored in ``PaymentMethod.config`` by the profile builder.

The config is locale-free on purpose: text is referenced by catalogue message id and translated
at render time, so one profile renders correctly whatever locale the widget asks for. Bank
details are sandbox placeholders; no real account number ever ships in a profile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from checkoutlab.merchants.schemas import MethodType

CARD_BRANDS: Final[tuple[str, ...]] = ("visa", "mastercard", "amex", "discover")

IDEAL_BANKS: Final[tuple[tuple[str, str], ...]] = (
    ("abn_amro", "ABN AMRO"),
    ("asn_bank", "ASN Bank"),
    ("bunq", "bunq"),
    ("ing", "ING"),
    ("knab", "Knab"),
    ("rabobank", "Rabobank"),
    ("regiobank", "RegioBank"),
    ("revolut", "Revolut"),
    ("sns_bank", "SNS Bank"),
    ("triodos_bank", "Triodos Bank"),
    ("van_lanschot", "Van Lanschot"),
)

SANDBOX_ACCOUNT_HOLDER: Final[str] = "Checkout Lab Sandbox"
SANDBOX_IBAN: Final[str] = "NL00 SAND 0000 0000 00"
SANDBOX_BIC: Final[str] = "SANDNL00"

_Builder = Callable[[str, str | None], dict[str, Any]]


def _card(currency: str, country: str | None) -> dict[str, Any]:
    return {"brands": list(CARD_BRANDS)}


def _wallet(network: str) -> _Builder:
    """The Payment Request API needs the merchant country and currency up front."""

    def build(currency: str, country: str | None) -> dict[str, Any]:
        return {
            "payment_request": True,
            "network": network,
            "currency": currency,
            "country": country,
        }

    return build


def _bank_transfer(currency: str, country: str | None) -> dict[str, Any]:
    return {
        "reference_prefix": "CL-",
        "instructions": "bank_transfer.instructions",
        "currency": currency,
        "account_holder": SANDBOX_ACCOUNT_HOLDER,
        "iban": SANDBOX_IBAN,
        "bic": SANDBOX_BIC,
    }


def _sepa_debit(currency: str, country: str | None) -> dict[str, Any]:
    return {"mandate_text_key": "sepa.mandate", "creditor_name": SANDBOX_ACCOUNT_HOLDER}


def _ideal(currency: str, country: str | None) -> dict[str, Any]:
    return {"banks": [{"id": bank_id, "name": name} for bank_id, name in IDEAL_BANKS]}


def _klarna(currency: str, country: str | None) -> dict[str, Any]:
    return {"mode": "redirect"}


_BUILDERS: Final[dict[MethodType, _Builder]] = {
    MethodType.card: _card,
    MethodType.apple_pay: _wallet("apple_pay"),
    MethodType.google_pay: _wallet("google_pay"),
    MethodType.bank_transfer: _bank_transfer,
    MethodType.sepa_debit: _sepa_debit,
    MethodType.ideal: _ideal,
    MethodType.klarna: _klarna,
}


def method_config(method: MethodType, *, currency: str, country: str | None) -> dict[str, Any]:
    """Build a fresh config dict for *method*; callers may mutate it without touching defaults.

    Codes are upper-cased so the widget can pass them straight to the Payment Request API.
    """
    return _BUILDERS[MethodType(method)](currency.upper(), country.upper() if country else None)
