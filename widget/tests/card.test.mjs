// Card input logic: Luhn, brand detection, formatting, expiry, CVC (mirrors payments/cards.py).
import test from "node:test";
import assert from "node:assert/strict";
import {
  luhnValid,
  detectBrand,
  formatCardNumber,
  cardNumberError,
  formatExpiry,
  parseExpiry,
  expiryError,
  validateCvc,
  cvcLength,
  ibanValid,
} from "../src/checkoutlab.mjs";

test("luhnValid accepts Stripe's test cards, with or without separators", () => {
  for (const number of [
    "4242424242424242",
    "4242 4242 4242 4242",
    "4242-4242-4242-4242",
    "5555555555554444",
    "2223003122003222",
    "378282246310005",
    "6011111111111117",
    "4000000000003220",
  ]) {
    assert.equal(luhnValid(number), true, number);
  }
});

test("luhnValid refuses typos, swaps and non-digits", () => {
  assert.equal(luhnValid("4242424242424241"), false); // one wrong digit
  assert.equal(luhnValid("4242424242424224"), false); // swapped pair
  assert.equal(luhnValid("4242a24242424242"), false);
  assert.equal(luhnValid(""), false);
  assert.equal(luhnValid(null), false);
});

test("luhnValid reads full-width digits typed with a Japanese IME", () => {
  assert.equal(luhnValid("４２４２４２４２４２４２４２４２"), true);
});

test("detectBrand: visa, mastercard (51-55 and 2-series), amex, discover", () => {
  assert.equal(detectBrand("4242424242424242"), "visa");
  assert.equal(detectBrand("4"), "visa");
  assert.equal(detectBrand("5555555555554444"), "mastercard");
  assert.equal(detectBrand("5105105105105100"), "mastercard");
  assert.equal(detectBrand("2223003122003222"), "mastercard");
  assert.equal(detectBrand("2221"), "mastercard");
  assert.equal(detectBrand("2720 99"), "mastercard");
  assert.equal(detectBrand("2721"), "unknown"); // just past the 2-series
  assert.equal(detectBrand("2220"), "unknown"); // just before it
  assert.equal(detectBrand("378282246310005"), "amex");
  assert.equal(detectBrand("34"), "amex");
  assert.equal(detectBrand("6011111111111117"), "discover");
  assert.equal(detectBrand("6445"), "discover");
  assert.equal(detectBrand("65"), "discover");
});

test("detectBrand: other networks, partial and unknown prefixes", () => {
  assert.equal(detectBrand("3566002020360505"), "jcb");
  assert.equal(detectBrand("36227206271667"), "diners");
  assert.equal(detectBrand("3056930009020004"), "diners");
  assert.equal(detectBrand("6200000000000005"), "unionpay");
  assert.equal(detectBrand("5"), "unknown"); // not decided yet
  assert.equal(detectBrand(""), "unknown");
  assert.equal(detectBrand("9999"), "unknown");
  assert.equal(detectBrand("42x"), "unknown");
});

test("formatCardNumber groups by 4, Amex 4-6-5, 14-digit Diners 4-6-4", () => {
  assert.equal(formatCardNumber("4242424242424242"), "4242 4242 4242 4242");
  assert.equal(formatCardNumber("42424"), "4242 4");
  assert.equal(formatCardNumber("4242"), "4242");
  assert.equal(formatCardNumber("378282246310005"), "3782 822463 10005");
  assert.equal(formatCardNumber("3782822"), "3782 822");
  assert.equal(formatCardNumber("36227206271667"), "3622 720627 1667");
  assert.equal(formatCardNumber(""), "");
});

test("formatCardNumber strips junk and caps at the brand's longest number", () => {
  assert.equal(formatCardNumber("4242-4242 4242.4242"), "4242 4242 4242 4242");
  assert.equal(formatCardNumber("37828224631000599"), "3782 822463 10005"); // amex: 15
  assert.equal(formatCardNumber("5555555555554444123"), "5555 5555 5555 4444"); // mc: 16
  assert.equal(formatCardNumber("4000000000000000000123"), "4000 0000 0000 0000 000"); // visa: 19
});

