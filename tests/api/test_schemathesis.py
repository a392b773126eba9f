"""Property-based API test: schemathesis generates requests from the app's own OpenAPI schema.

Every operation in ``/openapi.json`` gets valid (positive) and invalid (negative) generated
requests, with a fixed seed so that a failure reproduces, sent in-process (ASGI) with a
real merchant's keys: the publishable key on the browser routes, the secret key elsewhere.
Checks: ``not_a_server_error`` (no 5xx) and ``response_schema_conformance`` (every
documented answer matches its declared schema). At least ``MIN_CASES`` requests are sent
in total. All failing operations are reported together, each with schemathesis's
reproduction (a curl command) of the minimal failing case.

Random ids and secrets only reach the "not found" branch of most routes, so positive cases
are pointed at real objects: a real checkout session id in the path, and its real client
secret and profile token in the body wherever the schema has those fields, and a real
currency (the schema allows any three characters, the API only ISO 4217 codes, so
generated sessions would all stop at that check). The rest of the request (amounts,
contexts, payment details, verification, event properties...) stays generated.

One backend, the strictest available: PostgreSQL when ``CHECKOUTLAB_TEST_DATABASE_URL`` is
set (it refuses over-long strings and out-of-range integers that SQLite stores), else
SQLite. Running both would double the time for little.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")  # a dev dependency (pyproject [dev])

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402
from sqlalchemy import text  # noqa: E402

from checkoutlab.api.app import create_app  # noqa: E402
from checkoutlab.config import Settings  # noqa: E402
from checkoutlab.db import Base, Database  # noqa: E402
from checkoutlab.merchants import service as merchants  # noqa: E402
from checkoutlab.merchants.schemas import MerchantConfig  # noqa: E402

SEED = 20261126
MIN_CASES = 1000
POSITIVE_EXAMPLES, NEGATIVE_EXAMPLES = 30, 15
# Browser routes take the publishable key; every other /v1 route the secret key.
PUBLIC = ("/v1/payment_profile", "/v1/elements", "/v1/events", "/confirm", "/challenge")
CHECKS = [not_a_server_error, response_schema_conformance]
SECRET = "schemathesis-secret-key-that-is-long-enough-0123456789"


@dataclass
class Keys:
    pk: str
    sk: str

    @property
    def secret_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sk}"}

    @property
    def public_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.pk}"}


def _headers(path: str, merchant: Any, keys: dict[str, str]) -> dict[str, str]:
    key = merchant.pk if path.endswith(PUBLIC) or path in PUBLIC else keys["sk"]
    return {"Authorization": f"Bearer {key}"}


def _runner(operation: Any, mode: Any, examples: int, call: Any) -> Any:
    """A hypothesis test of ``examples`` generated cases of one operation, fixed seed."""

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        call(case)

    return run


@pytest.fixture
def fuzz_app(_databases: dict[str, Database]) -> Any:
    database = _databases.get("postgresql") or _databases["sqlite"]
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:  # like tests/conftest.py's per-test truncation
        if database.engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
    settings = Settings(
        environment="test",
        database_url=database.url,
        secret_key=SECRET,
        risk_scorer="rules",
        rate_limit_enabled=False,
    )
    with database.session() as session:
        created = merchants.create(db=session, name="Fuzz Shop", config=MerchantConfig())
    merchant = Keys(created.publishable_key, created.secret_key)
    return create_app(settings, database=database), merchant


def _real_objects(app: Any, merchant: Any, sk: str) -> dict[str, str]:
    """A real session and profile that positive cases are pointed at."""
    with TestClient(app) as client:
        created = client.post(
            "/v1/checkout_sessions",
            json={"amount": 2599, "currency": "EUR"},
            headers={"Authorization": f"Bearer {sk}"},
        )
        assert created.status_code == 201, created.text
        session = created.json()
        profile = client.post(
            "/v1/payment_profile",
            json={"client_secret": session["client_secret"], "context": {}},
            headers=merchant.public_headers,
        ).json()
    return {
        "session_id": session["id"],
        "client_secret": session["client_secret"],
        "token": profile["token"],
        "profile_token": profile["token"],
    }


def _point_at_real_objects(case: Any, real: dict[str, str]) -> None:
    if case.path_parameters and "session_id" in case.path_parameters:
        case.path_parameters["session_id"] = real["session_id"]
    if isinstance(case.body, dict):
        for field in ("client_secret", "token", "profile_token"):
            if field in case.body:
                case.body[field] = real[field]
        if isinstance(case.body.get("currency"), str):  # the schema says only "3 characters"
            case.body["currency"] = "EUR"


def _describe(exc: BaseException) -> str:
    """The failure(s), and the notes hypothesis and schemathesis attach (the reproduction)."""
    parts = [f"{type(exc).__name__}: {exc}"]
    if isinstance(exc, BaseExceptionGroup):
        parts += [f"{type(e).__name__}: {e}" for e in exc.exceptions]
    parts += getattr(exc, "__notes__", [])
    return "\n".join(parts)[:4000]


def test_generated_requests_get_no_5xx_and_match_the_schema(fuzz_app) -> None:
    app, merchant = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    keys = {"sk": merchant.sk}  # rolled by POST /v1/keys/roll: follow the new key
    failures: dict[str, str] = {}
    counts: dict[str, int] = {}
    statuses: Counter[int] = Counter()
    by_op: dict[str, set[int]] = defaultdict(set)

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    for operation in operations:
        counts[operation.label] = 0
        real = _real_objects(
            app, merchant, keys["sk"]
        )  # unpaid: an earlier confirm paid the last one

        def call(
            case: Any, path: str = operation.path, label: str = operation.label, real=real
        ) -> None:
            counts[label] += 1
            if case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE:
                _point_at_real_objects(case, real)
            response = case.call(headers=_headers(path, merchant, keys))
            statuses[response.status_code] += 1
            by_op[label].add(response.status_code)
            if path == "/v1/keys/roll" and response.status_code == 200:
                keys["sk"] = response.json()["secret_key"]
            case.validate_response(response, checks=CHECKS)

        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):
            try:
                _runner(operation, mode, examples, call)()
            except Unsatisfiable:  # nothing in it can be made invalid (no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # report every operation's failure
                failures[f"{operation.label} [{mode.value}]"] = _describe(exc)

    total = sum(counts.values())
    print(f"schemathesis: {total} requests over {len(operations)} operations; {dict(statuses)}")
    for label, codes in by_op.items():
        print(f"  {label}: {counts[label]} requests, statuses {sorted(codes)}")
    assert not failures, "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())
    assert total >= MIN_CASES, (total, counts)
