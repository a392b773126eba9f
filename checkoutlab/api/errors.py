"""One error shape for every 4xx: ``{"error": {"type", "code", "message", "param"}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from checkoutlab.errors import CheckoutLabError

log = logging.getLogger(__name__)


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


# Errors pydantic raises when the whole body is not an object (a list, a form, a string).
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


def _param(err: dict[str, Any]) -> str | None:
    if err.get("type") == "json_invalid":  # its loc is a character offset, not a parameter
        return None
    parts = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _validation_message(err: dict[str, Any]) -> str:
    param = _param(err)
    kind = err.get("type")
    if kind == "json_invalid":
        loc = err.get("loc", ())
        where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        reason = err.get("ctx", {}).get("error", "parse error")
        return f"Request body is not valid JSON{where}: {reason}. Send a JSON object."
    if param is None and kind == "missing":
        return "Request body is missing: send a JSON object with Content-Type: application/json."
    if param is None and kind in _NOT_AN_OBJECT:
        return "Request body must be a JSON object sent with Content-Type: application/json."
    if kind == "missing":
        return f"Missing required parameter: {param}"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"Invalid value for {param}: {msg}" if param else msg


def _http_message(request: Request, exc: StarletteHTTPException) -> str:
    """Starlette's bare reason phrases ("Not Found") say nothing about what to fix."""
    try:
        default = HTTPStatus(exc.status_code).phrase
    except ValueError:
        default = None
    if exc.detail != default:
        return str(exc.detail)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        return f"Unrecognized request URL ({where}). Check the path; the API reference is at /docs."
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        hint = f"; use {allowed}" if allowed else ""
        return f"Method {request.method} is not allowed on {request.url.path}{hint}."
    return str(exc.detail)


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
        body = error_body("invalid_request_error", code, _validation_message(first), _param(first))
        return JSONResponse(body, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        type_ = "invalid_request_error" if exc.status_code < 500 else "api_error"
        message = _http_message(request, exc)
        body = error_body(type_, codes.get(exc.status_code, "http_error"), message)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        body = error_body("api_error", "internal_error", "An internal error occurred; retry later.")
        return JSONResponse(body, status_code=500)
