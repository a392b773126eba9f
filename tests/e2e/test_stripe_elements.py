"""Stripe mode in a real browser: the card Element mounts in the light DOM through the widget's
slot, and confirm carries only the PaymentMethod id.

No network: Stripe.js is replaced by a test double served from the page's own origin (it
implements the few calls the widget makes and, like Stripe.js, refuses to mount inside a
shadow root). The merchant page is served by Playwright's router with the platform's strict
CSP; profile and elements come from the live server. Confirm is intercepted, so that this
test checks what the browser sends, independently of the server's gateway settings.
"""

from __future__ import annotations

import json
from typing import Any

FAKE_STRIPE_JS = """
"use strict";
// Test double of Stripe.js v3 (only what the Checkout Lab widget calls).
window.Stripe = function (publishableKey) {
  window.__stripeCalls = [["Stripe", publishableKey]];
  return {
    elements: function (options) {
      window.__stripeCalls.push(["elements", options]);
      return {
        create: function (type) {
          window.__stripeCalls.push(["create", type]);
          return {
            mount: function (target) {
              if (target.getRootNode() !== document) {
                throw new Error(
                  "IntegrationError: Elements cannot be mounted in a ShadowRoot. " +
                    "Please mount in the Light DOM."
                );
              }
              const frame = document.createElement("iframe");
              frame.title = "Secure card payment input frame";
              frame.setAttribute("height", "40");
              target.appendChild(frame);
              window.__stripeTarget = target;
            },
            on: function () {},
            clear: function () {},
            focus: function () {},
            update: function () {},
          };
        },
      };
    },
    createPaymentMethod: function (data) {
      const details = Object.keys(data.billing_details);
      window.__stripeCalls.push(["createPaymentMethod", data.type, details]);
      return Promise.resolve({ paymentMethod: { id: "pm_e2e_fake", type: "card" } });
    },
    handleNextAction: function () {
      return Promise.resolve({});
    },
  };
};
"""

SHOP_JS = """
"use strict";
document.addEventListener("DOMContentLoaded", async () => {
  const body = document.body;
  const promise = window.Checkoutlab.orchestratePayment({
    publishableKey: body.dataset.publishableKey,
    clientSecret: body.dataset.clientSecret,
    stripe: { publishableKey: "pk_test_e2eStripeKey" },
    onStatus: (status) => { body.dataset.paymentStatus = status; },
  });
  body.dataset.requestId = promise.requestId;
  const outcome = await promise;
  body.dataset.result = outcome.status;
});
"""

SHOP_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stripe mode shop</title>
<script src="/e2e-stripe/stripe.js"></script>
<script src="/widget/checkoutlab.js"></script>
<script src="/e2e-stripe/shop.js"></script>
</head>
<body data-publishable-key="{pk}" data-client-secret="{secret}">
<div id="payment-container"></div>
</body></html>"""

CSP = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"


def test_stripe_mode_mounts_card_element_and_confirms_with_token_only(
    page: Any, live_server: Any
) -> None:
    with live_server.api() as api:
        session = api.post("/v1/checkout_sessions", json={"amount": 4480, "currency": "EUR"})
        session.raise_for_status()
    secret = session.json()["client_secret"]
    base = live_server.url

    def serve(body: str, content_type: str) -> Any:
        return lambda route: route.fulfill(
            status=200,
            body=body,
            headers={"Content-Type": content_type, "Content-Security-Policy": CSP},
        )

    html = SHOP_HTML.format(pk=live_server.keys["publishable_key"], secret=secret)
    page.route(f"{base}/e2e-stripe/shop", serve(html, "text/html; charset=utf-8"))
    page.route(f"{base}/e2e-stripe/stripe.js", serve(FAKE_STRIPE_JS, "text/javascript"))
    page.route(f"{base}/e2e-stripe/shop.js", serve(SHOP_JS, "text/javascript"))

    confirms: list[dict[str, Any]] = []

    def confirm(route: Any) -> None:
        request = route.request
        confirms.append({"body": json.loads(request.post_data), "headers": request.headers})
        route.fulfill(
            status=200,
            content_type="application/json",
            body=json.dumps(
                {"id": "pay_e2e", "object": "payment", "status": "succeeded", "card": None}
            ),
        )

    page.route("**/v1/checkout_sessions/*/confirm", confirm)
    request_ids: dict[str, str | None] = {}  # API path → its X-Request-Id

    def record(request: Any) -> None:
        if "/v1/" in request.url:
            request_ids[request.url.split("?")[0]] = request.headers.get("x-request-id")

    page.on("request", record)

    page.goto(f"{base}/e2e-stripe/shop")
    page.wait_for_selector('body[data-payment-status="ready"]', timeout=15_000)

    # The Element's mount point is in the light DOM and shown by the slot in the card panel.
    placement = page.evaluate(
        """() => {
          const target = window.__stripeTarget;
          const slot = target && target.assignedSlot;
          return {
            light: target.getRootNode() === document,
            slotInCard: !!(slot && slot.closest(".cl-card")),
            height: target.getBoundingClientRect().height,
            cardInputs: document.querySelector("checkoutlab-payment").shadowRoot
              .querySelectorAll('[name="card_number"], [name="exp"], [name="cvc"]').length,
          };
        }"""
    )
    assert placement["light"] and placement["slotInCard"], placement
    assert placement["cardInputs"] == 0  # the widget's own card inputs are gone
    assert placement["height"] > 30  # framed and visible inside the form

    page.locator('button[data-action="submit"]').click()
    page.wait_for_selector('body[data-result="succeeded"]', timeout=15_000)

    assert len(confirms) == 1
    body = confirms[0]["body"]
    assert body["payment_method"] == {"type": "card", "token": "pm_e2e_fake"}
    assert "card" not in body["payment_method"]
    calls = page.evaluate("window.__stripeCalls")
    assert calls[0] == ["Stripe", "pk_test_e2eStripeKey"]
    assert calls[-1][0] == "createPaymentMethod"

    # One request id for the whole checkout, on every API call.
    request_id = page.locator("body").get_attribute("data-request-id")
    assert request_id and len(request_id) <= 64
    assert confirms[0]["headers"].get("x-request-id") == request_id
    assert set(request_ids.values()) == {request_id}
    assert any(k.endswith("/v1/payment_profile") for k in request_ids)
    assert page.console_errors == [], page.console_errors
