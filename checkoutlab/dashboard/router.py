"""``/dashboard``: the growth team's pages (server-rendered jinja2, autoescaped, no script).

Thin views over :mod:`checkoutlab.experiments.service` and
:func:`checkoutlab.experiments.analysis.analyze_experiment`; sign-in, sessions and CSRF are
in :mod:`checkoutlab.dashboard.auth`. Every query is scoped to the signed-in member's
merchant, so another merchant's experiment is a 404 like in the API.

Routes use :class:`DashboardRoute`, which turns the dashboard's exceptions into pages: no
session → 303 to the sign-in page, a failed CSRF or origin check → 403, an unknown
experiment → 404; and marks every answer ``Cache-Control: no-store`` (results are private).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData

from checkoutlab.dashboard import auth, charts, forms
from checkoutlab.deps import SessionDep, SettingsDep, client_ip
from checkoutlab.errors import CheckoutLabError, NotFound
from checkoutlab.experiments import service
from checkoutlab.experiments.analysis import Comparison, ExperimentAnalysis, analyze_experiment
from checkoutlab.experiments.schemas import ExperimentRead, Status

STATIC_DIR = Path(__file__).parent / "static"
_MERCHANT_ID = re.compile(r"^mer_[0-9a-f]{24}$")
NOTICES = {
    "created": "Experiment created as a draft. Review it, then start it.",
    "saved": "Changes saved.",
    "started": "Experiment started: new shoppers are being assigned.",
    "stopped": "Experiment stopped: nobody new is assigned; results stay readable.",
    "shipped": "Shipped: the winning variant's form is now the merchant's default.",
}
METRIC_LABELS = {
    "conversion": "Checkout conversion",
    "revenue_per_session": "Revenue per session",
    "average_order_value": "Average order value",
    "fraud_rate": "Fraud rate",
    "decline_rate": "Decline rate",
    "time_to_pay": "Time to pay",
}
KIND_LABELS = {
    "primary": "Primary metric",
    "secondary": "Secondary metrics",
    "guardrail": "Guardrails",
}


class LoginRequired(Exception):
    """No live session: the page answers with a redirect to sign in, not an error."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class Forbidden(Exception):
    """A failed CSRF or origin check: a 403 page (the API's JSON error would be unreadable)."""

    def __init__(self, message: str) -> None:
        self.message = message


