from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import ValidationError

from checkoutlab.errors import CardError
from checkoutlab.payments.cards import (
    CardInput,
    detect_brand,
    luhn_valid,
    mask_number,
    validate_card,
)

TODAY = date(2025, 6, 15)
VISA = "4242424242424242"


def card(
    number: str = VISA, *, exp_month: int = 12, exp_year: int = 2030, cvc: str = "123"
) -> CardInput:
    return CardInput(number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc)


def card_error(c: CardInput, *, today: date = TODAY) -> CardError:
    with pytest.raises(CardError) as info:
        validate_card(c, today=today)
    return info.value


# --- Luhn and brand ---------------------------------------------------------------------

BRAND_TABLE = [
    ("4242424242424242", "visa"),
    ("4000056655665556", "visa"),
    ("4222222222222", "visa"),  # 13-digit Visa
    ("5555555555554444", "mastercard"),
    ("5105105105105100", "mastercard"),
    ("2223003122003222", "mastercard"),  # 2-series
    ("2720990000000007", "mastercard"),  # top of the 2-series range
    ("378282246310005", "amex"),
    ("371449635398431", "amex"),
    ("6011111111111117", "discover"),
    ("6445644564456445", "discover"),
    ("6500000000000002", "discover"),
    ("3566002020360505", "jcb"),
    ("3530111333300000", "jcb"),
    ("3056930009020004", "diners"),
    ("36227206271667", "diners"),
    ("6200000000000005", "unionpay"),
    ("6205500000000000004", "unionpay"),  # 19 digits
]


@pytest.mark.parametrize(("number", "brand"), BRAND_TABLE)
def test_documented_test_cards_pass_luhn_and_get_their_brand(number: str, brand: str) -> None:
    assert luhn_valid(number)
    assert detect_brand(number) == brand
    validate_card(card(number, cvc="1234" if brand == "amex" else "123"), today=TODAY)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("2221", "mastercard"),
        ("2220", "unknown"),
        ("2721", "unknown"),
        ("3528", "jcb"),
        ("3527", "unknown"),
        ("3000", "diners"),
        ("3060", "unknown"),
        ("6441", "discover"),
        ("6431", "unknown"),
        ("8100", "unionpay"),
        ("9999999999999995", "unknown"),
        ("", "unknown"),
        ("abcd", "unknown"),
    ],
)
def test_brand_ranges_edges_and_partial_numbers(number: str, brand: str) -> None:
    assert detect_brand(number) == brand


def test_luhn_ignores_separators_and_refuses_other_characters() -> None:
    assert luhn_valid("4242 4242-4242 4242")
    assert not luhn_valid("4242424242424241")
    assert not luhn_valid("4242x24242424242")
    assert not luhn_valid("")


def test_full_width_digits_from_cjk_input_methods_are_accepted() -> None:
    full_width = "\uff14\uff12" * 8  # "4242..." as typed with a Japanese IME
    assert luhn_valid(full_width)
    assert detect_brand(full_width) == "visa"
    assert card(full_width).number == VISA
    assert not luhn_valid("\u0664\u0662" * 8)  # Arabic-Indic digits are not card digits


# --- Input normalization ----------------------------------------------------------------


def test_number_accepts_spaces_and_dashes() -> None:
    c = card("4242 4242-4242  4242")
    assert c.number == VISA
    assert c.last4 == "4242"
    assert c.brand == "visa"


def test_integer_number_is_accepted_as_digits() -> None:
    c = CardInput(number=int(VISA), exp_month=1, exp_year=2030, cvc="123")
    assert c.number == VISA


def test_two_digit_year_means_this_century() -> None:
    assert card(exp_year=34).exp_year == 2034


def test_card_is_immutable() -> None:
    c = card()
    with pytest.raises(ValidationError):
        c.exp_month = 1  # type: ignore[misc]


# --- Number checks ----------------------------------------------------------------------


def test_luhn_failure_is_incorrect_number() -> None:
    err = card_error(card("4242424242424241"))
    assert err.code == "incorrect_number"
    assert err.param == "payment_method.card.number"
    assert err.status_code == 402
    assert err.type == "card_error"
    assert "incorrect" in err.message


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("42424242424242428", "Visa numbers have 13, 16 or 19"),
        ("37828224631000", "American Express numbers have 15"),
        ("555555555555444", "Mastercard numbers have 16"),
        ("12345678", "card numbers have 12 to 19"),
    ],
)
def test_wrong_length_for_brand_says_how_many_digits(number: str, expected: str) -> None:
    err = card_error(card(number))
    assert err.code == "incorrect_number"
    assert expected in err.message


def test_luhn_valid_but_wrong_length_for_brand_is_refused() -> None:
    amex_16 = "3782822463100052"  # Luhn-valid, but Amex numbers are 15 digits
    assert luhn_valid(amex_16)
    assert card_error(card(amex_16, cvc="1234")).code == "incorrect_number"


@pytest.mark.parametrize("number", ["", "4242abcd42424242", "4242.4242.4242.4242"])
def test_non_digits_and_empty_are_incorrect_number(number: str) -> None:
    err = card_error(card(number))
    assert err.code == "incorrect_number"
    assert err.param == "payment_method.card.number"


# --- Expiry -----------------------------------------------------------------------------


@pytest.mark.parametrize("month", [0, 13, -1])
def test_month_out_of_range(month: int) -> None:
    err = card_error(card(exp_month=month))
    assert err.code == "invalid_expiry_month"
    assert err.param == "payment_method.card.exp_month"
    assert "1 to 12" in err.message


