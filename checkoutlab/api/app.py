"""The FastAPI application factory: assembles domain routers; holds no domain logic."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from checkoutlab import __version__
from checkoutlab.api import errors, security
from checkoutlab.bandits.router import router as bandits_router
from checkoutlab.bandits.serving import PolicyProvider
from checkoutlab.config import Settings, get_settings
from checkoutlab.db import Database
from checkoutlab.elements.router import router as elements_router
from checkoutlab.events.router import router as events_router
from checkoutlab.experiments.router import router as experiments_router
from checkoutlab.fraud.router import router as fraud_router
from checkoutlab.merchants.router import router as merchants_router
from checkoutlab.observability import metrics
from checkoutlab.observability.health import router as health_router
from checkoutlab.observability.logging import install_record_factory
from checkoutlab.observability.middleware import RequestObservabilityMiddleware
from checkoutlab.payments.router import router as payments_router
from checkoutlab.payments.routing import GatewayPool
from checkoutlab.profile.builder import default_services
from checkoutlab.profile.router import router as profile_router
from checkoutlab.webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)
mimetypes.add_type("text/javascript", ".mjs")  # nosniff needs a JavaScript type for modules
WIDGET_DIR = Path(__file__).resolve().parents[2] / "widget" / "src"


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    demo_keys: dict[str, str] | None = None,
    demo_api_base: str = "http://127.0.0.1:8000",
) -> FastAPI:
    """Build the app. ``demo_keys`` (the demo merchant's keys) mounts the demo store."""
    settings = settings or get_settings()
    install_record_factory()  # every log record carries the request id
    db = database or Database(settings.database_url)

    services = default_services()
    bandit_provider = PolicyProvider(db, staleness_seconds=settings.bandit_staleness_seconds)
    services.policy_for = bandit_provider.policy_for
    background: list[Any] = [bandit_provider]
    if settings.risk_scorer == "champion":
        from checkoutlab.fraud.platform_store import PlatformFeatureStore
        from checkoutlab.fraud.serving import ChampionWatcher, FeatureSync, LearnedRiskScorer

        watcher = ChampionWatcher(
            settings.mlflow_tracking_uri, interval_seconds=settings.champion_poll_seconds
        )
        store = PlatformFeatureStore(db)
        services.scorer = LearnedRiskScorer(watcher, store)
        background += [watcher, FeatureSync(store, interval_seconds=settings.feature_sync_seconds)]

    if settings.webhook_dispatch_in_api:
        from checkoutlab.webhooks.dispatcher import Dispatcher

        background.append(Dispatcher(db, settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        metrics.worker_started()
        for task in background:
            task.start()
        yield
        for task in background:
            task.stop()
        if database is None:
            db.dispose()
        metrics.worker_stopped()

    app = FastAPI(
        title="Checkout Lab",
        version=__version__,
        description="Payment profiles, generated checkout forms and payments.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc load Swagger UI from a CDN; the platform works offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.gateway_pool = GatewayPool.from_settings(settings)  # routing, breakers
    app.state.gateway = app.state.gateway_pool.get(settings.gateway)  # the default gateway
    app.state.profile_services = services
    app.state.bandit_provider = bandit_provider  # the bandits router reports staleness
    errors.install(app)
    security.install(app, settings)
    # outermost of ours: request id, latency metrics and the access log see every answer
    app.add_middleware(RequestObservabilityMiddleware)
    routers = (
        payments_router,
        profile_router,
        elements_router,
        events_router,
        fraud_router,
        bandits_router,
        merchants_router,
        experiments_router,
        webhooks_router,
    )
    for router in routers:
        app.include_router(router)
    from checkoutlab.dashboard import install as install_dashboard

    install_dashboard(app)  # /dashboard: the growth team's pages
    if WIDGET_DIR.is_dir():
        app.mount("/widget", StaticFiles(directory=WIDGET_DIR), name="widget")
    else:  # a non-editable install does not carry the repository's widget/ folder
        log.warning("widget sources not found at %s; /widget is not served", WIDGET_DIR)
    if demo_keys is not None:
        from checkoutlab.demo.router import make_router, static_files

        app.include_router(make_router(demo_keys, demo_api_base))
        app.state.demo_api_base = demo_api_base
        app.mount("/demo/static", static_files(), name="demo-static")

    app.include_router(health_router)  # /livez, /readyz, /metrics

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