def _fmt_pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _fmt_metric(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    if metric in ("conversion", "fraud_rate", "decline_rate"):
        return f"{value:.2%}"
    if metric == "time_to_pay":
        return f"{value:.2f} s"
    # minor units as stored: dividing by 100 would be wrong for JPY and other currencies
    return f"{value:,.0f}"


def _fmt_p(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def _fmt_p_is(value: float | None) -> str:
    """'p = 0.0123' or 'p < 0.0001', for sentences."""
    shown = _fmt_p(value)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


_env = Environment(
    loader=PackageLoader("checkoutlab.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


_env.filters.update(pct=_fmt_pct, metric=_fmt_metric, pvalue=_fmt_p, p_is=_fmt_p_is, urlpart=quote)
_env.globals.update(METRIC_LABELS=METRIC_LABELS, KIND_LABELS=KIND_LABELS, forms=forms)


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status_code)


class DashboardRoute(APIRoute):
    """Exceptions become pages (303 / 403 / 404); answers are never cached."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired as exc:
                target = "/dashboard/login"
                if exc.next_path != "/dashboard":
                    target += f"?next={quote(exc.next_path, safe='/')}"
                response = RedirectResponse(target, status_code=303)
            except Forbidden as exc:
                response = render("error.html.j2", 403, title="Forbidden", message=exc.message)
            except NotFound as exc:
                response = render("error.html.j2", 404, title="Not found", message=exc.message)
            response.headers["Cache-Control"] = "no-store"
            return response

        return route


router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=DashboardRoute)


# --------------------------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------------------------


async def form_data(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=200)


FormDep = Annotated[FormData, Depends(form_data)]


def _cookie_token(request: Request, settings: Any, base: str) -> str | None:
    return request.cookies.get(
        auth.cookie_name(base, secure=auth.secure_cookies(request, settings))
    )


def optional_login(request: Request, db: SessionDep, settings: SettingsDep) -> auth.Login | None:
    return auth.session_for(db=db, token=_cookie_token(request, settings, auth.COOKIE))


def current_login(
    request: Request, login: Annotated[auth.Login | None, Depends(optional_login)]
) -> auth.Login:
    if login is None:
        raise LoginRequired(request.url.path)
    return login


LoginDep = Annotated[auth.Login, Depends(current_login)]


def _check_origin(request: Request, settings: Any) -> None:
    if not auth.same_origin(request, settings):
        raise Forbidden(
            "This form was not sent from a dashboard page of this site (Origin/Referer check). "
            "Reload the page and try again."
        )


def checked_login(
    request: Request, login: LoginDep, form: FormDep, settings: SettingsDep
) -> auth.Login:
    """A signed-in POST: same origin, and the session's CSRF token in the form."""
    _check_origin(request, settings)
    if not auth.tokens_match(login.csrf_token, str(form.get("csrf_token") or "")):
        raise Forbidden("The form's security token is missing or out of date. Reload the page.")
    return login


PostLoginDep = Annotated[auth.Login, Depends(checked_login)]


def _set_cookie(
    response: Response, request: Request, settings: Any, base: str, value: str, max_age: int
) -> None:
    secure = auth.secure_cookies(request, settings)
    response.set_cookie(
        auth.cookie_name(base, secure=secure),
        value,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def _delete_cookie(response: Response, request: Request, settings: Any, base: str) -> None:
    secure = auth.secure_cookies(request, settings)
    response.delete_cookie(
        auth.cookie_name(base, secure=secure),
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


_limiter_lock = threading.Lock()


def _limiter(request: Request, settings: Any) -> Any:
    # Under a lock: concurrent first sign-ins must not each get a memory storage of their own.
    with _limiter_lock:
        limiter = getattr(request.app.state, "dashboard_limiter", None)
        if limiter is None:
            limiter = request.app.state.dashboard_limiter = auth.make_limiter(settings)
        return limiter


_NEXT = re.compile(r"/dashboard(?:[/?#][\x21-\x7e]*)?")


def _safe_next(value: str | None) -> str:
    """Only a dashboard path of this site: never an absolute or scheme-relative URL, no
    ``//`` or backslash anywhere (browsers read ``/\\`` as ``//``) and no space or control
    character (browsers drop tabs and newlines from URLs before parsing them)."""
    if value and _NEXT.fullmatch(value) and "//" not in value and "\\" not in value:
        return value
    return "/dashboard"


# --------------------------------------------------------------------------------------------
# Sign in / out
# --------------------------------------------------------------------------------------------


def _login_page(
    request: Request,
    settings: Any,
    *,
    merchant: str = "",
    email: str = "",
    next_path: str = "/dashboard",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        "login.html.j2",
        status_code,
        merchant=merchant,
        email=email,
        next_path=next_path,
        login_token=token,
        error=error,
    )
    _set_cookie(
        response, request, settings, auth.LOGIN_COOKIE, token, auth.LOGIN_TOKEN_LIFETIME_SECONDS
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    settings: SettingsDep,
    login: Annotated[auth.Login | None, Depends(optional_login)],
    merchant: str = "",
    next: str = "/dashboard",
) -> Response:
    if login is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    merchant = merchant if _MERCHANT_ID.fullmatch(merchant) else ""
    return _login_page(request, settings, merchant=merchant, next_path=_safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request, db: SessionDep, settings: SettingsDep, form: FormDep
) -> Response:
    _check_origin(request, settings)
    expected = _cookie_token(request, settings, auth.LOGIN_COOKIE)
    if not auth.tokens_match(expected, str(form.get("login_token") or "")):
        raise Forbidden("The sign-in form expired or was not sent from this site. Reload it.")
    merchant = str(form.get("merchant") or "").strip()
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    next_path = _safe_next(str(form.get("next") or ""))
    address = client_ip(request.scope, trust_proxy=settings.trust_proxy) or "unknown"
    limiter = _limiter(request, settings)
    page = {"merchant": merchant, "email": email, "next_path": next_path}
    if not auth.attempt_allowed(limiter, merchant_id=merchant, email=email, address=address):
        return _login_page(
            request,
            settings,
            **page,
            status_code=429,
            error="Too many failed sign-ins. Wait 15 minutes and try again.",
        )
    with auth.verification_slot() as verifying:
        if not verifying:
            busy = _login_page(
                request,
                settings,
                **page,
                status_code=503,
                error="Too many sign-ins at once. Try again in a few seconds.",
            )
            busy.headers["Retry-After"] = "2"
            return busy
        user = auth.authenticate(db=db, merchant_id=merchant, email=email, password=password)
    if user is None:
        return _login_page(
            request,
            settings,
            **page,
            status_code=401,
            error="The merchant, e-mail or password is not right.",
        )
    auth.login_succeeded(limiter, merchant_id=merchant, email=email)
    token = auth.start_session(db=db, user=user)
    response = RedirectResponse(next_path, status_code=303)
    _set_cookie(
        response,
        request,
        settings,
        auth.COOKIE,
        token,
        int(auth.SESSION_LIFETIME.total_seconds()),
    )
    _delete_cookie(response, request, settings, auth.LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(
    request: Request, db: SessionDep, settings: SettingsDep, login: PostLoginDep
) -> Response:
    auth.end_session(db=db, session_id=login.session_id)
    response = RedirectResponse("/dashboard/login", status_code=303)
    _delete_cookie(response, request, settings, auth.COOKIE)
    return response


# --------------------------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------------------------


def _headline(analysis: ExperimentAnalysis) -> Comparison | None:
    """The primary metric's best variant (highest chance to win), or None without data."""
    primary = [c for c in analysis.comparisons if c.kind == "primary" and c.lift is not None]
    return max(primary, key=lambda c: c.chance_to_win or 0.0) if primary else None


def _list_row(db: Any, experiment: Any) -> dict[str, Any]:
    """A draft has no data: its results are not computed for the list."""
    row: dict[str, Any] = {
        "experiment": service.read(experiment),
        "headline": None,
        "verdict": "",
        "srm": False,
        "guardrails_failing": False,
        "units": 0,
    }
    if experiment.status == Status.draft:
        return row
    analysis = analyze_experiment(db=db, experiment=experiment)
    headline = _headline(analysis)
    row |= {
        "headline": headline,
        "verdict": charts.verdict(headline) if headline else "",
        "srm": analysis.srm.mismatch,
        "guardrails_failing": any(g.status == "failing" for g in analysis.guardrails),
        "units": sum(v.units for v in analysis.variants),
    }
    return row


@router.get("", response_class=HTMLResponse)
def experiments_list(login: LoginDep, db: SessionDep) -> HTMLResponse:
    rows = [_list_row(db, e) for e in service.list_(db=db, merchant_id=login.merchant_id)]
    return render("list.html.j2", login=login, rows=rows, active="list")


def _new_state() -> forms.FormState:
    return forms.FormState(
        values={
            "v0_key": "control",
            "v0_weight": "1",
            "v1_key": "treatment",
            "v1_weight": "1",
            "control": "0",
            "allocation_type": "fixed",
        }
    )


@router.get("/new", response_class=HTMLResponse)
def new_experiment(login: LoginDep) -> HTMLResponse:
    return render(
        "form.html.j2",
        login=login,
        state=_new_state(),
        experiment=None,
        active="new",
        editable=forms.editable(Status.draft) | {"key"},
    )


def _apply_error(state: forms.FormState, exc: CheckoutLabError) -> None:
    target = {
        "key": "key",
        "namespace": "namespace_name",
        "weights": "variants",
        "targeting": "targeting",
        "variants": "variants",
    }.get(exc.param or "", "")
    state.add_error(target, exc.message)


@router.post("/experiments", response_class=HTMLResponse)
def create_experiment(login: PostLoginDep, db: SessionDep, form: FormDep) -> Response:
    state = forms.read_form(form)
    data = forms.to_create(state)
    if data is not None:
        try:
            created = service.create(db=db, merchant_id=login.merchant_id, data=data)
        except CheckoutLabError as exc:
            _apply_error(state, exc)
        else:
            return RedirectResponse(
                f"/dashboard/experiments/{quote(created.key)}?notice=created", status_code=303
            )
    return render(
        "form.html.j2",
        400,
        login=login,
        state=state,
        experiment=None,
        active="new",
        editable=forms.editable(Status.draft) | {"key"},
    )


def _results_page(
    login: auth.Login,
    db: Any,
    experiment: Any,
    *,
    notice: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    read: ExperimentRead = service.read(experiment)
    analysis = analyze_experiment(db=db, experiment=experiment)
    variant_keys = [v.key for v in read.variants]
    metrics = []
    for kind in ("primary", "secondary", "guardrail"):
        names = list(dict.fromkeys(c.metric for c in analysis.comparisons if c.kind == kind))
        for metric in names:
            comparisons = [c for c in analysis.comparisons if c.metric == metric and c.kind == kind]
            metrics.append(
                {
                    "kind": kind,
                    "metric": metric,
                    "comparisons": comparisons,
                    "chart": charts.interval_chart(comparisons),
                    "verdicts": {c.variant: charts.verdict(c) for c in comparisons},
                }
            )
    return render(
        "results.html.j2",
        status_code,
        login=login,
        experiment=read,
        analysis=analysis,
        metrics=metrics,
        timeline=charts.cumulative_chart(analysis.timeseries, variant_keys),
        problems=[g for g in analysis.guardrails if g.status in ("failing", "warning")],
        notice=NOTICES.get(notice, ""),
        error=error,
        active="list",
    )


@router.get("/experiments/{key}", response_class=HTMLResponse)
def experiment_results(key: str, login: LoginDep, db: SessionDep, notice: str = "") -> Response:
    experiment = service.get(db=db, merchant_id=login.merchant_id, key=key)
    return _results_page(login, db, experiment, notice=notice)


@router.get("/experiments/{key}/edit", response_class=HTMLResponse)
def edit_experiment(key: str, login: LoginDep, db: SessionDep) -> HTMLResponse:
    read = service.read(service.get(db=db, merchant_id=login.merchant_id, key=key))
    return render(
        "form.html.j2",
        login=login,
        state=forms.state_of(read),
        experiment=read,
        active="list",
        editable=forms.editable(read.status),
    )


@router.post("/experiments/{key}/edit", response_class=HTMLResponse)
def update_experiment(key: str, login: PostLoginDep, db: SessionDep, form: FormDep) -> Response:
    experiment = service.get(db=db, merchant_id=login.merchant_id, key=key)
    status = Status(experiment.status)
    state = forms.read_form(form)
    state.values["key"] = experiment.key
    data = forms.to_update(state, status)
    if data is not None:
        try:
            service.update(db=db, experiment=experiment, data=data)
        except CheckoutLabError as exc:
            db.rollback()
            _apply_error(state, exc)
        else:
            return RedirectResponse(
                f"/dashboard/experiments/{quote(experiment.key)}?notice=saved", status_code=303
            )
    return render(
        "form.html.j2",
        400,
        login=login,
        state=state,
        experiment=service.read(experiment),
        active="list",
        editable=forms.editable(status),
    )


@router.post("/experiments/{key}/{action}", response_class=HTMLResponse)
def lifecycle(
    key: str, action: str, login: PostLoginDep, db: SessionDep, form: FormDep
) -> Response:
    """Start, stop or ship; a transition the lifecycle refuses is shown on the page (409)."""
    if action not in ("start", "stop", "ship"):
        raise NotFound(f"No such action: '{action}'")
    experiment = service.get(db=db, merchant_id=login.merchant_id, key=key)
    try:
        if action == "ship":
            service.ship(db=db, experiment=experiment, variant=str(form.get("variant") or ""))
        else:
            getattr(service, action)(db=db, experiment=experiment)
    except CheckoutLabError as exc:
        db.rollback()
        return _results_page(login, db, experiment, error=exc.message, status_code=exc.status_code)
    past = {"start": "started", "stop": "stopped", "ship": "shipped"}[action]
    return RedirectResponse(
        f"/dashboard/experiments/{quote(experiment.key)}?notice={past}", status_code=303
    )
