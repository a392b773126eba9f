// Retry policy, backoff bounds, and the API client's retries / timeouts / idempotency keys.
import test from "node:test";
import assert from "node:assert/strict";
import { shouldRetry, backoffDelay, createApiClient } from "../src/checkoutlab.mjs";

const named = (name) => Object.assign(new Error(name), { name });

test("shouldRetry: network errors and timeouts retry, cancellations do not", () => {
  assert.equal(shouldRetry(new TypeError("Failed to fetch"), 1), true);
  assert.equal(shouldRetry(named("NetworkError"), 1), true);
  assert.equal(shouldRetry(named("TimeoutError"), 1), true);
  assert.equal(shouldRetry(named("AbortError"), 1), false);
  assert.equal(shouldRetry(new RangeError("bug"), 1), false);
});

test("shouldRetry: 5xx, 408 and 429 retry; 4xx and 402 declines do not", () => {
  for (const status of [500, 502, 503, 504, 408, 429]) {
    assert.equal(shouldRetry({ status }, 1), true, String(status));
  }
  for (const status of [400, 401, 402, 403, 404, 422, 501]) {
    assert.equal(shouldRetry({ status }, 1), false, String(status));
  }
});

test("shouldRetry: a 409 retries only while the same Idempotency-Key is in flight", () => {
  const conflict = (code) => ({ status: 409, body: { error: { code } } });
  assert.equal(shouldRetry(conflict("idempotency_request_in_progress"), 1), true);
  assert.equal(shouldRetry(conflict("idempotency_retry"), 1), true);
  assert.equal(shouldRetry(conflict("idempotency_key_reused"), 1), false);
  assert.equal(shouldRetry({ status: 409, code: "idempotency_request_in_progress" }, 1), true);
});

test("shouldRetry stops after maxAttempts", () => {
  assert.equal(shouldRetry({ status: 503 }, 3), true);
  assert.equal(shouldRetry({ status: 503 }, 4), false);
  assert.equal(shouldRetry({ status: 503 }, 2, { maxAttempts: 2 }), false);
  assert.equal(shouldRetry(new TypeError("x"), 4), false);
});

test("backoffDelay doubles per attempt, with jitter in [cap/2, cap]", () => {
  const low = { random: () => 0 };
  const high = { random: () => 1 };
  assert.equal(backoffDelay(1, low), 250);
  assert.equal(backoffDelay(1, high), 500);
  assert.equal(backoffDelay(2, high), 1000);
  assert.equal(backoffDelay(3, high), 2000);
  assert.equal(backoffDelay(3, low), 1000);
  for (let attempt = 1; attempt <= 12; attempt++) {
    for (let i = 0; i < 50; i++) {
      const cap = Math.min(8000, 500 * 2 ** (attempt - 1));
      const delay = backoffDelay(attempt);
      assert.ok(delay >= cap / 2 && delay <= cap, `attempt ${attempt}: ${delay}`);
    }
  }
});

test("backoffDelay honours base and max, and tolerates odd input", () => {
  assert.equal(backoffDelay(10, { base: 100, max: 1000, random: () => 1 }), 1000);
  assert.equal(backoffDelay(1, { base: 100, max: 1000, random: () => 1 }), 100);
  assert.equal(backoffDelay(0, { random: () => 1 }), 500);
  assert.equal(backoffDelay(NaN, { random: () => 1 }), 500);
  assert.equal(backoffDelay(1, { random: () => 7 }), 500); // clamped
});

/** A fetch that answers from a script: each entry is a status, an Error, or "hang". */
function scriptedFetch(script) {
  const calls = [];
  const fetch = (url, init) => {
    calls.push({ url, init, headers: init.headers, body: JSON.parse(init.body) });
    const step = script[Math.min(calls.length - 1, script.length - 1)];
    if (step instanceof Error) return Promise.reject(step);
    if (step === "hang") {
      return new Promise((_, reject) =>
        init.signal.addEventListener("abort", () => reject(named("AbortError"))),
      );
    }
    const body = step === 402
      ? { error: { type: "card_error", code: "card_declined", message: "declined", payment: { id: "pay_1" } } }
      : step >= 400
        ? { error: { type: "api_error", code: "internal_error", message: "boom" } }
        : { id: "pay_1", status: "succeeded" };
    return Promise.resolve({
      status: step,
      headers: new Map(),
      text: () => Promise.resolve(JSON.stringify(body)),
    });
  };
  return { fetch, calls };
}