@pytest.mark.parametrize("year", [1999, 2046, 20300])
def test_implausible_year(year: int) -> None:
    err = card_error(card(exp_year=year))
    assert err.code == "invalid_expiry_year"
    assert err.param == "payment_method.card.exp_year"


def test_card_is_valid_through_the_end_of_its_expiry_month() -> None:
    validate_card(card(exp_month=6, exp_year=2025), today=TODAY)
    validate_card(card(exp_month=6, exp_year=2025), today=date(2025, 6, 30))


def test_last_month_is_expired_on_the_month_field() -> None:
    err = card_error(card(exp_month=5, exp_year=2025))
    assert err.code == "expired_card"
    assert err.param == "payment_method.card.exp_month"
    assert "05/2025" in err.message


def test_last_year_is_expired_on_the_year_field() -> None:
    err = card_error(card(exp_month=12, exp_year=2024))
    assert err.code == "expired_card"
    assert err.param == "payment_method.card.exp_year"


def test_expiry_uses_injected_today() -> None:
    c = card(exp_month=1, exp_year=2026)
    validate_card(c, today=date(2026, 1, 31))
    assert card_error(c, today=date(2026, 2, 1)).code == "expired_card"


# --- CVC --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "cvc", "ok"),
    [
        (VISA, "123", True),
        (VISA, "1234", False),
        (VISA, "12", False),
        ("5555555555554444", "999", True),
        ("378282246310005", "1234", True),
        ("378282246310005", "123", False),
        ("6011111111111117", "12a", False),
        (VISA, "", False),
    ],
)
def test_cvc_length_by_brand(number: str, cvc: str, ok: bool) -> None:
    c = card(number, cvc=cvc)
    if ok:
        validate_card(c, today=TODAY)
        return
    err = card_error(c)
    assert err.code == "invalid_cvc"
    assert err.param == "payment_method.card.cvc"


def test_cvc_message_names_digits_and_where_to_look() -> None:
    assert "4-digit code printed on the front" in card_error(card("378282246310005")).message
    assert "3-digit code printed on the back" in card_error(card(VISA, cvc="12")).message


def test_checks_run_in_form_order() -> None:
    everything_wrong = card("4242424242424241", exp_month=13, cvc="1")
    assert card_error(everything_wrong).code == "incorrect_number"
    assert card_error(card(exp_month=13, cvc="1")).code == "invalid_expiry_month"


# --- Masking: the full number never leaves the object -----------------------------------

SECRET_NUMBERS = [VISA, "378282246310005", "4242424242424241"]


@pytest.mark.parametrize("number", SECRET_NUMBERS)
def test_repr_str_and_dumps_mask_number_and_cvc(number: str) -> None:
    c = card(number, cvc="987")
    shown = [repr(c), str(c), c.model_dump_json(), json.dumps(c.model_dump()), f"{c}", f"{c!r}"]
    for text in shown:
        assert number not in text
        assert "987" not in text
        assert number[-4:] in text
    assert c.model_dump()["number"] == f"**** {number[-4:]}"
    assert c.model_dump()["cvc"] == "***"


def test_formatted_number_is_masked_too() -> None:
    c = card("4242 4242 4242 4242")
    assert "4242 4242 4242 4242" not in repr(c)
    assert "4242 4242 4242 4242" not in c.model_dump_json()


def test_card_errors_never_contain_the_number() -> None:
    for c in [
        card("4242424242424241"),
        card("42424242424242428"),
        card(exp_month=13),
        card(exp_year=2024),
        card(cvc="1"),
    ]:
        err = card_error(c)
        rendered = [str(err), err.message, json.dumps(err.to_dict()), repr(err)]
        for text in rendered:
            assert c.number not in text


def _all_error_text(exc: ValidationError) -> str:
    return "\n".join([str(exc), repr(exc), exc.json(), repr(exc.errors())])


def test_validation_error_for_other_field_does_not_echo_number() -> None:
    with pytest.raises(ValidationError) as info:
        CardInput(number=VISA, exp_month="soon", exp_year=2030, cvc="123")
    text = _all_error_text(info.value)
    assert VISA not in text
    assert "exp_month" in text


def test_missing_field_error_does_not_echo_number() -> None:
    # Pydantic puts the whole input dict in a "missing" error.
    with pytest.raises(ValidationError) as info:
        CardInput.model_validate({"number": "4242 4242 4242 4242", "exp_month": 1})
    text = _all_error_text(info.value)
    assert VISA not in text
    assert "4242 4242 4242 4242" not in text
    assert "123" not in text


@pytest.mark.parametrize("bad", [float(VISA), [VISA], {"digits": VISA}, None])
def test_wrong_type_number_error_does_not_echo_it(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        CardInput.model_validate({"number": bad, "exp_month": 1, "exp_year": 2030, "cvc": "1"})
    text = _all_error_text(info.value)
    assert VISA not in text
    assert "number" in text


def test_json_input_is_masked_in_errors() -> None:
    raw = json.dumps({"number": VISA, "exp_month": "x", "exp_year": 2030, "cvc": "123"})
    with pytest.raises(ValidationError) as info:
        CardInput.model_validate_json(raw)
    assert VISA not in _all_error_text(info.value)


@pytest.mark.parametrize(
    ("number", "masked"),
    [(VISA, "**** 4242"), ("4242 4242 4242 4242", "**** 4242"), ("12345", "****"), ("", "****")],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked
