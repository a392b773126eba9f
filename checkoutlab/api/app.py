"""The FastAPI application factory: assembles domain routers; holds no domain logic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from checkoutlab import __version__
from checkoutlab.api import errors
from checkoutlab.config import Settings, get_settings
from checkoutlab.db import Database
from checkoutlab.elements.router import router as elements_router
from checkoutlab.events.router import router as events_router
from checkoutlab.payments.gateways import get_gateway
from checkoutlab.payments.router import router as payments_router
from checkoutlab.profile.builder import default_services
from checkoutlab.profile.router import router as profile_router


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = database or Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if database is None:
            db.dispose()

    app = FastAPI(
        title="Checkout Lab",
        version=__version__,
        description="Payment profiles, generated checkout forms and payments.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.gateway = get_gateway(settings.gateway)
    app.state.profile_services = default_services()
    errors.install(app)
    for router in (payments_router, profile_router, elements_router, events_router):
        app.include_router(router)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
