"""Card input, brand detection and the checks a card must pass before any gateway sees it.

DESIGN.md's card-data contract says no full card number is stored, logged or put in an
event. The only place a full number lives is a :class:`CardInput`, between the request that
brought it and the gateway's ``tokenize_card``; so this model is built to be impossible to
leak by accident: its ``repr``/``str``, its dumps and its validation errors only ever show
the last four digits, and the CVC not at all.

Checks follow Stripe's error vocabulary (``incorrect_number``, ``invalid_expiry_month``,
``invalid_expiry_year``, ``expired_card``, ``invalid_cvc``) so that the sandbox and the real
gateways answer the shopper in the same words. Everything here is pure: no I/O, and
"today" can be injected so expiry checks are testable.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from checkoutlab.errors import CardError

__all__ = [
    "BRANDS",
    "CVC_LENGTH",
    "PARAM_CVC",
    "PARAM_EXP_MONTH",
    "PARAM_EXP_YEAR",
    "PARAM_NUMBER",
    "CardInput",
    "detect_brand",
    "luhn_valid",
    "mask_number",
    "normalize_number",
    "redact_card_numbers",
    "validate_card",
]

PARAM_NUMBER: Final = "payment_method.card.number"
PARAM_EXP_MONTH: Final = "payment_method.card.exp_month"
PARAM_EXP_YEAR: Final = "payment_method.card.exp_year"
PARAM_CVC: Final = "payment_method.card.cvc"

BRANDS: Final = (
    "visa",
    "mastercard",
    "amex",
    "discover",
    "jcb",
    "diners",
    "unionpay",
    "unknown",
)

# Allowed PAN lengths per brand, from the networks' published ranges. "unknown" takes the
# whole ISO/IEC 7812 range that real cards use, so an unrecognised network is not refused
# on length alone.
_LENGTHS: Final[dict[str, frozenset[int]]] = {
    "visa": frozenset({13, 16, 19}),
    "mastercard": frozenset({16}),
    "amex": frozenset({15}),
    "discover": frozenset(range(16, 20)),
    "jcb": frozenset(range(16, 20)),
    "diners": frozenset(range(14, 20)),
    "unionpay": frozenset(range(16, 20)),
    "unknown": frozenset(range(12, 20)),
}

CVC_LENGTH: Final[dict[str, int]] = {brand: 4 if brand == "amex" else 3 for brand in BRANDS}
"""Digits of the security code per brand: Amex prints 4 on the front, the others 3 on the back."""

_BRAND_LABELS: Final[dict[str, str]] = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "jcb": "JCB",
    "diners": "Diners Club",
    "unionpay": "UnionPay",
    "unknown": "card",
}

# Expiry years further out than this are typos (cards are issued for at most ~10 years).
_MAX_YEARS_AHEAD: Final = 20

_SEPARATORS: Final = re.compile(r"[\s\-]+")
_REDACTED: Final = "[redacted]"


def normalize_number(number: str) -> str:
    """Drop the spaces and dashes shoppers type or paste, so every check sees bare digits.

    NFKC first turns full-width digits (what Japanese and Chinese input methods type) into
    ASCII ones, so those shoppers are not told their digits are not digits.
    """
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", number))


def mask_number(number: str) -> str:
    """Card number safe for logs and messages: last four digits only (allowed by PCI DSS).

    Anything shorter than a real card number (12 digits) is masked completely, since its
    last four would be most of it.
    """
    digits = normalize_number(number)
    if len(digits) < 12:
        return "****"
    return f"**** {digits[-4:]}"


def luhn_valid(number: str) -> bool:
    """Catch typos (one wrong digit, most swaps) before a round trip to the gateway.

    Separators are ignored; anything else that is not a digit makes the number invalid.
    """
    digits = normalize_number(number)
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def detect_brand(number: str) -> str:
    """Brand from the issuer prefix (IIN), as Stripe.js does, to pick the CVC length and logo.

    Returns one of :data:`BRANDS`. Partial numbers work (the widget calls this while the
    shopper types), as long as the prefix is long enough to decide.
    Co-branded Discover/UnionPay ranges (62...) count as UnionPay, like Stripe.
    """
    digits = normalize_number(number)
    if not digits.isascii() or not digits.isdigit():
        return "unknown"

    def prefix(length: int) -> int:
        return int(digits[:length]) if len(digits) >= length else -1

    if prefix(2) in (34, 37):
        return "amex"
    if digits.startswith("4"):
        return "visa"
    if 51 <= prefix(2) <= 55 or 2221 <= prefix(4) <= 2720:
        return "mastercard"
    if prefix(4) == 6011 or 644 <= prefix(3) <= 649 or prefix(2) == 65:
        return "discover"
    if prefix(2) in (62, 81):
        return "unionpay"
    if 3528 <= prefix(4) <= 3589:
        return "jcb"
    if 300 <= prefix(3) <= 305 or prefix(3) == 309 or prefix(2) in (36, 38, 39):
        return "diners"
    return "unknown"


def _to_secret(value: Any) -> Any:
    """Wrap a raw card value in SecretStr before pydantic sees it.

    Pydantic copies a field's raw input into ``ValidationError.errors()`` (and a missing
    field's error carries the whole input dict), where ``hide_input_in_errors`` does not
    reach. Wrapping first means every copy pydantic makes is already masked. Values of the
    wrong type become a redaction marker that the field validator then refuses.
    """
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(normalize_number(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return SecretStr(str(value))
    return SecretStr(_REDACTED)


class CardInput(BaseModel):
    """Raw card details as the shopper entered them; lives only until tokenization.

    ``number`` and ``cvc`` accept the usual formatting (``"4242 4242-4242 4242"``) and are
    held as :class:`~pydantic.SecretStr`; read them through the ``number``/``cvc``
    properties. Every way the model shows itself (``repr``, ``str``, ``model_dump``,
    ``model_dump_json``, validation errors) masks the number to its last four digits and
    hides the CVC. A two-digit ``exp_year`` (``34``) means 2034, as printed on cards.

    Construction checks types only; call :func:`validate_card` for the card checks, which
    raise :class:`~checkoutlab.errors.CardError` with the public error shape.
    """

    model_config = ConfigDict(
        frozen=True,
        hide_input_in_errors=True,
        serialize_by_alias=True,
    )

    number_secret: SecretStr = Field(
        alias="number",
        description="card number; spaces and dashes are ignored",
        examples=["4242 4242 4242 4242"],
    )
    exp_month: int = Field(description="expiration month, 1-12")
    exp_year: int = Field(description="expiration year, four digits (two are read as 20xx)")
    cvc_secret: SecretStr = Field(alias="cvc", description="security code (CVC/CVV)")

    @model_validator(mode="before")
    @classmethod
    def _wrap_secrets(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        cleaned = dict(data)
        # The field names too: passed by mistake, pydantic would echo them as "extra" input.
        for key in ("number", "cvc", "number_secret", "cvc_secret"):
            if key in cleaned:
                cleaned[key] = _to_secret(cleaned[key])
        return cleaned

    @field_validator("number_secret", "cvc_secret")
    @classmethod
    def _refuse_redacted(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() == _REDACTED:
            raise ValueError("must be a string of digits")
        return value

    @field_validator("exp_year")
    @classmethod
    def _four_digit_year(cls, value: int) -> int:
        return 2000 + value if 0 <= value < 100 else value

    @property
    def number(self) -> str:
        """The full number, digits only. Pass it to a tokenizer, never to a log or event."""
        return self.number_secret.get_secret_value()

    @property
    def cvc(self) -> str:
        """The security code. PCI DSS forbids keeping it after authorization."""
        return self.cvc_secret.get_secret_value()

    @property
    def brand(self) -> str:
        return detect_brand(self.number)

    @property
    def last4(self) -> str:
        return self.number[-4:]

    @property
    def masked_number(self) -> str:
        return mask_number(self.number)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Feeds pydantic's __repr__, __str__ and rich's pretty printer.
        yield "number", self.masked_number
        yield "exp_month", self.exp_month
        yield "exp_year", self.exp_year
        yield "cvc", "***"

    # Dumps are masked too, so a dict or JSON of the card is safe to log.
    @field_serializer("number_secret")
    def _dump_number(self, value: SecretStr) -> str:
        return mask_number(value.get_secret_value())

    @field_serializer("cvc_secret")
    def _dump_cvc(self, value: SecretStr) -> str:
        return "***"


def validate_card(card: CardInput, *, today: date | None = None) -> None:
    """Refuse a card the issuer would refuse anyway, with a message that says what to fix.

    Checks run in the order the shopper fills the form (number, expiry, CVC) and the first
    failure is raised, so the widget can point at one field. A card is valid through the
    last day of its expiry month. ``today`` defaults to the local date; inject it in tests.

    Raises :class:`~checkoutlab.errors.CardError` (402, ``card_error``) with codes
    ``incorrect_number``, ``invalid_expiry_month``, ``invalid_expiry_year``,
    ``expired_card`` or ``invalid_cvc`` and ``param`` naming the field.
    """
    today = today or date.today()
    _check_number(card.number)
    _check_expiry(card.exp_month, card.exp_year, today)
    _check_cvc(card.cvc, card.brand)


def _check_number(number: str) -> None:
    if not number:
        raise CardError(
            "Your card number is missing. Enter the number printed on your card.",
            code="incorrect_number",
            param=PARAM_NUMBER,
        )
    if not number.isascii() or not number.isdigit():
        raise CardError(
            "Your card number can only contain digits. "
            "Enter the number exactly as printed on your card.",
            code="incorrect_number",
            param=PARAM_NUMBER,
        )
    brand = detect_brand(number)
    lengths = _LENGTHS[brand]
    if len(number) not in lengths:
        raise CardError(
            f"Your card number has {len(number)} digits, but "
            f"{_BRAND_LABELS[brand]} numbers have {_describe_lengths(lengths)}. "
            "Check that no digit is missing or doubled.",
            code="incorrect_number",
            param=PARAM_NUMBER,
        )
    if not luhn_valid(number):
        raise CardError(
            "Your card number is incorrect. Check the digits for typos and try again.",
            code="incorrect_number",
            param=PARAM_NUMBER,
        )


def _check_expiry(month: int, year: int, today: date) -> None:
    if not 1 <= month <= 12:
        raise CardError(
            "Your card's expiration month is invalid. Enter a month from 1 to 12.",
            code="invalid_expiry_month",
            param=PARAM_EXP_MONTH,
        )
    if year < 2000 or year > today.year + _MAX_YEARS_AHEAD:
        raise CardError(
            "Your card's expiration year is invalid. "
            "Enter the year printed on your card, for example "
            f"{today.year + 3} or {(today.year + 3) % 100:02d}.",
            code="invalid_expiry_year",
            param=PARAM_EXP_YEAR,
        )
    if (year, month) < (today.year, today.month):
        raise CardError(
            f"Your card expired at the end of {month:02d}/{year}. Use a card that has not expired.",
            code="expired_card",
            param=PARAM_EXP_YEAR if year < today.year else PARAM_EXP_MONTH,
        )


def _check_cvc(cvc: str, brand: str) -> None:
    expected = CVC_LENGTH[brand]
    if len(cvc) == expected and cvc.isascii() and cvc.isdigit():
        return
    where = "on the front of" if brand == "amex" else "on the back of"
    raise CardError(
        f"Your card's security code is invalid. Enter the {expected}-digit code "
        f"printed {where} your {_BRAND_LABELS[brand]}.",
        code="invalid_cvc",
        param=PARAM_CVC,
    )


def _describe_lengths(lengths: frozenset[int]) -> str:
    ordered = sorted(lengths)
    if len(ordered) == 1:
        return f"{ordered[0]}"
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]} to {ordered[-1]}"
    return ", ".join(str(n) for n in ordered[:-1]) + f" or {ordered[-1]}"


_PAN_CANDIDATE = re.compile(r"(?<!\d)(?:\d[ -]?){11,18}\d(?!\d)")
REDACTED_PAN = "[redacted card number]"


def redact_card_numbers(value: Any) -> Any:
    """Replace anything that looks like a card number (12-19 digits, Luhn-valid) in strings.

    For data the platform does not control, such as browser-sent event properties: the
    card-data contract holds even when a merchant's page reports a form field by mistake.
    """
    if isinstance(value, str):
        return _PAN_CANDIDATE.sub(
            lambda m: REDACTED_PAN if luhn_valid(re.sub(r"[ -]", "", m.group())) else m.group(),
            value,
        )
    if isinstance(value, dict):
        return {redact_card_numbers(k): redact_card_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_card_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e20:
        value = int(value)  # 4242424242424242.0 is a card number too
        return (
            redact_card_numbers(value)
            if redact_card_numbers(value) == REDACTED_PAN
            else float(value)
        )
    if isinstance(value, int) and not isinstance(value, bool) and 12 <= len(str(abs(value))) <= 19:
        return REDACTED_PAN if luhn_valid(str(abs(value))) else value
    return value
