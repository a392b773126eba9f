// One source, two loaders: checkoutlab.js as a classic <script> and as an ES module.
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";
import * as esm from "../src/checkoutlab.mjs";

const source = readFileSync(new URL("../src/checkoutlab.js", import.meta.url), "utf8");

test("as a classic script it defines window.Checkoutlab (and only that)", () => {
  const window = { console };
  window.globalThis = window;
  const context = vm.createContext(window);
  new vm.Script(source, { filename: "checkoutlab.js" }).runInContext(context);
  const api = vm.runInContext("globalThis.Checkoutlab", context);
  assert.equal(typeof api.orchestratePayment, "function");
  assert.equal(api.formatCardNumber("4242424242424242"), "4242 4242 4242 4242");
  const globals = JSON.parse(vm.runInContext("JSON.stringify(Object.keys(globalThis))", context));
  assert.deepEqual(globals.filter((k) => !["console", "globalThis"].includes(k)), ["Checkoutlab"]);
  assert.ok(Object.isFrozen(api));
});

test("it also parses as an ES module (strict mode, no top-level this)", async () => {
  await import("data:text/javascript," + encodeURIComponent(source));
  assert.match(source, /^\s*"use strict";/m);
  assert.doesNotMatch(source, /^\s*(export|import)\s/m);
});

test("checkoutlab.mjs re-exports the same functions by name", () => {
  assert.equal(esm.orchestratePayment, globalThis.Checkoutlab.orchestratePayment);
  assert.equal(esm.default, globalThis.Checkoutlab);
  for (const name of [
    "orchestratePayment", "luhnValid", "detectBrand", "formatCardNumber", "formatExpiry", "parseExpiry",
    "validateCvc", "backoffDelay", "shouldRetry", "mergeContext",
  ]) {
    assert.equal(typeof esm[name], "function", name);
  }
  assert.equal(typeof esm.version, "string");
});

test("loading twice keeps the first instance (script tag plus module import)", () => {
  const first = globalThis.Checkoutlab;
  new vm.Script(source).runInThisContext();
  assert.equal(globalThis.Checkoutlab, first);
});

test("CSP: no eval, no Function constructor, no inline handlers or style attributes", () => {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  assert.doesNotMatch(code, /\beval\s*\(/);
  assert.doesNotMatch(code, /new\s+Function\s*\(/);
  assert.doesNotMatch(code, /setTimeout\(\s*["'`]/);
  assert.doesNotMatch(code, /setAttribute\(\s*["'](style|on\w+)["']/);
  assert.doesNotMatch(code, /\.on(click|submit|input|change|load)\s*=/);
  assert.doesNotMatch(code, /\.style\.(?!setProperty)\w+\s*=/);
});
