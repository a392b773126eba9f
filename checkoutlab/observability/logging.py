"""Log configuration for every process: JSON lines for collectors, text for people.

Every record carries ``request_id`` (None outside a request): a log-record factory reads it
from :mod:`checkoutlab.observability.request_id` when the record is created, in the thread
that logs, so records from any library (SQLAlchemy, httpx, the gateway SDKs) are tagged
too, and whatever handler receives them (ours, pytest's caplog) sees the same attribute.
That is also why the learner binds an event's id with
:func:`~checkoutlab.observability.request_id.bind_request_id` instead of passing
``extra={"request_id": ...}``: the factory already owns that attribute.

``json`` uses python-json-logger (one object per line: ``time`` in UTC, ``level``,
``logger``, ``pid``, ``message``, ``request_id`` and any ``extra=`` fields); ``text`` is
the same information on one readable line. :func:`logging_config` returns a
:func:`logging.config.dictConfig` dictionary so uvicorn can apply it in each worker process
it spawns.
"""

from __future__ import annotations

import logging
import logging.config
import time
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from checkoutlab.observability.request_id import current_request_id

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_JSON_FIELDS = ["asctime", "levelname", "name", "process", "message", "request_id"]
_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
# uvicorn adds an ANSI-coloured copy of some messages; it is noise in a JSON line.
_SKIPPED = [*RESERVED_ATTRS, "color_message", "taskName"]

#: Libraries whose INFO lines would leak secrets (URLs with tokens) or flood the logs.
QUIET_LOGGERS = ("httpx", "httpcore")

_factory_installed = False


def install_record_factory() -> None:
    """Tag every LogRecord with the current request id (idempotent, process-wide)."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = current_request_id()
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def _utc_time(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class JsonFormatter(_JsonFormatter):
    """One JSON object per record with the platform's field names."""

    def __init__(self) -> None:
        super().__init__(_JSON_FIELDS, rename_fields=_RENAMES, reserved_attrs=_SKIPPED)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``; ``-`` when there is no request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(rid)s] %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc_time(record)

    def format(self, record: logging.LogRecord) -> str:
        record.rid = getattr(record, "request_id", None) or "-"
        return super().format(record)


def logging_config(log_format: LogFormat = "text", level: str = "INFO") -> dict[str, Any]:
    """A dictConfig for the root logger and uvicorn's loggers, all to stderr."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    level = level.upper()
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            # uvicorn's own handlers would print a second, unstructured copy: use the root's.
            **{
                name: {"level": level, "handlers": [], "propagate": True}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            # httpx logs every request's full URL at INFO, query string included: merchant
            # webhook URLs carry tokens (``?token=...``). Only their warnings are worth a line.
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }


def configure_logging(log_format: LogFormat = "text", level: str = "INFO") -> None:
    """Apply :func:`logging_config` in this process (the worker and CLI commands)."""
    install_record_factory()
    logging.config.dictConfig(logging_config(log_format, level))
