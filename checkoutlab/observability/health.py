"""Liveness, readiness and the metrics endpoint of an API worker.

- ``/livez``: the process answers. Nothing else is checked, so an orchestrator restarts a
  worker only when it is wedged, never because PostgreSQL or MLflow is down (a restart
  would not fix those, and restarting every worker at once would turn an outage into a
  longer one).
- ``/readyz``: this worker should get traffic: the database answers and its schema is at
  the migrations' head(s). The fraud model and bandit snapshots are reported, but a missing
  champion only makes the worker ``degraded``: it still takes payments with conservative
  profiles (DESIGN.md, fail safe). A schema *ahead* of this code (a newer release migrated
  it during a rolling deploy) stays ready: migrations are additive until the old release
  is gone.
- ``/metrics``: Prometheus exposition (:mod:`checkoutlab.observability.metrics`), off with
  ``CHECKOUTLAB_METRICS_ENABLED=false``, behind a bearer token with
  ``CHECKOUTLAB_METRICS_TOKEN``; in production the settings refuse to load with metrics on
  and no token (:class:`checkoutlab.config.Settings`).

Error details stay in the logs: these endpoints are unauthenticated, and a driver's
message can name hosts and users.
"""

from __future__ import annotations

import hmac
import logging
import os
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from checkoutlab import __version__
from checkoutlab.errors import AuthenticationError, NotFound
from checkoutlab.observability import metrics

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


@lru_cache(maxsize=1)
def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """Head(s) and all revisions of the migrations shipped with this code (read once)."""
    from alembic.script import ScriptDirectory

    from checkoutlab.db import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    known = frozenset(rev.revision for rev in scripts.walk_revisions())
    return frozenset(scripts.get_heads()), known


def schema_status(engine: Engine) -> str:
    """``at_head``, ``behind``, ``ahead`` or ``missing``; raises when the database is down."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        current = frozenset(MigrationContext.configure(conn).get_current_heads())
    if not current:
        return "missing"
    heads, known = _revisions()
    if current == heads:
        return "at_head"
    if current - known:
        return "ahead"
    return "behind"


def _fraud_model(app_state: Any) -> dict[str, Any]:
    settings = app_state.settings
    if settings.risk_scorer != "champion":
        return {"status": "disabled", "scorer": "rules"}
    described = app_state.profile_services.scorer.describe()
    if described.get("version") is None:
        return {"status": "missing", "note": "no champion loaded; profiles are degraded"}
    return {"status": "ok", "model": described["model"], "version": described["version"]}


def readiness(app_state: Any) -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    try:
        schema = schema_status(app_state.db.engine)
        checks["database"] = {"status": "ok"}
    except Exception as exc:
        log.warning("readiness: database unavailable: %s", type(exc).__name__, exc_info=exc)
        schema = "unknown"
        checks["database"] = {"status": "unavailable"}
    checks["schema"] = {"status": schema}
    ready = checks["database"]["status"] == "ok" and schema in ("at_head", "ahead")
    checks["fraud_model"] = _fraud_model(app_state)
    provider = getattr(app_state, "bandit_provider", None)
    bandit_error = getattr(provider, "last_error", None)
    checks["bandit_snapshots"] = {"status": "error" if bandit_error else "ok"}
    degraded = checks["fraud_model"]["status"] == "missing" or bandit_error is not None
    status = "not_ready" if not ready else ("degraded" if degraded else "ready")
    return ready, {"status": status, "version": __version__, "checks": checks}


@router.get("/livez")
def livez() -> dict[str, Any]:
    """The worker process is up (its pid tells load-balanced workers apart)."""
    return {"status": "ok", "pid": os.getpid(), "version": __version__}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: 200 (``ready`` or ``degraded``) or 503 (``not_ready``)."""
    ready, body = readiness(request.app.state)
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics_endpoint(request: Request) -> Response:
    settings = request.app.state.settings
    if not settings.metrics_enabled:
        raise NotFound(
            "Metrics are disabled (CHECKOUTLAB_METRICS_ENABLED=false).", code="not_found"
        )
    token = settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "").encode()
        expected = f"Bearer {token.get_secret_value()}".encode()
        if not hmac.compare_digest(sent, expected):
            raise AuthenticationError(
                "Send the metrics token: 'Authorization: Bearer <token>'.",
                code="invalid_metrics_token",
            )
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
