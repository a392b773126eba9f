// The context sent to /v1/payment_profile: detection and the merchant's userContext.
import test from "node:test";
import assert from "node:assert/strict";
import { mergeContext, detectCapabilities } from "../src/checkoutlab.mjs";

test("mergeContext: userContext wins for the keys it sets, nested objects merge", () => {
  const detected = {
    device: { biometric: false, apple_pay: false, google_pay: false, payment_request: true, os: "linux" },
    locale: "en-US",
    timezone: "Europe/Berlin",
  };
  const user = { device: { type: "mobile", biometric: true, apple_pay: true }, network: { proxy: true }, country: "JP" };
  assert.deepEqual(mergeContext(detected, user), {
    device: { biometric: true, apple_pay: true, google_pay: false, payment_request: true, os: "linux", type: "mobile" },
    locale: "en-US",
    timezone: "Europe/Berlin",
    network: { proxy: true },
    country: "JP",
  });
});

test("mergeContext: undefined does not override, null and false do", () => {
  const merged = mergeContext({ locale: "de", device: { biometric: true } }, { locale: undefined, device: { biometric: false }, currency: null });
  assert.equal(merged.locale, "de");
  assert.equal(merged.device.biometric, false);
  assert.equal(merged.currency, null);
});

test("mergeContext: a scalar replaces an object and the other way round", () => {
  assert.deepEqual(mergeContext({ network: { proxy: false } }, { network: "wifi" }), { network: "wifi" });
  assert.deepEqual(mergeContext({ network: "wifi" }, { network: { proxy: true } }), { network: { proxy: true } });
});

test("mergeContext copies: neither input is modified", () => {
  const detected = { device: { biometric: false } };
  const user = { device: { biometric: true }, tags: ["a"] };
  const merged = mergeContext(detected, user);
  merged.device.extra = 1;
  merged.tags.push("b");
  assert.deepEqual(detected, { device: { biometric: false } });
  assert.deepEqual(user, { device: { biometric: true }, tags: ["a"] });
});

test("mergeContext ignores prototype-polluting keys and non-objects", () => {
  const evil = JSON.parse('{"__proto__": {"polluted": true}, "device": {"constructor": {"x": 1}}}');
  const merged = mergeContext({}, evil);
  assert.equal({}.polluted, undefined);
  assert.equal(merged.polluted, undefined);
  assert.deepEqual(merged.device, {});
  assert.deepEqual(mergeContext({ a: 1 }, null), { a: 1 });
  assert.deepEqual(mergeContext(undefined, { a: 1 }), { a: 1 });
});

test("detectCapabilities reports biometric, Payment Request, client hints, locale", async () => {
  const env = {
    navigator: { language: "fr-FR", userAgentData: { mobile: true, platform: "Android" } },
    PublicKeyCredential: { isUserVerifyingPlatformAuthenticatorAvailable: () => Promise.resolve(true) },
    PaymentRequest: function PaymentRequest() {},
  };
  const context = await detectCapabilities(env);
  assert.equal(context.device.biometric, true);
  assert.equal(context.device.payment_request, true);
  assert.equal(context.device.apple_pay, false);
  assert.equal(context.device.type, "mobile");
  assert.equal(context.device.os, "android");
  assert.equal(context.locale, "fr-FR");
  assert.equal(typeof context.timezone, "string");
});

test("detectCapabilities never throws and defaults to no capability", async () => {
  const env = {
    navigator: {},
    PublicKeyCredential: { isUserVerifyingPlatformAuthenticatorAvailable: () => Promise.reject(new Error("nope")) },
    ApplePaySession: { canMakePayments: () => { throw new Error("insecure context"); } },
  };
  const context = await detectCapabilities(env, { locale: "ja" });
  assert.deepEqual(context.device, { biometric: false, apple_pay: false, google_pay: false, payment_request: false });
  assert.equal(context.locale, "ja");
});

test("detectCapabilities does not wait forever for the authenticator check", async () => {
  const env = {
    navigator: {},
    PublicKeyCredential: { isUserVerifyingPlatformAuthenticatorAvailable: () => new Promise(() => {}) },
  };
  const started = Date.now();
  const context = await detectCapabilities(env);
  assert.equal(context.device.biometric, false);
  assert.ok(Date.now() - started < 3000);
});
