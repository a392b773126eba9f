"""The bare FastAPI JSON endpoint the HTTP benchmark compares ``/v1/payment_profile`` with.

Served by the same uvicorn command and settings as the platform (``--factory``, same workers,
loop and HTTP parser). The route has the same path and request body shape, parses the body
with pydantic and, like the platform's route, is a plain ``def`` (run in the thread pool); it
returns a canned payment profile (captured from the platform in the same run, file named by
``BENCH_BARE_RESPONSE``) as a dict, so response size and JSON encoding are comparable. It does
no authentication, database access, scoring or ordering: that difference is what is measured.

    .venv/bin/uvicorn --factory --app-dir benchmarks bare_app:create_app
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

FALLBACK = {"id": "prof_bare", "object": "payment_profile", "methods": [{"type": "card"}]}


class ProfileRequest(BaseModel):
    client_secret: str = Field(max_length=200)
    context: dict[str, Any] = Field(default_factory=dict)


def create_app() -> FastAPI:
    path = os.environ.get("BENCH_BARE_RESPONSE")
    canned = json.loads(Path(path).read_text()) if path else FALLBACK
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/payment_profile")
    def payment_profile(body: ProfileRequest) -> dict[str, Any]:
        return canned

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
