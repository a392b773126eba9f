// Misuse errors, container lookup, appearance → CSS custom properties.
import test from "node:test";
import assert from "node:assert/strict";
import { orchestratePayment, validateConfig, appearanceProperties } from "../src/checkoutlab.mjs";

const element = { nodeType: 1, id: "payment-container" };
/** The smallest `document` validateConfig needs: querySelector over a fixed map. */
const fakeEnv = (elements = { "#payment-container": element }) => ({
  document: {
    querySelector(selector) {
      if (selector.startsWith("[[")) throw new SyntaxError("not a selector");
      return elements[selector] || null;
    },
  },
});
const good = { publishableKey: "pk_test_abc", clientSecret: "cs_1_secret_x" };

test("a valid config resolves the default container and normalises apiBase", () => {
  const config = validateConfig({ ...good, apiBase: "https://api.example.com/" }, undefined, fakeEnv());
  assert.equal(config.container, element);
  assert.equal(config.apiBase, "https://api.example.com");
  assert.equal(config.sandbox, true);
  assert.equal(config.timeoutMs, 15000);
  assert.equal(config.cancelButton, true);
});

test("an element passed as container is used as is", () => {
  const mine = { nodeType: 1 };
  assert.equal(validateConfig({ ...good, container: mine }, {}, fakeEnv({})).container, mine);
});

test("missing publishableKey says what to pass", () => {
  assert.throws(() => validateConfig({ clientSecret: "cs" }, {}, fakeEnv()), /publishableKey is missing.*pk_test_/);
  assert.throws(() => validateConfig({ ...good, publishableKey: "  " }, {}, fakeEnv()), /publishableKey is missing/);
});

test("a secret key is refused: never use a secret key in the browser", () => {
  assert.throws(
    () => validateConfig({ ...good, publishableKey: "sk_test_123" }, {}, fakeEnv()),
    /secret key \(sk_\.\.\.\)\. Never use a secret key in the browser.*roll this secret key/,
  );
  assert.throws(() => validateConfig({ ...good, clientSecret: "sk_live_1" }, {}, fakeEnv()), /Never use a secret key/);
});

test("a key that is not a publishable key is refused", () => {
  assert.throws(() => validateConfig({ ...good, publishableKey: "abc123" }, {}, fakeEnv()), /must be a publishable key starting with 'pk_'/);
});

test("missing clientSecret explains where it comes from", () => {
  assert.throws(() => validateConfig({ publishableKey: "pk_test_1" }, {}, fakeEnv()), /clientSecret is missing.*POST \/v1\/checkout_sessions/);
});

test("container not found names the selector and how to fix it", () => {
  assert.throws(() => validateConfig(good, {}, fakeEnv({})), /container '#payment-container' was not found.*<div id="payment-container">/);
  assert.throws(() => validateConfig({ ...good, container: "#nope" }, {}, fakeEnv()), /container '#nope' was not found/);
  assert.throws(() => validateConfig({ ...good, container: "[[" }, {}, fakeEnv()), /not a valid CSS selector/);
  assert.throws(() => validateConfig({ ...good, container: 42 }, {}, fakeEnv()), TypeError);
});

test("other misuse: not a browser, bad config types", () => {
  assert.throws(() => validateConfig(good, {}, {}), /must run in a browser page/);
  assert.throws(() => validateConfig(null, {}, fakeEnv()), /needs merchantConfig as an object/);
  assert.throws(() => validateConfig({ ...good, onStatus: "x" }, {}, fakeEnv()), /onStatus must be a function/);
  assert.throws(() => validateConfig(good, "mobile", fakeEnv()), /userContext must be a plain object/);
  assert.throws(() => validateConfig({ ...good, apiBase: "javascript:alert(1)" }, {}, fakeEnv()), /apiBase/);
});

test("errors are marked as misuse and prefixed with Checkoutlab", () => {
  try {
    validateConfig({}, {}, fakeEnv());
    assert.fail("should throw");
  } catch (err) {
    assert.ok(err instanceof Error);
    assert.match(err.message, /^Checkoutlab: /);
    assert.equal(err.code, "checkoutlab_misuse");
  }
});

test("orchestratePayment rejects misuse with the same messages (and a no-op cancel)", async () => {
  const missing = orchestratePayment({ clientSecret: "cs" });
  assert.equal(typeof missing.cancel, "function");
  await assert.rejects(missing, /publishableKey is missing/);
  await assert.rejects(orchestratePayment({ ...good, publishableKey: "sk_test_1" }), /Never use a secret key in the browser/);
  await assert.rejects(orchestratePayment({ publishableKey: "pk_test_1" }), /clientSecret is missing/);
});

test("orchestratePayment rejects when the container is not in the page", async () => {
  const previous = globalThis.document;
  globalThis.document = fakeEnv({}).document;
  try {
    await assert.rejects(orchestratePayment(good), /container '#payment-container' was not found/);
  } finally {
    if (previous === undefined) delete globalThis.document;
    else globalThis.document = previous;
  }
});

test("appearance maps to --cl-* custom properties, lengths in px", () => {
  const props = Object.fromEntries(
    appearanceProperties({ colorPrimary: "#ffcc00", borderRadius: 10, fontFamily: "Georgia, serif", "--cl-gap": "8px" }),
  );
  assert.equal(props["--cl-primary"], "#ffcc00");
  assert.equal(props["--cl-radius"], "10px");
  assert.equal(props["--cl-font"], "Georgia, serif");
  assert.equal(props["--cl-gap"], "8px");
  assert.equal(props["--cl-on-primary"], "#000000"); // readable text on a light primary
  assert.equal(Object.fromEntries(appearanceProperties({ variables: { primary: "#1a1f36" } }))["--cl-on-primary"], "#ffffff");
  assert.deepEqual(appearanceProperties(undefined), []);
});

test("appearance refuses unknown names and values that could break out of a declaration", () => {
  assert.throws(() => appearanceProperties({ colourPrimary: "#fff" }), /unknown appearance variable 'colourPrimary'/);
  assert.throws(() => appearanceProperties({ colorPrimary: "red; background: url(x)" }), /not a valid CSS value/);
  assert.throws(() => appearanceProperties({ colorPrimary: "}" }), /not a valid CSS value/);
  assert.throws(() => appearanceProperties("dark"), TypeError);
});
