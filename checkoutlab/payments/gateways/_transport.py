"""What a failed HTTP call to a provider says about whether the provider acted.

Failover may move to another gateway only when the first one certainly did not charge;
reconciliation settles the other cases. A request that never left this machine (refused
connection, unknown host, connect timeout) cannot have been acted on; one that was sent and
then lost its answer (read timeout, connection dropped mid-answer) may have been.
"""

from __future__ import annotations

import requests
import urllib3.exceptions

__all__ = ["never_sent", "outcome_unknown_status"]


def outcome_unknown_status(status: int) -> bool:
    """Whether an HTTP answer with ``status`` leaves open that the provider acted.

    Every 5xx does: Stripe documents that a 500/502/503/504 may have been processed (a front
    end can fail after the back end charged), and Adyen gives no stronger promise. A 409 with
    an idempotency key means "the same request is still running". Only an answer that
    provably never reached the provider (see :func:`never_sent`) allows failover without
    reconciling first.
    """
    return status >= 500 or status == 409


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
