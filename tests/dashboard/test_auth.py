"""Sign-in, sessions, cookies, CSRF and origin checks of the dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from checkoutlab.api.app import create_app
from checkoutlab.dashboard import auth
from checkoutlab.dashboard.models import DashboardSession
from checkoutlab.errors import Conflict, InvalidRequest

from .conftest import ORIGIN, Dashboard, Member


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/new", "/dashboard/experiments/x"])
def test_pages_redirect_to_sign_in(dash: Dashboard, path: str) -> None:
    response = dash.get(path)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/dashboard/login")
    if path != "/dashboard":
        assert f"next={path}" in location
    assert response.headers["cache-control"] == "no-store"


def test_sign_in_sets_a_session_cookie_and_shows_the_list(dash: Dashboard, member: Member) -> None:
    response = dash.login(member)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(auth.COOKIE + "=")
    )
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "secure" not in lowered  # a test server on plain http
    page = dash.get("/dashboard")
    assert page.status_code == 200 and member.email in page.text
    assert "Experiments" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_next_parameter_returns_to_the_page_and_refuses_other_sites(
    dash: Dashboard, member: Member
) -> None:
    page = dash.get("/dashboard/login?next=https://evil.example/")
    assert 'name="next" value="/dashboard"' in page.text
    page = dash.get("/dashboard/login?next=/dashboard/new")
    assert 'name="next" value="/dashboard/new"' in page.text


def test_wrong_password_unknown_email_and_wrong_merchant_get_one_answer(
    dash: Dashboard, member: Member, make_member: Any
) -> None:
    other = make_member("someone@else.example")
    attempts = [
        dash.login(member, password="not the password"),
        dash.login(Member(member.merchant_id, "nobody@shop.example")),
        dash.login(Member(other.merchant_id, member.email)),  # right e-mail, other merchant
    ]
    for response in attempts:
        assert response.status_code == 401
        assert "The merchant, e-mail or password is not right." in response.text
        assert not any(
            c.startswith(auth.COOKIE + "=") for c in response.headers.get_list("set-cookie")
        )
    assert dash.get("/dashboard").status_code == 303


def test_failed_sign_ins_are_throttled_per_account(dash: Dashboard, member: Member) -> None:
    for _ in range(10):
        assert dash.login(member, password="wrong password!").status_code == 401
    blocked = dash.login(member)  # even the right password, until the window passes
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text


def test_sign_in_form_needs_its_token_and_this_origin(dash: Dashboard, member: Member) -> None:
    body = {"merchant": member.merchant_id, "email": member.email, "password": member.password}
    dash.get("/dashboard/login")
    assert (
        dash.post("/dashboard/login", body | {"login_token": "forged"}, csrf=False).status_code
        == 403
    )
    page = dash.get("/dashboard/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    evil = dash.post(
        "/dashboard/login",
        body | {"login_token": token},
        csrf=False,
        headers={"Origin": "https://evil.example"},
    )
    assert evil.status_code == 403


def test_logout_ends_the_session_everywhere(signed_in: Dashboard, database: Any) -> None:
    cookie = signed_in.client.cookies.get(auth.COOKIE)
    assert cookie
    response = signed_in.post("/dashboard/logout")
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/login"
    with database.session() as db:
        assert db.query(DashboardSession).count() == 0
    # the old cookie, replayed, no longer signs anyone in
    signed_in.client.cookies.set(auth.COOKIE, cookie)
    assert signed_in.get("/dashboard").status_code == 303


def test_expired_session_is_refused(signed_in: Dashboard, database: Any) -> None:
    from datetime import timedelta

    from checkoutlab.db import utcnow

    with database.session() as db:
        for row in db.query(DashboardSession):
            row.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
    assert signed_in.get("/dashboard").status_code == 303


@pytest.mark.parametrize(
    ("token", "headers"),
    [
        (None, {}),  # no token in the form
        ("wrong-token", {}),
        ("__valid__", {"Origin": "https://evil.example"}),
        ("__valid__", {"Origin": ""}),  # neither Origin nor Referer
    ],
)
def test_posts_without_valid_csrf_or_from_elsewhere_are_403(
    signed_in: Dashboard, token: str | None, headers: dict[str, str]
) -> None:
    form = {"key": "csrf_probe", "v0_key": "a", "v1_key": "b", "control": "0"}
    if token is not None:
        form["csrf_token"] = signed_in.csrf if token == "__valid__" else token
    if headers.get("Origin") == "":
        response = signed_in.client.post(
            "/dashboard/experiments", data=form, follow_redirects=False
        )
    else:
        response = signed_in.post("/dashboard/experiments", form, csrf=False, headers=headers)
    assert response.status_code == 403, response.text
    assert signed_in.get("/dashboard/experiments/csrf_probe").status_code == 404


def test_referer_of_this_site_is_accepted_when_origin_is_absent(signed_in: Dashboard) -> None:
    form = {
        "key": "via_referer",
        "v0_key": "a",
        "v1_key": "b",
        "control": "0",
        "csrf_token": signed_in.csrf,
    }
    response = signed_in.client.post(
        "/dashboard/experiments",
        data=form,
        follow_redirects=False,
        headers={"Referer": f"{ORIGIN}/dashboard/new"},
    )
    assert response.status_code == 303


def _production(settings: Any, **update: Any) -> Any:
    """Production settings an app starts with (no sandbox gateway there)."""
    from pydantic import SecretStr

    return settings.model_copy(
        update={
            "environment": "production",
            "gateway": "stripe",
            "stripe_api_key": SecretStr("sk_test_x"),
            "metrics_token": SecretStr("metrics-token"),
        }
        | update
    )


def test_production_cookies_are_secure_with_host_prefix(settings: Any, database: Any) -> None:
    with TestClient(create_app(_production(settings), database=database)) as client:
        response = client.get("/dashboard/login")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"__Host-{auth.LOGIN_COOKIE}=")
    assert "secure" in cookie.lower() and "path=/" in cookie.lower()
    assert "domain" not in cookie.lower()


def test_add_user_validates_and_refuses_duplicates(database: Any, member: Member) -> None:
    with database.session() as db:
        with pytest.raises(Conflict):
            auth.add_user(
                db=db,
                merchant_id=member.merchant_id,
                email=member.email.upper(),
                password="another long password",
            )
        with pytest.raises(InvalidRequest, match="at least 12"):
            auth.add_user(
                db=db, merchant_id=member.merchant_id, email="a@b.example", password="short"
            )
        with pytest.raises(InvalidRequest, match="e-mail"):
            auth.add_user(
                db=db,
                merchant_id=member.merchant_id,
                email="not-an-email",
                password="long enough password",
            )
        user = auth.get_user(db=db, merchant_id=member.merchant_id, email=member.email)
        assert user is not None and user.password_hash.startswith("$argon2id$")
        assert member.password not in user.password_hash


def test_over_https_the_whole_flow_uses_secure_host_cookies(app: Any, member: Member) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        dash = Dashboard(client, origin="https://testserver")
        response = dash.login(member)
        assert response.status_code == 303
        cookie = next(
            c
            for c in response.headers.get_list("set-cookie")
            if c.startswith(f"__Host-{auth.COOKIE}=")
        )
        assert "secure" in cookie.lower() and "httponly" in cookie.lower()
        assert dash.get("/dashboard").status_code == 200
        # an http page of the same host is another origin
        downgraded = dash.post("/dashboard/logout", headers={"Origin": "http://testserver"})
        assert downgraded.status_code == 403
        assert dash.post("/dashboard/logout").status_code == 303


def test_behind_a_trusted_proxy_forwarded_https_makes_cookies_secure(
    settings: Any, database: Any
) -> None:
    proxied = settings.model_copy(update={"trust_proxy": True})
    with TestClient(create_app(proxied, database=database)) as client:
        forwarded = client.get("/dashboard/login", headers={"X-Forwarded-Proto": "https"})
        plain = client.get("/dashboard/login")
    assert forwarded.headers["set-cookie"].startswith(f"__Host-{auth.LOGIN_COOKIE}=")
    assert plain.headers["set-cookie"].startswith(f"{auth.LOGIN_COOKIE}=")


def _login_form(dash: Dashboard, member: Member, password: str) -> tuple[dict[str, str], str]:
    page = dash.get(f"/dashboard/login?merchant={member.merchant_id}")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    form = {
        "merchant": member.merchant_id,
        "email": member.email,
        "password": password,
        "login_token": token,
    }
    return form, f"{auth.LOGIN_COOKIE}={token}"


def test_a_concurrent_burst_of_wrong_passwords_stays_within_the_limit(
    dash: Dashboard, member: Member
) -> None:
    """Counted before the (slow) hash: 30 guesses at once get at most 10 verifications."""
    from concurrent.futures import ThreadPoolExecutor

    form, cookie = _login_form(dash, member, "wrong password!")

    def attempt(_: int) -> int:
        return dash.client.post(
            "/dashboard/login",
            data=form,
            headers={"Origin": ORIGIN, "Cookie": cookie},
            follow_redirects=False,
        ).status_code

    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(attempt, range(30)))
    assert set(statuses) <= {401, 429, 503}, statuses
    # every attempt that got past the limiter (verified: 401, or turned away busy: 503) counted
    assert statuses.count(401) + statuses.count(503) <= 10, statuses
    assert statuses.count(429) >= 20, statuses
    assert dash.login(member).status_code == 429  # the right password too, until it passes


def test_verifications_beyond_the_cap_answer_503(
    dash: Dashboard, member: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setattr(auth, "_verify_slots", threading.BoundedSemaphore(1))
    monkeypatch.setattr(auth, "VERIFICATION_WAIT_SECONDS", 0.05)
    assert auth._verify_slots.acquire(blocking=False)  # another sign-in is verifying
    try:
        busy = dash.login(member)
    finally:
        auth._verify_slots.release()
    assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
    assert "Too many sign-ins at once" in busy.text
    assert dash.login(member).status_code == 303


def test_successful_sign_ins_do_not_lock_the_member_out(dash: Dashboard, member: Member) -> None:
    for _ in range(12):  # more than the account's limit of attempts
        assert dash.login(member).status_code == 303
        dash.client.cookies.clear()


def test_memory_rate_limit_storage_is_refused_for_several_production_workers() -> None:
    from checkoutlab.config import Settings

    common = {"secret_key": "x" * 40, "metrics_token": "t" * 32}
    with pytest.raises(ValueError, match="CHECKOUTLAB_RATE_LIMIT_STORAGE"):
        Settings(environment="production", api_workers=4, **common)
    Settings(environment="production", api_workers=1, **common)
    Settings(environment="test", api_workers=4, **common)
    Settings(
        environment="production",
        api_workers=4,
        rate_limit_storage="redis://127.0.0.1:6379",
        **common,
    )
    one = Settings(environment="production", **common)
    with pytest.raises(ValueError, match="each worker would keep its own counts"):
        one.check_shared_rate_limit_storage(2)  # `checkoutlab serve --workers 2`


@pytest.mark.parametrize(
    "hostile",
    [
        "//evil.example",
        "/dashboard//evil.example",
        "/dashboard//x",
        "https://evil.example",
        "/dashboard/\\evil.example",
        "/\\evil.example",
        "/dashboard.evil.example",
        "/dashboard/\t/evil.example",
        "/dashboard@evil.example",
        "javascript:alert(1)",
    ],
)
def test_sign_in_never_redirects_outside_the_dashboard(
    dash: Dashboard, member: Member, hostile: str
) -> None:
    form, _ = _login_form(dash, member, member.password)
    response = dash.post("/dashboard/login", form | {"next": hostile}, csrf=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard"


def test_sign_in_returns_to_a_dashboard_page(dash: Dashboard, member: Member) -> None:
    form, _ = _login_form(dash, member, member.password)
    response = dash.post("/dashboard/login", form | {"next": "/dashboard/new"}, csrf=False)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/new"


def _login_behind_tls(client: TestClient, member: Member, origin: str) -> int:
    """A production browser on https, the app reached over http (TLS ended at the proxy)."""
    page = client.get("/dashboard/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    form = {
        "merchant": member.merchant_id,
        "email": member.email,
        "password": member.password,
        "login_token": token,
    }
    return client.post(
        "/dashboard/login",
        data=form,
        headers={"Origin": origin, "Cookie": f"__Host-{auth.LOGIN_COOKIE}={token}"},
        follow_redirects=False,
    ).status_code


def test_production_behind_tls_without_trust_proxy_expects_an_https_origin(
    settings: Any, database: Any, member: Member
) -> None:
    with TestClient(create_app(_production(settings), database=database)) as client:
        assert _login_behind_tls(client, member, "http://testserver") == 403
        assert _login_behind_tls(client, member, "https://testserver") == 303


def test_configured_dashboard_origin_is_the_one_expected(
    settings: Any, database: Any, member: Member
) -> None:
    configured = _production(settings, dashboard_origin="https://dash.shop.example")
    with TestClient(create_app(configured, database=database)) as client:
        assert _login_behind_tls(client, member, "https://testserver") == 403
        assert _login_behind_tls(client, member, "https://dash.shop.example") == 303


def test_dashboard_origin_setting_takes_an_origin_only() -> None:
    from checkoutlab.config import Settings

    assert Settings(dashboard_origin="HTTPS://Dash.Shop.example/").dashboard_origin == (
        "https://dash.shop.example"
    )
    assert Settings(dashboard_origin="").dashboard_origin is None
    for bad in ("dash.shop.example", "https://dash.shop.example/login", "ftp://x.example"):
        with pytest.raises(ValueError, match="CHECKOUTLAB_DASHBOARD_ORIGIN"):
            Settings(dashboard_origin=bad)
