"""Dashboard fixtures: a merchant with a team member, and a browser-like TestClient.

``Dashboard`` keeps the cookies like a browser, sends the ``Origin`` a browser sends with a
form POST, and reads the CSRF token out of the page it last rendered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from checkoutlab.dashboard import auth
from checkoutlab.db import Database
from checkoutlab.events.models import Event
from checkoutlab.experiments import service
from checkoutlab.experiments.schemas import ExperimentCreate
from checkoutlab.payments.models import CheckoutSession, Payment
from checkoutlab.profile.models import Decision

ORIGIN = "http://testserver"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_LOGIN = re.compile(r'name="login_token" value="([^"]+)"')


@dataclass
class Member:
    merchant_id: str
    email: str
    password: str = PASSWORD


class Dashboard:
    def __init__(self, client: TestClient, origin: str = ORIGIN) -> None:
        self.client = client
        self.origin = origin
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(path, follow_redirects=False, **kwargs)
        found = _CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kwargs: Any
    ) -> Any:
        body = dict(data or {})
        if csrf:
            body.setdefault("csrf_token", self.csrf)
        headers = {"Origin": self.origin} | kwargs.pop("headers", {})
        return self.client.post(path, data=body, headers=headers, follow_redirects=False, **kwargs)

    def login(self, member: Member, password: str | None = None) -> Any:
        page = self.get(f"/dashboard/login?merchant={member.merchant_id}")
        token = _LOGIN.search(page.text).group(1)  # type: ignore[union-attr]
        response = self.post(
            "/dashboard/login",
            {
                "merchant": member.merchant_id,
                "email": member.email,
                "password": password if password is not None else member.password,
                "login_token": token,
            },
            csrf=False,
        )
        if response.status_code == 303:
            self.get("/dashboard")  # picks up the session's CSRF token
        return response


@pytest.fixture
def make_member(database: Database, make_merchant: Callable[..., Any]) -> Callable[..., Member]:
    def _make(email: str = "growth@shop.example") -> Member:
        keys = make_merchant()
        with database.session() as db:
            auth.add_user(db=db, merchant_id=keys.id, email=email, password=PASSWORD)
        return Member(keys.id, email)

    return _make


@pytest.fixture
def member(make_member: Callable[..., Member]) -> Member:
    return make_member()


@pytest.fixture
def dash(client: TestClient) -> Dashboard:
    return Dashboard(client)


@pytest.fixture
def signed_in(dash: Dashboard, member: Member) -> Iterator[Dashboard]:
    response = dash.login(member)
    assert response.status_code == 303, response.text
    yield dash


def make_experiment(
    database: Database,
    merchant_id: str,
    key: str = "cta_copy",
    *,
    start: bool = True,
    weights: tuple[float, float] = (1, 1),
) -> None:
    with database.session() as db:
        experiment = service.create(
            db=db,
            merchant_id=merchant_id,
            data=ExperimentCreate.model_validate(
                {
                    "key": key,
                    "seed": "s",
                    "hypothesis": "Shorter copy converts better.",
                    "variants": [
                        {"key": "control", "control": True, "weight": weights[0]},
                        {"key": "treatment", "weight": weights[1], "config": {"layout": "list"}},
                    ],
                }
            ),
        )
        if start:
            service.start(db=db, experiment=experiment)


DAY0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def seed_exposures(
    database: Database,
    merchant_id: str,
    key: str,
    variant: str,
    n: int,
    converted: int,
    *,
    declined: int = 0,
    prefix: str,
) -> None:
    """``n`` rendered guest sessions of ``variant``; the first ``converted`` paid, the next
    ``declined`` had one declined attempt. Written directly, as the analysis tests do."""
    sessions, decisions, events, payments = [], [], [], []
    for i in range(n):
        sid, did = f"cs_{prefix}{i}", f"prof_{prefix}{i}"
        at = DAY0 + timedelta(days=i % 3, minutes=i % 50)
        sessions.append(
            {
                "id": sid,
                "merchant_id": merchant_id,
                "client_secret": "x",
                "amount": 2500,
                "currency": "EUR",
                "line_items": [],
                "customer_ref": None,
                "loyalty_balance": 0,
                "status": "open",
                "metadata": {},
                "created_at": at,
                "expires_at": at + timedelta(hours=1),
            }
        )
        decisions.append(
            {
                "id": did,
                "merchant_id": merchant_id,
                "session_id": sid,
                "customer_ref": None,
                "context": {},
                "features": {},
                "risk_score": 0.01,
                "risk_level": "normal",
                "model": "rules",
                "model_version": "1",
                "policy": "merchant_order",
                "policy_version": "1",
                "propensity": 1.0,
                "ordering": ["card"],
                "experiment_key": key,
                "variant": variant,
                "assignment_probability": 0.5,
                "verification": {},
                "profile": {},
                "created_at": at,
                "expires_at": at + timedelta(hours=1),
            }
        )
        events.append(
            {
                "merchant_id": merchant_id,
                "type": "elements_rendered",
                "session_id": sid,
                "decision_id": did,
                "occurred_at": at,
                "received_at": at,
                "source": "server",
                "properties": {},
            }
        )
        status = "succeeded" if i < converted else "failed" if i < converted + declined else None
        if status:
            payments.append(
                {
                    "id": f"pay_{prefix}{i}",
                    "merchant_id": merchant_id,
                    "session_id": sid,
                    "decision_id": did,
                    "customer_ref": None,
                    "status": status,
                    "amount": 2500,
                    "currency": "EUR",
                    "method_type": "card",
                    "gateway": "sandbox",
                    "verification": {},
                    "next_action": None,
                    "created_at": at + timedelta(seconds=60),
                    "updated_at": at + timedelta(seconds=60),
                }
            )
    with database.session() as db:
        for model, rows in (
            (CheckoutSession, sessions),
            (Decision, decisions),
            (Event, events),
            (Payment, payments),
        ):
            if rows:
                db.execute(model.__table__.insert(), rows)
        db.commit()
