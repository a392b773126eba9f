// Demo store page: the merchant's own front-end code, as in the README's merchant guide.
// 1. ask the merchant backend (/demo/checkout) to create a checkout session;
// 2. call Checkoutlab.orchestratePayment with the publishable key and the client secret.
"use strict";

(function () {
  const CONTEXTS = {
    desktop: { device: { type: "desktop" } },
    "mobile-biometric": {
      device: { type: "mobile", os: "ios", biometric: true, apple_pay: true, google_pay: false },
    },
    "mobile-android": {
      device: { type: "mobile", os: "android", biometric: false, apple_pay: false, google_pay: true },
    },
  };

  function userContext(form) {
    const data = new FormData(form);
    const context = structuredClone(CONTEXTS[data.get("device")] || CONTEXTS.desktop);
    context.country = data.get("country");
    context.locale = data.get("locale");
    if (data.get("high_risk")) context.network = { proxy: true };
    return context;
  }

  async function createSession(items, customer) {
    const response = await fetch("/demo/checkout", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ items, customer: customer || null }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : "could not create session");
    return body;
  }

  async function checkout(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const result = document.getElementById("store-result");
    const button = document.getElementById("checkout-button");
    const items = Array.from(document.querySelectorAll('input[name="sku"]:checked')).map(
      (box) => ({ sku: box.value, quantity: 1 }),
    );
    if (items.length === 0) {
      result.textContent = "Choose at least one product.";
      return;
    }
    button.disabled = true;
    result.textContent = "";
    try {
      const session = await createSession(items, new FormData(form).get("customer"));
      document.body.dataset.sessionId = session.session_id;
      const outcome = await window.Checkoutlab.orchestratePayment(
        {
          publishableKey: document.body.dataset.publishableKey,
          clientSecret: session.client_secret,
          container: "#payment-container",
          locale: new FormData(form).get("locale"),
          onStatus: (status) => { document.body.dataset.paymentStatus = status; },
        },
        userContext(form),
      );
      result.textContent = outcome.status === "succeeded"
        ? "Thank you! Your order is paid."
        : `Payment ${outcome.status}${outcome.reason ? ": " + outcome.reason : ""}`;
      document.body.dataset.result = outcome.status;
    } catch (error) {
      result.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("context-form").addEventListener("submit", checkout);
  });
})();
