"""The request id that ties one checkout's log lines together across processes.

The widget sends ``X-Request-Id`` (one per checkout), so the API's log lines, the gateway
calls made while serving the request and the learner's reward for the decision can all be
found by the id the browser knows. A client's id is only trusted as a label: it is bounded
and restricted to a log-safe alphabet (no spaces, quotes or control characters that could
forge log lines or break JSON consumers); anything else is replaced by a generated id rather
than refused, because a bad tracing header must never fail a payment.

The id lives in a :class:`~contextvars.ContextVar`: Starlette copies the context into the
threadpool that runs sync endpoints, so code anywhere below a request sees it without
passing it around. Work handed to a ``concurrent.futures`` executor does *not* inherit it;
submit ``contextvars.copy_context().run`` there.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

HEADER = "X-Request-Id"
MAX_LENGTH = 100
_VALID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")
#: Where the middleware leaves the id in the ASGI scope, for code that runs outside the
#: request's context (Starlette's outermost error handler runs after the middleware returned).
SCOPE_KEY = "checkoutlab.request_id"

_request_id: ContextVar[str | None] = ContextVar("checkoutlab_request_id", default=None)


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


def valid_request_id(value: str | None) -> str | None:
    """``value`` when it is acceptable as a client-chosen request id, else None."""
    if value is not None and _VALID.fullmatch(value):  # "^...$" would accept a final "\n"
        return value
    return None


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def bind_request_id(request_id: str | None) -> Iterator[str | None]:
    """Attach ``request_id`` to every log record emitted inside the block (None clears it)."""
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)
