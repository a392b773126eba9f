"""The growth dashboard in a real browser under the strict CSP: sign in, create an experiment
through the form, start it, drive shoppers through the API, read the results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from checkoutlab.experiments import service as experiments
from checkoutlab.experiments.cli import simulate_shoppers

KEY = "dash_e2e"


def no_console_errors(page: Any) -> None:
    """A CSP violation (inline style or script) would show up here as a console error."""
    assert page.console_errors == [], page.console_errors


def sign_in(page: Any, server: Any) -> None:
    page.goto(f"{server.url}/dashboard")
    assert page.url.startswith(f"{server.url}/dashboard/login")
    page.fill("#merchant", server.keys["merchant_id"])
    page.fill("#email", server.keys["dashboard_email"])
    page.fill("#password", server.keys["dashboard_password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/dashboard")


def drive_shoppers(server: Any, sessions: int) -> dict[str, Any]:
    keys = server.keys
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return simulate_shoppers(
            client,
            secret_headers={"Authorization": f"Bearer {keys['secret_key']}"},
            public_headers={"Authorization": f"Bearer {keys['publishable_key']}"},
            sessions=sessions,
            effects={"list": 0.3},
            base_rate=0.3,
            seed=7,
            key=KEY,
            # the live server rate-limits browser routes per IP (30/s): pace the shoppers
            on_step=lambda: time.sleep(0.12),
        )


def test_growth_team_runs_an_experiment(page: Any, live_server: Any, screenshot_dir: Path) -> None:
    url = live_server.url
    try:
        page.goto(f"{url}/dashboard/login?merchant={live_server.keys['merchant_id']}")
        page.screenshot(path=str(screenshot_dir / "dashboard-login.png"))
        page.fill("#password", "not the password")
        page.fill("#email", live_server.keys["dashboard_email"])
        page.get_by_role("button", name="Sign in").click()
        assert "is not right" in page.locator("#login-error").inner_text()
        page.console_errors.clear()  # Chromium logs the 401 answer of the failed sign-in

        sign_in(page, live_server)
        assert page.locator('tr[data-key="list_vs_tabs"]').is_visible()

        # the form refuses invalid input and says where
        page.get_by_role("link", name="New experiment").first.click()
        page.fill("#key", "Bad Key")
        page.fill('input[name="v1_key"]', "list")
        page.fill('input[name="v1_weight"]', "-1")
        page.fill('input[name="v1_primary_color"]', "green")
        page.get_by_role("button", name="Create draft").click()
        assert "The experiment was not saved" in page.locator("#form-errors").inner_text()
        assert "positive" in page.locator("#error-v1_weight").inner_text()
        assert "hex" in page.locator("#error-v1_primary_color").inner_text()
        assert page.locator("#error-key").is_visible()
        page.console_errors.clear()  # the 400 answer
        page.screenshot(path=str(screenshot_dir / "dashboard-form-errors.png"), full_page=True)

        page.fill("#key", KEY)
        page.fill("#hypothesis", "A single list of methods converts better than tabs.")
        page.fill('input[name="v1_weight"]', "1")
        page.fill('input[name="v1_primary_color"]', "#0a7d5a")
        page.select_option('select[name="v1_layout"]', "list")
        page.get_by_role("button", name="Create draft").click()
        page.wait_for_url(f"{url}/dashboard/experiments/{KEY}?notice=created")
        assert page.locator("#status").text_content() == "draft"

        page.get_by_role("button", name="Start").click()
        page.wait_for_url(f"{url}/dashboard/experiments/{KEY}?notice=started")
        assert page.locator("#status").text_content() == "running"

        counts = drive_shoppers(live_server, 60)
        assert set(counts) == {"control", "list"}, counts

        page.goto(f"{url}/dashboard/experiments/{KEY}")
        conversion = page.locator('figure[data-metric="conversion"]')
        bar = conversion.locator('g[data-variant="list"] rect.interval-bar')
        assert bar.count() == 1 and float(bar.get_attribute("width")) > 1
        assert page.locator("#cumulative-chart polyline").count() == 2
        units = page.locator("#variants tbody tr")
        assert units.count() == 2
        assert page.locator("#srm-warning").count() == 0
        page.screenshot(path=str(screenshot_dir / "dashboard-results.png"), full_page=True)

        # Changing weights mid-flight makes the traffic mismatch them: the page must say so.
        page.get_by_role("link", name="Edit").click()
        assert page.locator("#targeting").is_disabled()
        page.fill('input[name="v1_weight"]', "9")
        page.get_by_role("button", name="Save changes").click()
        page.wait_for_url(f"{url}/dashboard/experiments/{KEY}?notice=saved")
        srm = page.locator("#srm-warning")
        assert srm.is_visible() and "Sample ratio mismatch" in srm.inner_text()
        srm.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot_dir / "dashboard-results-srm.png"), full_page=True)

        page.goto(f"{url}/dashboard")
        row = page.locator(f'tr[data-key="{KEY}"]')
        assert (
            "running" in row.text_content()
            and row.locator(".badge-danger", has_text="SRM").count() == 1
        )
        assert row.locator(".lift").count() == 1  # headline lift of the primary metric
        page.screenshot(path=str(screenshot_dir / "dashboard-list.png"), full_page=True)

        # ship the control: stops the experiment and leaves the demo's default form as it is
        page.goto(f"{url}/dashboard/experiments/{KEY}")
        page.select_option("#ship-variant", "control")
        page.get_by_role("button", name="Ship as default").click()
        page.wait_for_url(f"{url}/dashboard/experiments/{KEY}?notice=shipped")
        assert page.locator("#status").text_content() == "shipped"

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{url}/dashboard/login")
        page.goto(f"{url}/dashboard")
        assert page.url.startswith(f"{url}/dashboard/login")
        no_console_errors(page)
    finally:  # other browser tests expect no experiment randomising the demo's layout
        with live_server.database.session() as db:
            for experiment in experiments.list_(
                db=db, merchant_id=live_server.keys["merchant_id"], status="running"
            ):
                experiments.stop(db=db, experiment=experiment)
