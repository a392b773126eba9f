"""The growth dashboard: server-rendered pages for a merchant's team at ``/dashboard``.

Nothing else imports this package; ``checkoutlab.api.app`` mounts it with :func:`install`.
"""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    """Include the dashboard routes and its same-origin static files (CSS) in ``app``."""
    from fastapi.staticfiles import StaticFiles

    from checkoutlab.dashboard.router import STATIC_DIR, router

    app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
