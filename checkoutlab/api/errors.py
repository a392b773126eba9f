"""One error shape for every 4xx and 5xx: ``{"error": {"type", "code", "message", "param"}}``.

A database that cannot be reached (PostgreSQL restarting, a failover, a pool exhausted,
SQLite locked past its timeout) answers **503** ``database_unavailable`` with
``Retry-After``, not 500: the request was fine and a retry will work once the database is
back, which the engine's ``pool_pre_ping`` notices on the next checkout without a restart.
A deadlock or serialization failure answers the same 503 (a retry works) but is logged at
ERROR with its traceback; every other database error (a cancelled query, a lock timeout, a
full disk, a missing table) is a 500 with a traceback.
"""

from __future__ import annotations

import logging
import traceback
from http import HTTPStatus
from typing import Any, Literal

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


# What SQLAlchemy raises when the database, not the query, may be the problem; which of them
# really are is decided by :func:`database_error_kind`. OperationalError is the DBAPI's
# "connection refused / server closed the connection / database is locked" but also
# PostgreSQL's deadlocks, cancelled statements and full disks; InterfaceError a connection
# unusable at the driver level; TimeoutError an exhausted pool.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
DATABASE_RETRY_AFTER_SECONDS = 2
# sqlite3 raises OperationalError for SQL mistakes too ("syntax error", "no such column",
# "no such table": a missing migration is a bug to see, not an outage): only these mean the
# database itself is unavailable, the rest stay 500 so bugs show.
_SQLITE_UNAVAILABLE = ("locked", "unable to open", "disk i/o", "readonly")
# PostgreSQL SQLSTATEs of a server that cannot be reached or is going away: class 08
# (connection exception), admin/crash shutdown, starting up, too many connections.
_PG_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300"})
# A transaction the server rolled back to break a deadlock or a serialization conflict: the
# request was fine and a retry works, but it is a concurrency bug worth a traceback.
_PG_RETRYABLE = frozenset({"40P01", "40001"})

DatabaseErrorKind = Literal["unavailable", "retryable"]


def _kind(exc: BaseException) -> DatabaseErrorKind | None:
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return "unavailable"  # pool exhausted; a connection SQLAlchemy found dead
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    if exc.connection_invalidated:  # SQLAlchemy's own disconnect detection
        return "unavailable"
    if not isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        return None
    orig = exc.orig
    module = type(orig).__module__
    if module == "sqlite3":
        text = str(orig).lower()
        return "unavailable" if any(p in text for p in _SQLITE_UNAVAILABLE) else None
    if module.split(".")[0] == "psycopg":
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate is None:  # a failed connect, a connection closed under us
            return "unavailable"
        if sqlstate.startswith("08") or sqlstate in _PG_UNAVAILABLE:
            return "unavailable"
        if sqlstate in _PG_RETRYABLE:
            return "retryable"
        return None  # query cancelled, lock timeout, disk full, ...: a 500 with a traceback
    return None


def database_error_kind(exc: BaseException) -> DatabaseErrorKind | None:
    """``unavailable`` when ``exc``, or an error it was explicitly raised from (``raise ...
    from``), says the database cannot be reached; ``retryable`` for a deadlock or
    serialization failure; None for everything else (a bug: 500).

    Only ``__cause__`` is followed, not the implicit ``__context__``: a bug raised while
    handling a database error is still a bug.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        kind = _kind(current)
        if kind is not None:
            return kind
        seen.add(id(current))
        current = current.__cause__
    return None


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` answers 503 ``database_unavailable`` (see :func:`database_error_kind`)."""
    return database_error_kind(exc) is not None


def _driver_reason(exc: BaseException) -> str:
    # The driver's own message ("connection refused", "database is locked"), not str(exc):
    # SQLAlchemy's includes the statement.
    while exc.__cause__ is not None and getattr(exc, "orig", None) is None:
        exc = exc.__cause__
    reason = str(getattr(exc, "orig", None) or "").strip().splitlines()
    return reason[0][:200] if reason else ""


def _log_database_error(exc: BaseException, kind: DatabaseErrorKind) -> None:
    if kind == "retryable":
        log.error(
            "database rolled the transaction back (%s): %s; answered 503, a retry should work\n%s",
            type(exc).__name__,
            _driver_reason(exc),
            _frames(exc),
        )
        return
    log.warning("database unavailable (%s): %s", type(exc).__name__, _driver_reason(exc))


def _database_error_in(exc: BaseException) -> sa_exc.DBAPIError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, sa_exc.DBAPIError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _frames(exc: BaseException) -> str:
    """The traceback of ``exc`` (and what it was raised from), without exception messages."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__module__}.{type(current).__qualname__}, raised at:\n")
        parts.extend(traceback.format_tb(current.__traceback__))
        current = current.__cause__ or current.__context__
    return "".join(parts).rstrip()


def _database_summary(error: sa_exc.DBAPIError) -> str:
    """What a database error is without the values it was about.

    The engine hides statement parameters (``hide_parameters``), but PostgreSQL's own message
    has a DETAIL line that repeats them (``Key (client_secret)=(...) already exists``): only
    the primary message, SQLSTATE and constraint name are logged.
    """
    orig = error.orig
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) or (str(orig).strip().splitlines() or [""])[0]
    sqlstate = getattr(orig, "sqlstate", None)
    state = f", SQLSTATE {sqlstate}" if sqlstate else ""
    return f"{type(error).__name__} ({type(orig).__name__}{state}): {primary[:300]}"


def _log_unhandled(exc: BaseException) -> None:
    error = _database_error_in(exc)
    if error is None:
        log.exception("unhandled error", exc_info=exc)
        return
    log.error("unhandled database error: %s\n%s", _database_summary(error), _frames(exc))


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
        kind = database_error_kind(exc)
        if kind is None:  # a SQL mistake, a cancelled query, a full disk: a bug to see
            return await _unexpected(request, exc)
        _log_database_error(exc, kind)
        return database_unavailable_response()

    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette runs this outermost, after the request-id middleware has returned.
        request_id = request.scope.get(REQUEST_ID_KEY)
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        with bind_request_id(request_id):
            kind = database_error_kind(exc)
            if kind is not None:  # raised in a middleware, or wrapped by a domain
                _log_database_error(exc, kind)
                response = database_unavailable_response()
                if headers:
                    response.headers.update(headers)
                return response
            _log_unhandled(exc)
        body = error_body("api_error", "internal_error", "An internal error occurred; retry later.")
        return JSONResponse(body, status_code=500, headers=headers)
