"""What a failed HTTP call to a provider says about whether the provider acted.

Failover may move to another gateway only when the first one certainly did not charge;
reconciliation settles the other cases. A request that never left this machine (refused
connection, unknown host, connect timeout) cannot have been acted on; one that was sent and
then lost its answer (read timeout, connection dropped mid-answer) may have been.
"""

from __future__ import annotations

import requests
import urllib3.exceptions

__all__ = ["UNKNOWN_OUTCOME_STATUSES", "never_sent"]

UNKNOWN_OUTCOME_STATUSES = frozenset({500, 504, 409})
"""HTTP answers after which the provider may have acted: an internal error, a proxy's
timeout waiting for it, or (with an idempotency key) "the same request is still running"."""

_NOT_CONNECTED = (
    requests.exceptions.ConnectTimeout,
    urllib3.exceptions.NewConnectionError,  # refused, unreachable, DNS (NameResolutionError)
    urllib3.exceptions.ConnectTimeoutError,
)


def never_sent(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) shows the connection was never established.

    requests wraps urllib3's errors in ``MaxRetryError.reason`` and exception chains, so
    every wrapped exception is inspected.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _NOT_CONNECTED):
            return True
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        nested += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [e for e in nested if isinstance(e, BaseException)]
    return False