const noSleep = () => Promise.resolve();

test("client retries 503 and network errors, with the same Idempotency-Key each time", async () => {
  const { fetch, calls } = scriptedFetch([503, new TypeError("Failed to fetch"), 200]);
  const retries = [];
  const api = createApiClient({
    publishableKey: "pk_test_1",
    apiBase: "https://api.example/",
    fetch,
    sleep: noSleep,
    onRetry: (info) => retries.push(info.attempt),
  });
  const res = await api.request("/v1/checkout_sessions/cs_1/confirm", { a: 1 }, { idempotencyKey: "key-1" });
  assert.equal(res.ok, true);
  assert.equal(res.body.status, "succeeded");
  assert.equal(calls.length, 3);
  assert.deepEqual(retries, [1, 2]);
  for (const call of calls) {
    assert.equal(call.url, "https://api.example/v1/checkout_sessions/cs_1/confirm");
    assert.equal(call.headers["Idempotency-Key"], "key-1");
    assert.equal(call.headers.Authorization, "Bearer pk_test_1");
    assert.equal(call.init.method, "POST");
    assert.deepEqual(call.body, { a: 1 });
  }
});

test("client does not retry a 402 decline", async () => {
  const { fetch, calls } = scriptedFetch([402, 200]);
  const api = createApiClient({ publishableKey: "pk_test_1", fetch, sleep: noSleep });
  const res = await api.request("/v1/x", {}, { idempotencyKey: "k" });
  assert.equal(res.status, 402);
  assert.equal(res.ok, false);
  assert.equal(res.body.error.payment.id, "pay_1");
  assert.equal(calls.length, 1);
});

test("client gives up after maxAttempts and returns the last answer", async () => {
  const { fetch, calls } = scriptedFetch([500]);
  const delays = [];
  const api = createApiClient({
    publishableKey: "pk_test_1",
    fetch,
    maxAttempts: 3,
    random: () => 1,
    sleep: (ms) => (delays.push(ms), Promise.resolve()),
  });
  const res = await api.request("/v1/x", {});
  assert.equal(res.status, 500);
  assert.equal(calls.length, 3);
  assert.deepEqual(delays, [500, 1000]);
});

test("client times out a hanging request with AbortController, then rejects TimeoutError", async () => {
  const { fetch, calls } = scriptedFetch(["hang"]);
  const api = createApiClient({ publishableKey: "pk_test_1", fetch, timeoutMs: 20, maxAttempts: 2, sleep: noSleep });
  await assert.rejects(api.request("/v1/x", {}), { name: "TimeoutError" });
  assert.equal(calls.length, 2);
});

test("client with retry:false (events) makes exactly one attempt", async () => {
  const { fetch, calls } = scriptedFetch([new TypeError("offline")]);
  const api = createApiClient({ publishableKey: "pk_test_1", fetch, sleep: noSleep });
  await assert.rejects(api.request("/v1/events", { events: [] }, { retry: false, keepalive: true }), {
    name: "NetworkError",
  });
  assert.equal(calls.length, 1);
  assert.equal(calls[0].init.keepalive, true);
});

test("client stops at once when the page cancels", async () => {
  const { fetch, calls } = scriptedFetch(["hang"]);
  const api = createApiClient({ publishableKey: "pk_test_1", fetch, sleep: noSleep });
  const controller = new AbortController();
  const pending = api.request("/v1/x", {}, { signal: controller.signal });
  controller.abort();
  await assert.rejects(pending, { name: "AbortError" });
  assert.equal(calls.length, 1);
});

test("client turns a non-JSON answer (a proxy's error page) into the error shape", async () => {
  const fetch = () =>
    Promise.resolve({ status: 200, headers: new Map(), text: () => Promise.resolve("<html>") });
  const api = createApiClient({ publishableKey: "pk_test_1", fetch, sleep: noSleep, maxAttempts: 1 });
  const res = await api.request("/v1/x", {});
  assert.equal(res.ok, false);
  assert.equal(res.status, 502);
  assert.equal(res.body.error.code, "invalid_response");
});
