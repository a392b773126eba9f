// Building the confirm request from the form's values, reading API errors, event hygiene.
import test from "node:test";
import assert from "node:assert/strict";
import { buildPayment, describeApiError, eventProperties, translate } from "../src/checkoutlab.mjs";

const now = new Date(2026, 4, 15);
const card = { card_number: "4242 4242 4242 4242", exp: "12 / 30", cvc: "123" };

test("a valid card becomes the confirm request's payment_method", () => {
  const { errors, payment } = buildPayment(card, { method: "card", verification: {}, now });
  assert.deepEqual(errors, {});
  assert.deepEqual(payment, {
    payment_method: { type: "card", card: { number: "4242424242424242", exp_month: 12, exp_year: 2030, cvc: "123" } },
    verification: {},
    redeem_points: false,
  });
});

test("card errors are reported per field, and no payment is built", () => {
  const { errors, payment } = buildPayment(
    { card_number: "4242 4242 4242 4241", exp: "01 / 20", cvc: "12" },
    { method: "card", verification: {}, now },
  );
  assert.equal(payment, null);
  assert.deepEqual(errors, {
    card_number: { key: "number_invalid" },
    exp: { key: "exp_past" },
    cvc: { key: "cvc_invalid", vars: { n: 3 } },
  });
});

test("Amex needs a 4-digit CVC", () => {
  const values = { card_number: "3782 822463 10005", exp: "12 / 30", cvc: "123" };
  assert.deepEqual(buildPayment(values, { method: "card", now }).errors, { cvc: { key: "cvc_invalid", vars: { n: 4 } } });
  assert.deepEqual(buildPayment({ ...values, cvc: "1234" }, { method: "card", now }).errors, {});
});

test("CVC re-entry (verification.cvv) must match the card's CVC", () => {
  const verification = { cvv: true };
  assert.deepEqual(buildPayment(card, { method: "card", verification, now }).errors, { cvv_recheck: { key: "cvc_invalid", vars: { n: 3 } } });
  assert.deepEqual(buildPayment({ ...card, cvv_recheck: "321" }, { method: "card", verification, now }).errors, { cvv_recheck: { key: "cvv_mismatch" } });
  const ok = buildPayment({ ...card, cvv_recheck: "123" }, { method: "card", verification, now });
  assert.equal(ok.payment.verification.cvv, "123");
});

test("address verification (verification.avs) is required for every method", () => {
  const verification = { avs: true };
  const missing = buildPayment({ billing_line1: " " }, { method: "klarna", verification, now });
  assert.deepEqual(Object.keys(missing.errors).sort(), ["billing_country", "billing_line1", "billing_postal_code"]);
  const ok = buildPayment(
    { ...card, billing_line1: "1 Main St", billing_postal_code: "10115", billing_country: "de", redeem_points: true },
    { method: "card", verification, now },
  );
  assert.deepEqual(ok.payment.verification.billing_address, { line1: "1 Main St", postal_code: "10115", country: "DE" });
  assert.equal(ok.payment.redeem_points, true);
});

test("non-card methods confirm with {type} only; CVC re-entry does not apply to them", () => {
  for (const method of ["klarna", "bank_transfer", "apple_pay", "google_pay"]) {
    const { errors, payment } = buildPayment({}, { method, verification: { cvv: true }, now });
    assert.deepEqual(errors, {});
    assert.deepEqual(payment.payment_method, { type: method });
  }
});

test("iDEAL needs a bank, SEPA a valid IBAN and an account holder", () => {
  assert.deepEqual(buildPayment({}, { method: "ideal", now }).errors, { ideal_bank: { key: "required" } });
  assert.deepEqual(buildPayment({ ideal_bank: "ing" }, { method: "ideal", now }).payment.payment_method, { type: "ideal" });
  assert.deepEqual(buildPayment({ iban: "DE00 1234" }, { method: "sepa_debit", now }).errors, {
    iban: { key: "iban_invalid" },
    account_holder: { key: "required" },
  });
  const sepa = buildPayment({ iban: "DE89 3704 0044 0532 0130 00", account_holder: "A" }, { method: "sepa_debit", now });
  assert.deepEqual(sepa.payment.payment_method, { type: "sepa_debit" });
});

test("describeApiError points the server's param at a form field", () => {
  assert.deepEqual(
    describeApiError({ code: "incorrect_number", param: "payment_method.card.number", message: "Your card number is incorrect." }),
    { field: "card_number", key: "number_invalid", message: "Your card number is incorrect.", code: "incorrect_number", terminal: false },
  );
  assert.equal(describeApiError({ code: "expired_card", param: "payment_method.card.exp_year" }).field, "exp");
  assert.equal(describeApiError({ code: "verification_required", param: "verification.cvv" }).field, "cvv_recheck");
  const bio = describeApiError({ code: "verification_required", param: "verification.biometric_assertion" });
  assert.deepEqual([bio.field, bio.key], ["biometric", "biometric_required"]);
  assert.equal(describeApiError({ code: "parameter_invalid", param: "verification.billing_address.country" }).field, "billing_country");
  assert.equal(describeApiError({ code: "payment_method_unavailable", param: "payment_method.type" }).field, "form");
});

test("describeApiError marks the errors after which the session cannot be paid", () => {
  assert.deepEqual([describeApiError({ code: "session_expired" }).terminal, describeApiError({ code: "session_expired" }).key], [true, "expired"]);
  assert.equal(describeApiError({ code: "session_already_succeeded" }).key, "already_paid");
  assert.equal(describeApiError({ code: "profile_token_invalid", param: "token" }).terminal, true);
  assert.equal(describeApiError({ code: "card_declined" }).terminal, false);
  assert.equal(describeApiError(undefined).field, "form");
});

test("event properties keep only known, non-sensitive keys (never card data)", () => {
  const props = eventProperties({
    action: "field_focus",
    field: "card_number",
    number: "4242424242424242",
    card_number: "4242424242424242",
    cvc: "123",
    value: "4242",
  });
  assert.deepEqual(props, { action: "field_focus", field: "card_number" });
  assert.doesNotMatch(JSON.stringify(props), /4242|123/);
});

test("translate falls back to English and fills placeholders", () => {
  assert.equal(translate("de", "cvc_invalid", { n: 4 }), "Geben Sie die 4-stellige Prüfnummer ein.");
  assert.equal(translate("ja-JP", "retry"), "再試行");
  assert.equal(translate("pt-BR", "retry"), "Try again");
  assert.equal(translate("en", "no_such_key"), "no_such_key");
});

test("every locale has every message", () => {
  for (const locale of ["de", "fr", "es", "ja"]) {
    for (const key of ["loading", "processing", "succeeded", "declined", "network", "retry", "cancel", "exp_past", "cvc_invalid", "biometric_failed", "wallet_unavailable"]) {
      assert.notEqual(translate(locale, key), translate("en", key), `${locale}.${key}`);
    }
  }
});
