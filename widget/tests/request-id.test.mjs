// One request id per checkout, sent as X-Request-Id on every API call of that checkout and as
// request_id in its events, so one checkout can be followed across API, learner and gateway.
import test from "node:test";
import assert from "node:assert/strict";
import { orchestratePayment, newRequestId, createApiClient } from "../src/checkoutlab.mjs";
import { installPage, fakeApi, until, shadowOf } from "./harness.mjs";

const SAFE = /^[A-Za-z0-9-]{1,64}$/;

test("newRequestId: a UUID from crypto.randomUUID, else 32 hex digits, else null", () => {
  const id = newRequestId();
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(newRequestId(), id);
  const noUUID = { crypto: { getRandomValues: (a) => globalThis.crypto.getRandomValues(a) } };
  const hex = newRequestId(noUUID);
  assert.match(hex, /^[0-9a-f]{32}$/);
  assert.match(hex, SAFE);
  assert.equal(newRequestId({}), null);
  // An id that a card-number redactor would take for a PAN (12+ digits, dashes allowed) is
  // drawn again, so the trail never gets cut by redaction.
  const draws = ["12345678-9012-4345-8678-9abcdef01234", "4242abcd-ab12-4abc-8abc-abcdefabcdef"];
  assert.equal(newRequestId({ crypto: { randomUUID: () => draws.shift() } }), "4242abcd-ab12-4abc-8abc-abcdefabcdef");
  for (let i = 0; i < 200; i++) assert.doesNotMatch(newRequestId(noUUID), /\d(?:-?\d){11}/);
  assert.equal(newRequestId({ crypto: { randomUUID: () => { throw new Error("insecure context"); } } }), null);
});

test("the API client sends X-Request-Id only when it is a safe value", async () => {
  const seen = [];
  const fetch = async (url, init) => {
    seen.push(init.headers["X-Request-Id"]);
    return { status: 200, headers: new Map(), text: async () => "{}" };
  };
  await createApiClient({ publishableKey: "pk_test_1", fetch, requestId: "abc-123" }).request("/v1/x", {});
  await createApiClient({ publishableKey: "pk_test_1", fetch }).request("/v1/x", {});
  await createApiClient({ publishableKey: "pk_test_1", fetch, requestId: "x".repeat(65) }).request("/v1/x", {});
  await createApiClient({ publishableKey: "pk_test_1", fetch, requestId: "a\r\nSet-Cookie: x" }).request("/v1/x", {});
  assert.deepEqual(seen, ["abc-123", undefined, undefined, undefined]);
});

/** One full sandbox checkout with a 3-D Secure challenge: profile, elements, events, confirm,
 *  challenge. Returns the recorded calls and the promise's requestId. */
async function checkout(t) {
  const page = installPage();
  t.after(page.restore);
  const requiresAction = [200, { id: "pay_1", status: "requires_action", next_action: { type: "three_ds_challenge", challenge_id: "tds_1" } }];
  const api = fakeApi({ confirm: [requiresAction] });
  globalThis.fetch = api.fetch;
  const statuses = [];
  const promise = orchestratePayment({ publishableKey: "pk_test_1", clientSecret: "cs_1_secret_x", onStatus: (s) => statuses.push(s) });
  await until(() => statuses.includes("ready"), { message: "ready" });
  const root = shadowOf(page.container);
  root.querySelector('[name="card_number"]').value = "4000 0000 0000 3220";
  root.querySelector('[name="exp"]').value = "12 / 34";
  root.querySelector('[name="cvc"]').value = "123";
  root.querySelector('[data-action="submit"]').click();
  await until(() => statuses.includes("requires_action"), { message: "challenge" });
  root.querySelector('[data-action="three-ds-complete"]').click();
  assert.equal((await promise).status, "succeeded");
  page.restore();
  return { calls: api.calls, requestId: promise.requestId };
}

test("every API call of one checkout carries the same X-Request-Id; the next checkout gets another", async (t) => {
  const first = await checkout(t);
  const paths = new Set(first.calls.map((c) => c.path.replace(/cs_1\/.*\/challenge$/, "cs_1/challenge")));
  for (const path of ["/v1/payment_profile", "/v1/elements", "/v1/events", "/v1/checkout_sessions/cs_1/confirm", "/v1/checkout_sessions/cs_1/challenge"]) {
    assert.ok(paths.has(path), path);
  }
  assert.match(first.requestId, SAFE);
  for (const call of first.calls) assert.equal(call.headers["X-Request-Id"], first.requestId, call.path);

  // Events also carry it in their properties, for the learner's side of the story.
  const events = first.calls.filter((c) => c.path === "/v1/events").flatMap((c) => c.body.events);
  assert.ok(events.some((e) => e.type === "exposure") && events.some((e) => e.type === "interaction"));
  for (const event of events) assert.equal(event.properties.request_id, first.requestId, event.type);

  const second = await checkout(t);
  assert.notEqual(second.requestId, first.requestId);
  for (const call of second.calls) assert.equal(call.headers["X-Request-Id"], second.requestId, call.path);
});
