"""The demo store in a real browser: a shopper pays through the widget under a strict CSP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

PAY = re.compile(r"^Pay ")


def pay_button(page: Any) -> Any:
    """The form's submit button; its accessible name starts with "Pay" (not a wallet's)."""
    return page.locator('button[data-action="submit"]')


def start_checkout(page: Any, server: Any, **context: str | bool) -> None:
    response = page.goto(f"{server.url}/demo")
    assert response is not None and response.ok
    if "device" in context:
        page.select_option("#ctx-device", str(context["device"]))
    if "country" in context:
        page.select_option("#ctx-country", str(context["country"]))
    if "customer" in context:
        page.select_option("#ctx-customer", str(context["customer"]))
    if context.get("high_risk"):
        page.check("#ctx-risk")
    page.click("#checkout-button")
    pay_button(page).wait_for(state="visible", timeout=15_000)
    assert PAY.match(pay_button(page).inner_text())


def fill_card(page: Any, number: str, *, exp: str = "12 / 34", cvc: str = "123") -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry").fill(exp)
    page.get_by_label("CVC", exact=True).fill(cvc)


def session_of(page: Any, server: Any) -> dict[str, Any]:
    session_id = page.locator("body").get_attribute("data-session-id")
    with server.api() as api:
        return api.get(f"/v1/checkout_sessions/{session_id}").json()


def wait_result(page: Any, status: str) -> None:
    page.wait_for_selector(f'body[data-result="{status}"]', timeout=15_000)


def no_console_errors(page: Any, *, expected_status: str | None = None) -> None:
    """No console errors; Chromium logs an expected non-2xx answer (a 402 decline) as one."""
    errors = [
        e
        for e in page.console_errors
        if not (
            expected_status and e.startswith("Failed to load resource") and expected_status in e
        )
    ]
    assert errors == [], errors


def test_shopper_pays_with_test_card(page: Any, live_server: Any, screenshot_dir: Path) -> None:
    start_checkout(page, live_server)
    fill_card(page, "4242 4242 4242 4242")
    pay_button(page).click()
    wait_result(page, "succeeded")
    assert "Payment successful" in page.locator('[data-role="status-text"]').inner_text()
    session = session_of(page, live_server)
    assert session["status"] == "succeeded"
    assert [p["status"] for p in session["payments"]] == ["succeeded"]
    assert session["payments"][0]["card"] == {"brand": "visa", "last4": "4242"}
    page.screenshot(path=str(screenshot_dir / "paid.png"), full_page=True)
    no_console_errors(page)


def test_decline_then_retry_with_good_card(page: Any, live_server: Any) -> None:
    start_checkout(page, live_server)
    page.get_by_label("Name on card").fill("Ada Lovelace")
    fill_card(page, "4000 0000 0000 0002")
    pay_button(page).click()
    status = page.locator('[data-role="status-text"]')
    status.filter(has_text="declined").wait_for(timeout=15_000)
    # the retry keeps what was typed, except the card number
    assert page.get_by_label("Card number").input_value() == ""
    assert page.get_by_label("Name on card").input_value() == "Ada Lovelace"
    assert page.get_by_label("CVC", exact=True).input_value() == "123"
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    pay_button(page).click()
    wait_result(page, "succeeded")
    payments = session_of(page, live_server)["payments"]
    assert sorted(p["status"] for p in payments) == ["failed", "succeeded"]
    assert [p["decline_code"] for p in payments if p["status"] == "failed"] == ["card_declined"]
    no_console_errors(page, expected_status="402")


def test_high_risk_context_shows_verification_and_server_refuses_without_it(
    page: Any, live_server: Any, screenshot_dir: Path
) -> None:
    start_checkout(page, live_server, high_risk=True)
    page.get_by_label("Re-enter CVC").wait_for(state="visible")
    assert page.get_by_label("Postal code").is_visible()
    page.screenshot(path=str(screenshot_dir / "high-risk.png"), full_page=True)
    fill_card(page, "4242 4242 4242 4242")
    page.get_by_label("Re-enter CVC").fill("123")
    page.get_by_label("Address line 1").fill("1 Main Street")
    page.get_by_label("Postal code").fill("10115")
    page.locator("#cl-billing-country").select_option("DE")
    pay_button(page).click()
    wait_result(page, "succeeded")

    # The same context straight through the API: confirm without the steps is refused.
    keys = live_server.keys
    with httpx.Client(base_url=live_server.url) as http:
        session = http.post(
            "/v1/checkout_sessions",
            json={"amount": 99000, "currency": "EUR"},
            headers={"Authorization": f"Bearer {keys['secret_key']}"},
        ).json()
        public = {"Authorization": f"Bearer {keys['publishable_key']}"}
        profile = http.post(
            "/v1/payment_profile",
            json={
                "client_secret": session["client_secret"],
                "context": {"network": {"proxy": True}},
            },
            headers=public,
        ).json()
        assert profile["verification"]["cvv"] and profile["verification"]["avs"]
        refused = http.post(
            f"/v1/checkout_sessions/{session['id']}/confirm",
            json={
                "client_secret": session["client_secret"],
                "profile_token": profile["token"],
                "payment_method": {
                    "type": "card",
                    "card": {
                        "number": "4242424242424242",
                        "exp_month": 12,
                        "exp_year": 2034,
                        "cvc": "123",
                    },
                },
            },
            headers=public | {"Idempotency-Key": "no-steps"},
        )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "verification_required"
    no_console_errors(page)


def test_mobile_biometric_context_puts_wallet_and_biometric_first(
    page: Any, live_server: Any, screenshot_dir: Path
) -> None:
    start_checkout(page, live_server, device="mobile-biometric")
    first_tab = page.locator('[role="tab"]').first
    assert first_tab.get_attribute("data-method") == "apple_pay"
    assert first_tab.get_attribute("aria-selected") == "true"
    biometric = page.locator('[data-step="biometric"]')
    assert biometric.is_visible()
    page.screenshot(path=str(screenshot_dir / "mobile-biometric.png"), full_page=True)
    no_console_errors(page)


def test_three_ds_card_goes_through_the_challenge(page: Any, live_server: Any) -> None:
    start_checkout(page, live_server)
    fill_card(page, "4000 0000 0000 3220")
    pay_button(page).click()
    challenge = page.locator('[data-step="three_ds"]')
    challenge.wait_for(state="visible", timeout=15_000)
    page.locator('[data-action="three-ds-complete"]').click()
    wait_result(page, "succeeded")
    assert [p["status"] for p in session_of(page, live_server)["payments"]] == ["succeeded"]
    no_console_errors(page)


def test_pages_carry_a_strict_csp(page: Any, live_server: Any) -> None:
    response = page.goto(f"{live_server.url}/demo")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    no_console_errors(page)


@pytest.mark.parametrize(
    ("layout", "country"), [("tabs", "DE"), ("accordion", "FR"), ("list", "NL")]
)
def test_layout_screenshots(
    page: Any, live_server: Any, screenshot_dir: Path, layout: str, country: str
) -> None:
    start_checkout(page, live_server, country=country)
    root = page.locator(".cl-root")
    assert root.get_attribute("data-layout") == layout
    page.screenshot(path=str(screenshot_dir / f"layout-{layout}.png"), full_page=True)
    assert (screenshot_dir / f"layout-{layout}.png").stat().st_size > 10_000
    no_console_errors(page)
