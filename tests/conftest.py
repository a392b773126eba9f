"""Shared fixtures: a migrated database per backend, an app, and merchants with keys.

Every test that uses ``db`` runs on SQLite and, when ``CHECKOUTLAB_TEST_DATABASE_URL`` is
set (CI sets it), once more on that PostgreSQL. Tables are emptied between tests instead of
re-migrating, which keeps the suite fast on both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from checkoutlab.api.app import create_app
from checkoutlab.config import Settings
from checkoutlab.db import Base, Database, import_models
from checkoutlab.merchants import service as merchants
from checkoutlab.merchants.schemas import MerchantConfig

PG_URL = os.environ.get("CHECKOUTLAB_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture(scope="session")
def _databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Database]]:
    import_models()
    dbs: dict[str, Database] = {}
    sqlite_path = Path(tmp_path_factory.mktemp("db")) / "test.db"
    dbs["sqlite"] = Database(f"sqlite:///{sqlite_path}")
    if PG_URL:
        pg = Database(PG_URL)
        with pg.engine.begin() as conn:  # start from nothing, whatever a previous run left
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        dbs["postgresql"] = pg
    for database in dbs.values():
        database.upgrade()
    yield dbs
    for database in dbs.values():
        database.dispose()


def _truncate(database: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:
        if database.engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, _databases: dict[str, Database]) -> Database:
    db = _databases[request.param]
    _truncate(db)
    return db


@pytest.fixture
def settings(database: Database) -> Settings:
    return Settings(
        environment="test",
        database_url=database.url,
        secret_key=TEST_SECRET,
        risk_scorer="rules",
        rate_limit_enabled=False,  # tests burst from one client; tests/security/ turns it on
    )


@pytest.fixture
def app(settings: Settings, database: Database) -> Any:
    return create_app(settings, database=database)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@dataclass
class MerchantKeys:
    id: str
    pk: str
    sk: str

    @property
    def secret_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sk}"}

    @property
    def public_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.pk}"}


@pytest.fixture
def make_merchant(database: Database) -> Callable[..., MerchantKeys]:
    def _make(name: str = "Test Shop", config: dict[str, Any] | None = None) -> MerchantKeys:
        with database.session() as session:
            created = merchants.create(
                db=session, name=name, config=MerchantConfig.model_validate(config or {})
            )
        return MerchantKeys(created.merchant_id, created.publishable_key, created.secret_key)

    return _make


@pytest.fixture
def merchant(make_merchant: Callable[..., MerchantKeys]) -> MerchantKeys:
    return make_merchant()


@dataclass
class Checkout:
    """Drives one checkout through the public API like the widget would."""

    client: TestClient
    merchant: MerchantKeys
    session: dict[str, Any]

    @property
    def id(self) -> str:
        return self.session["id"]

    def profile(self, context: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
        response = self.client.post(
            "/v1/payment_profile",
            json={"client_secret": self.session["client_secret"], "context": context or {}},
            headers=self.merchant.public_headers | headers,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def confirm(
        self,
        token: str,
        *,
        key: str,
        card: str = "4242424242424242",
        cvc: str = "123",
        method: str = "card",
        **extra: Any,
    ) -> Any:
        body: dict[str, Any] = {
            "client_secret": self.session["client_secret"],
            "profile_token": token,
            "payment_method": {"type": method},
        }
        if method == "card":
            body["payment_method"]["card"] = {
                "number": card,
                "exp_month": 12,
                "exp_year": 2034,
                "cvc": cvc,
            }
        body.update(extra)
        return self.client.post(
            f"/v1/checkout_sessions/{self.id}/confirm",
            json=body,
            headers=self.merchant.public_headers | {"Idempotency-Key": key},
        )


@pytest.fixture
def new_checkout(client: TestClient, merchant: MerchantKeys) -> Callable[..., Checkout]:
    def _new(owner: MerchantKeys | None = None, **fields: Any) -> Checkout:
        owner = owner or merchant
        body = {"amount": 2599, "currency": "EUR"} | fields
        response = client.post("/v1/checkout_sessions", json=body, headers=owner.secret_headers)
        assert response.status_code == 201, response.text
        return Checkout(client, owner, response.json())

    return _new