test("cardNumberError says missing, incomplete or invalid", () => {
  assert.equal(cardNumberError("4242 4242 4242 4242"), null);
  assert.equal(cardNumberError("378282246310005"), null);
  assert.equal(cardNumberError(""), "number_required");
  assert.equal(cardNumberError("4242 4242"), "number_incomplete");
  assert.equal(cardNumberError("4242424242424241"), "number_invalid");
  assert.equal(cardNumberError("55555555555544441"), "number_invalid"); // too long for mc
});

test("formatExpiry inserts the separator and pads the month", () => {
  assert.equal(formatExpiry("1"), "1");
  assert.equal(formatExpiry("4"), "04 / ");
  assert.equal(formatExpiry("12"), "12 / ");
  assert.equal(formatExpiry("123"), "12 / 3");
  assert.equal(formatExpiry("1234"), "12 / 34");
  assert.equal(formatExpiry("12345"), "12 / 34");
  assert.equal(formatExpiry("1/"), "01 / ");
  assert.equal(formatExpiry("1/2"), "01 / 2");
  assert.equal(formatExpiry("12/2030"), "12 / 30"); // pasted four-digit year
  assert.equal(formatExpiry("ab"), "");
});

test("formatExpiry lets backspace remove the separator", () => {
  assert.equal(formatExpiry("12 /", { deleting: true }), "12");
  assert.equal(formatExpiry("12", { deleting: true }), "12");
  assert.equal(formatExpiry("12 / 3", { deleting: true }), "12 / 3");
});

test("parseExpiry reads MM / YY, MM/YYYY and MMYY", () => {
  assert.deepEqual(parseExpiry("12 / 34"), { month: 12, year: 2034 });
  assert.deepEqual(parseExpiry("01/2031"), { month: 1, year: 2031 });
  assert.deepEqual(parseExpiry("0530"), { month: 5, year: 2030 });
  assert.deepEqual(parseExpiry("5/30"), { month: 5, year: 2030 });
  assert.equal(parseExpiry("13 / 30"), null);
  assert.equal(parseExpiry("00 / 30"), null);
  assert.equal(parseExpiry("12 / 3"), null);
  assert.equal(parseExpiry(""), null);
});

test("expiryError: a card is valid through the end of its expiry month", () => {
  const now = new Date(2026, 4, 15); // 15 May 2026
  assert.equal(expiryError("05 / 26", now), null);
  assert.equal(expiryError("04 / 26", now), "exp_past");
  assert.equal(expiryError("12 / 25", now), "exp_past");
  assert.equal(expiryError("01 / 27", now), null);
  assert.equal(expiryError("01 / 2047", now), "exp_invalid"); // > 20 years ahead: a typo
  assert.equal(expiryError("13 / 27", now), "exp_invalid");
  assert.equal(expiryError("", now), "exp_required");
});

test("validateCvc: 4 digits for Amex, 3 for the others", () => {
  assert.equal(cvcLength("amex"), 4);
  assert.equal(cvcLength("visa"), 3);
  assert.equal(cvcLength("unknown"), 3);
  assert.equal(validateCvc("123", "visa"), true);
  assert.equal(validateCvc("1234", "visa"), false);
  assert.equal(validateCvc("12", "mastercard"), false);
  assert.equal(validateCvc("1234", "amex"), true);
  assert.equal(validateCvc("123", "amex"), false);
  assert.equal(validateCvc("12a", "visa"), false);
  assert.equal(validateCvc("", "visa"), false);
});

test("ibanValid checks the mod-97 check digits", () => {
  assert.equal(ibanValid("DE89 3704 0044 0532 0130 00"), true);
  assert.equal(ibanValid("NL91ABNA0417164300"), true);
  assert.equal(ibanValid("DE89 3704 0044 0532 0130 01"), false);
  assert.equal(ibanValid("NL00 SAND 0000 0000 00"), false);
  assert.equal(ibanValid(""), false);
});
