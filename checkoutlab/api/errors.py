"""One error shape for every 4xx and 5xx: ``{"error": {"type", "code", "message", "param"}}``.

A database that cannot be reached (PostgreSQL restarting, a failover, a pool exhausted,
SQLite locked past its timeout) answers **503** ``database_unavailable`` with
``Retry-After``, not 500: the request was fine and a retry will work once the database is
back, which the engine's ``pool_pre_ping`` notices on the next checkout without a restart.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from checkoutlab.errors import CheckoutLabError
from checkoutlab.observability.request_id import HEADER as REQUEST_ID_HEADER
from checkoutlab.observability.request_id import SCOPE_KEY as REQUEST_ID_KEY
from checkoutlab.observability.request_id import bind_request_id

log = logging.getLogger(__name__)


def error_body(type_: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": type_, "code": code, "message": message, "param": param}}


# What SQLAlchemy raises when the database, not the query, is the problem. OperationalError
# is the DBAPI's "connection refused / server closed the connection / database is locked";
# InterfaceError a connection unusable at the driver level; TimeoutError an exhausted pool.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
DATABASE_RETRY_AFTER_SECONDS = 2
# sqlite3 raises OperationalError for SQL mistakes too ("syntax error", "no such column"):
# only these mean the database itself is unavailable, the rest stay 500 so bugs show.
_SQLITE_UNAVAILABLE = ("locked", "unable to open", "disk i/o", "readonly", "no such table")


def _unavailable_kind(exc: BaseException) -> bool:
    if not isinstance(exc, DATABASE_UNAVAILABLE):
        return False
    orig = getattr(exc, "orig", None)
    if type(orig).__module__ == "sqlite3":
        return any(phrase in str(orig).lower() for phrase in _SQLITE_UNAVAILABLE)
    return True


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc``, or an error it was raised from, says the database is unreachable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _unavailable_kind(current):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _log_unavailable(exc: BaseException) -> None:
    # The driver's own message ("connection refused", "database is locked"), not str(exc):
    # SQLAlchemy's includes the statement's parameters.
    reason = str(getattr(exc, "orig", None) or "").strip().splitlines()
    log.warning(
        "database unavailable (%s): %s", type(exc).__name__, reason[0][:200] if reason else ""
    )


def database_unavailable_response() -> JSONResponse:
    body = error_body(
        "api_error",
        "database_unavailable",
        "The database is temporarily unavailable. Retry in a few seconds (a confirm with the "
        "same Idempotency-Key, so it cannot be charged twice).",
    )
    return JSONResponse(
        body, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
    )


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

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):  # a SQL mistake on SQLite: a bug, not an outage
            return await _unexpected(request, exc)
        _log_unavailable(exc)
        return database_unavailable_response()

    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this outermost, after the request-id middleware has returned.
        request_id = request.scope.get(REQUEST_ID_KEY)
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        with bind_request_id(request_id):
            if database_unavailable(exc):  # raised in a middleware, or wrapped by a domain
                _log_unavailable(exc)
                response = database_unavailable_response()
                if headers:
                    response.headers.update(headers)
                return response
            log.exception("unhandled error", exc_info=exc)
        body = error_body("api_error", "internal_error", "An internal error occurred; retry later.")
        return JSONResponse(body, status_code=500, headers=headers)
