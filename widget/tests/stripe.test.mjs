// Stripe mode: the card is collected by Stripe.js Elements and only a PaymentMethod id reaches
// the platform (PCI DSS SAQ-A). A whole orchestratePayment runs on the fake page of harness.mjs
// with a fake window.Stripe that records its calls.
import test from "node:test";
import assert from "node:assert/strict";
import { orchestratePayment, validateConfig } from "../src/checkoutlab.mjs";
import { installPage, fakeApi, fakeStripe, formHTML, PROFILE, until, shadowOf, makeEvent } from "./harness.mjs";

const BASE = { publishableKey: "pk_test_platform", clientSecret: "cs_1_secret_x" };
const STRIPE = { publishableKey: "pk_test_stripe123" };
const CARD_DATA = /4242|"number"|"cvc"|"exp_month"|"exp_year"|"card":\s*\{/;

/** Start a checkout on a fresh page; resolves once the form is ready. */
async function start(t, { config = {}, api = fakeApi(), stripe = fakeStripe(), withStripe = true } = {}) {
  const page = installPage();
  t.after(page.restore);
  globalThis.fetch = api.fetch;
  if (withStripe) globalThis.Stripe = stripe.Stripe;
  const statuses = [];
  const promise = orchestratePayment({ ...BASE, onStatus: (s) => statuses.push(s), ...config });
  promise.catch(() => {});
  await until(() => statuses.includes("ready") || statuses.includes("failed"), { message: "ready" });
  const root = shadowOf(page.container);
  const host = root.host;
  return { page, api, stripe, statuses, promise, root, host, q: (s) => root.querySelector(s) };
}

const formError = (c) => c.q('[data-role="error"][data-for="form"]').textContent;

test("Stripe mode mounts the card Element where the card inputs were, in the light DOM (slot)", async (t) => {
  const c = await start(t, { config: { stripe: STRIPE } });
  assert.deepEqual(c.stripe.named("Stripe")[0].slice(0, 2), ["Stripe", "pk_test_stripe123"]);
  assert.deepEqual(c.stripe.named("elements")[0][1], { locale: "en" });
  const [, type, options] = c.stripe.named("create")[0];
  assert.equal(type, "card");
  assert.equal(options.hidePostalCode, false);

  // Stripe.js cannot mount inside a shadow root: the target is a light-DOM child of the host,
  // projected into the card panel by a named slot.
  const target = c.stripe.named("mount")[0][1];
  assert.equal(target.parentNode, c.host);
  assert.equal(target.getRootNode(), c.page.document);
  assert.equal(target.getAttribute("slot"), "checkoutlab-stripe-card");
  const slot = c.q('.cl-card slot[name="checkoutlab-stripe-card"]');
  assert.ok(slot, "slot in the card panel");
  assert.equal(slot.closest(".cl-field").querySelector(".cl-label").textContent, "Card details");
  assert.ok(c.q('[data-role="error"][data-for="stripe_card"]'));

  // The widget's own card inputs are gone; the name on the card stays.
  for (const name of ["card_number", "exp", "cvc"]) assert.equal(c.q(`[name="${name}"]`), null, name);
  assert.equal(c.q(".cl-card .cl-row"), null);
  assert.ok(c.q('[name="cardholder_name"]'));

  // Stripe's live validation messages land in the card field's error slot.
  c.stripe.state.handlers.change({ complete: false, error: { message: "Your card number is incomplete." } });
  assert.equal(c.q('[data-for="stripe_card"]').textContent, "Your card number is incomplete.");
  c.stripe.state.handlers.change({ complete: true });
  assert.equal(c.q('[data-for="stripe_card"]').textContent, "");
  c.promise.cancel();
  assert.equal((await c.promise).status, "canceled");
  assert.deepEqual(c.stripe.named("update").at(-1)[1], { disabled: true });
});

test("Stripe mode: confirm carries only the PaymentMethod id as token, never card data", async (t) => {
  const c = await start(t, { config: { stripe: STRIPE } });
  c.q('[name="cardholder_name"]').value = "Ada Lovelace";
  c.q('[data-action="submit"]').click();
  const result = await c.promise;
  assert.equal(result.status, "succeeded");

  assert.deepEqual(c.stripe.named("createPaymentMethod")[0][1], {
    type: "card",
    card: c.stripe.state.element,
    billing_details: { name: "Ada Lovelace" },
  });
  const confirms = c.api.of("/confirm");
  assert.equal(confirms.length, 1);
  assert.deepEqual(confirms[0].body, {
    client_secret: "cs_1_secret_x",
    profile_token: "profile-token-1",
    payment_method: { type: "card", token: "pm_1Fake" },
    verification: {},
    redeem_points: false,
  });
  assert.ok(confirms[0].headers["Idempotency-Key"]);
  for (const call of c.api.calls) assert.doesNotMatch(call.raw, CARD_DATA, call.path);
});

test("Stripe mode with address verification: billing details go to Stripe, CVC re-entry is skipped", async (t) => {
  const profile = { ...PROFILE, verification: { ...PROFILE.verification, cvv: true, avs: true } };
  const api = fakeApi({ profile, html: formHTML({ cvv: true, avs: true }) });
  const c = await start(t, { config: { stripe: STRIPE }, api });
  assert.equal(c.stripe.named("create")[0][2].hidePostalCode, true); // the form asks for it
  assert.equal(c.q('[data-step="cvv"]').hidden, true); // the CVC lives in Stripe's frame
  c.q('[name="billing_line1"]').value = "1 Main Street";
  c.q('[name="billing_postal_code"]').value = "10115";
  c.q('[name="billing_country"]').value = "DE";
  c.q('[data-action="submit"]').click();
  assert.equal((await c.promise).status, "succeeded");
  const address = { line1: "1 Main Street", postal_code: "10115", country: "DE" };
  assert.deepEqual(c.stripe.named("createPaymentMethod")[0][1].billing_details, { address });
  const body = c.api.of("/confirm")[0].body;
  assert.deepEqual(body.payment_method, { type: "card", token: "pm_1Fake" });
  assert.deepEqual(body.verification, { billing_address: address });
  for (const call of c.api.calls) assert.doesNotMatch(call.raw, CARD_DATA, call.path);
});

test("a Stripe error is shown in the form's error region and no confirm is sent", async (t) => {
  const error = { type: "card_error", code: "incorrect_number", message: "Your card number is incorrect." };
  let answer = { error };
  const stripe = fakeStripe({ result: () => answer });
  const c = await start(t, { config: { stripe: STRIPE }, stripe });
  c.q('[data-action="submit"]').click();
  await until(() => formError(c) !== "", { message: "form error" });
  assert.equal(formError(c), "Your card number is incorrect.");
  assert.equal(c.api.of("/confirm").length, 0);
  assert.equal(c.statuses.at(-1), "ready");
  assert.equal(c.q('[data-action="submit"]').disabled, false);

  // A validation error puts the shopper back in the card Element.
  answer = { error: { type: "validation_error", code: "incomplete_number", message: "Your card number is incomplete." } };
  c.q('[data-action="submit"]').click();
  await until(() => formError(c) === "Your card number is incomplete.", { message: "second error" });
  assert.ok(c.stripe.named("focus").length >= 1);
  assert.equal(c.api.of("/confirm").length, 0);

  // Fixed: the next attempt goes through.
  answer = { paymentMethod: { id: "pm_2Good" } };
  c.q('[data-action="submit"]').click();
  assert.equal((await c.promise).status, "succeeded");
  assert.deepEqual(c.api.of("/confirm")[0].body.payment_method, { type: "card", token: "pm_2Good" });
});

test("stripe configured but Stripe.js missing: fails loudly, nothing sent, no raw card fields", async (t) => {
  const errors = [];
  const original = console.error;
  console.error = (...args) => errors.push(args.join(" "));
  t.after(() => (console.error = original));
  const c = await start(t, { config: { stripe: STRIPE }, withStripe: false });
  await assert.rejects(c.promise, (err) => {
    assert.equal(err.code, "checkoutlab_misuse");
    assert.match(err.message, /Stripe\.js is not loaded \(window\.Stripe is missing\).*js\.stripe\.com\/v3/);
    return true;
  });
  assert.ok(errors.some((e) => /Stripe\.js is not loaded/.test(e)), "console.error");
  const status = c.q('[data-role="status"]');
  assert.equal(status.hidden, false);
  assert.match(c.q('[data-role="status-text"]').textContent, /Card payments can't be loaded/);
  assert.equal(c.api.calls.length, 0); // not even the profile: no form with card inputs
  assert.equal(c.q('[name="card_number"]'), null);
});

test("a Stripe.js script tag that is still loading is waited for", async (t) => {
  const page = installPage({ stripeScript: true });
  t.after(page.restore);
  const api = fakeApi();
  const stripe = fakeStripe();
  globalThis.fetch = api.fetch;
  const statuses = [];
  const promise = orchestratePayment({ ...BASE, stripe: STRIPE, onStatus: (s) => statuses.push(s) });
  setTimeout(() => (globalThis.Stripe = stripe.Stripe), 60);
  await until(() => statuses.includes("ready"), { message: "ready" });
  assert.equal(stripe.named("mount").length, 1);
  promise.cancel();
  assert.equal((await promise).status, "canceled");
});

test("without merchantConfig.stripe nothing changes: the sandbox gets the card, Stripe.js unused", async (t) => {
  const c = await start(t); // window.Stripe is on the page, but not configured
  assert.ok(c.q('[name="card_number"]'));
  assert.equal(c.q("slot"), null);
  c.q('[name="card_number"]').value = "4242 4242 4242 4242";
  c.q('[name="exp"]').value = "12 / 34";
  c.q('[name="cvc"]').value = "123";
  c.q('[data-action="submit"]').click();
  assert.equal((await c.promise).status, "succeeded");
  assert.deepEqual(c.api.of("/confirm")[0].body.payment_method, {
    type: "card",
    card: { number: "4242424242424242", exp_month: 12, exp_year: 2034, cvc: "123" },
  });
  assert.equal(c.stripe.calls.length, 0);
});

const REQUIRES_ACTION = (nextAction) => [200, { id: "pay_1", object: "payment", status: "requires_action", next_action: nextAction }];
const STRIPE_ACTION = { type: "three_ds_challenge", gateway: "stripe", challenge_id: "pi_1", client_secret: "pi_1_secret_abc", stripe_type: "use_stripe_sdk" };

test("a Stripe next action runs stripe.handleNextAction, then the server finishes the payment", async (t) => {
  const api = fakeApi({ confirm: [REQUIRES_ACTION(STRIPE_ACTION)] });
  const c = await start(t, { config: { stripe: STRIPE }, api });
  c.q('[data-action="submit"]').click();
  assert.equal((await c.promise).status, "succeeded");
  assert.deepEqual(c.stripe.named("handleNextAction")[0][1], { clientSecret: "pi_1_secret_abc" });
  const challenge = c.api.of("/challenge");
  assert.equal(challenge.length, 1);
  assert.equal(challenge[0].path, "/v1/checkout_sessions/cs_1/payments/pay_1/challenge");
  assert.deepEqual(challenge[0].body, { client_secret: "cs_1_secret_x", outcome: "succeeded" });
  assert.equal(c.q('[data-step="three_ds"]').hidden, true); // the sandbox buttons stay hidden
  assert.ok(c.statuses.includes("requires_action"));
});

test("a failed Stripe authentication is reported as failed and the decline is shown", async (t) => {
  const declined = [402, { error: { type: "card_error", code: "card_declined", decline_code: "authentication_failed", message: "We couldn't verify this payment with your bank.", payment: { id: "pay_1", status: "failed" } } }];
  const api = fakeApi({ confirm: [REQUIRES_ACTION(STRIPE_ACTION)], challenge: [declined] });
  const stripe = fakeStripe({ nextAction: { error: { type: "card_error", message: "Authentication failed." } } });
  const c = await start(t, { config: { stripe: STRIPE }, api, stripe });
  c.q('[data-action="submit"]').click();
  await until(() => c.statuses.includes("declined"), { message: "declined" });
  assert.deepEqual(c.api.of("/challenge")[0].body.outcome, "failed");
  assert.match(c.q('[data-role="status-text"]').textContent, /couldn't verify/);
  assert.equal(c.stripe.named("clear").length, 1); // a fresh card for the retry
  c.promise.cancel();
  await c.promise;
});

test("a next action without a client secret keeps the existing 3-D Secure step", async (t) => {
  const sandboxAction = { type: "three_ds_challenge", challenge_id: "tds_sandbox_1" };
  const api = fakeApi({ confirm: [REQUIRES_ACTION(sandboxAction)] });
  const c = await start(t, { config: { stripe: STRIPE }, api });
  c.q('[data-action="submit"]').click();
  await until(() => c.q('[data-step="three_ds"]').hidden === false, { message: "challenge step" });
  assert.equal(c.stripe.named("handleNextAction").length, 0);
  c.q('[data-action="three-ds-complete"]').click();
  assert.equal((await c.promise).status, "succeeded");
});

test("merchantConfig.stripe is validated with messages that say what to fix", () => {
  const element = { nodeType: 1 };
  const env = { document: { querySelector: () => element } };
  assert.equal(validateConfig(BASE, {}, env).stripe, null);
  assert.deepEqual(validateConfig({ ...BASE, stripe: { publishableKey: " pk_live_abc " } }, {}, env).stripe, { publishableKey: "pk_live_abc" });
  assert.throws(() => validateConfig({ ...BASE, stripe: "pk_test_1" }, {}, env), /merchantConfig\.stripe must be an object/);
  assert.throws(() => validateConfig({ ...BASE, stripe: {} }, {}, env), /stripe\.publishableKey must be your Stripe publishable key/);
  assert.throws(() => validateConfig({ ...BASE, stripe: { publishableKey: "sk_live_1" } }, {}, env), /secret or restricted key. Never use it in the browser/);
  assert.throws(() => validateConfig({ ...BASE, stripe: { publishableKey: "rk_live_1" } }, {}, env), /Never use it in the browser/);
  assert.throws(() => validateConfig({ ...BASE, stripe: { publishable_key: "pk_test_1" } }, {}, env), /unknown merchantConfig\.stripe option 'publishable_key'/);
});

test("the harness's form submit path is the one the shopper uses (Enter in a field)", async (t) => {
  const c = await start(t, { config: { stripe: STRIPE } });
  c.q('[data-role="payment-form"]').dispatchEvent(makeEvent("submit"));
  assert.equal((await c.promise).status, "succeeded");
});
