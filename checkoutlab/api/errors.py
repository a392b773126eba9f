"""One error shape for every 4xx: ``{"error": {"type", "code", "message", "param"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from checkoutlab.errors import CheckoutLabError

log = logging.getLogger(__name__)


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _validation_message(err: dict[str, Any]) -> str:
    param = _param(tuple(err.get("loc", ())))
    if err.get("type") == "json_invalid":
        return f"Request body is not valid JSON: {err.get('ctx', {}).get('error', 'parse error')}"
    if err.get("type") == "missing":
        return f"Missing required parameter: {param}"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"Invalid value for {param}: {msg}" if param else msg


def install(app: FastAPI) -> None:
    @app.exception_handler(CheckoutLabError)
    async def _domain(_: Request, exc: CheckoutLabError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid request"}
        code = "invalid_json" if first.get("type") == "json_invalid" else "parameter_invalid"
        if first.get("type") == "missing":
            code = "parameter_missing"
        body = error_body(
            "invalid_request_error", code, _validation_message(first), _param(first.get("loc", ()))
        )
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        type_ = "invalid_request_error" if exc.status_code < 500 else "api_error"
        body = error_body(type_, codes.get(exc.status_code, "http_error"), str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        body = error_body("api_error", "internal_error", "An internal error occurred; retry later.")
        return JSONResponse(body, status_code=500)
