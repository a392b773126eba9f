"""Prometheus metrics of the API workers and the background worker (prometheus-client).

The metric objects are module-level because prometheus-client registers each name once
per process; the functions below are the only way the rest of the platform touches them,
so a domain calls ``observe_gateway_attempt(...)`` and never needs to know label names.

Several API workers: ``checkoutlab serve --workers N`` points ``PROMETHEUS_MULTIPROC_DIR``
at a fresh directory before the workers start; each worker then writes its samples to
memory-mapped files there and ``/metrics`` (answered by whichever worker) merges all of
them. Counters and histograms are summed over workers, dead ones included, so totals never
go backwards when a worker is replaced. Gauges say per metric how workers combine:
``liveall`` keeps a ``pid`` label per live worker (what each worker serves: model and
policy versions), ``livemax``/``livesum`` aggregate over live workers. uvicorn's supervisor
has no hook for a worker's death, so a starting worker removes the live-gauge files of
processes that no longer exist (:func:`worker_started`).

Label values are bounded: methods outside the HTTP set become ``other``; the route label is
the route *template* (``/v1/checkout_sessions/{session_id}``), never the raw path, and
unmatched paths are ``unmatched``; gateway results outside :data:`GATEWAY_RESULTS` become
``other``. Merchant ids label the bandit gauges: one series per merchant with a learned
ordering policy.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The decision path targets a few milliseconds; gateways and slow pages take seconds.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: What ``observe_gateway_attempt`` accepts as ``result``; ``error`` and ``timeout`` are
#: failures of the gateway (what failover reacts to), ``skipped`` an attempt its open circuit
#: breaker did not send, the others are its answers.
GATEWAY_RESULTS = frozenset(
    {"succeeded", "declined", "requires_action", "processing", "error", "timeout", "skipped"}
)
GATEWAY_FAILURES = frozenset({"error", "timeout"})

# -- HTTP ---------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "checkoutlab_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "checkoutlab_http_request_duration_seconds",
    "Time from receiving a request to the end of its response, by route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "checkoutlab_http_requests_in_flight",
    "Requests being served now, over all live API workers.",
    multiprocess_mode="livesum",
)
API_WORKER_STARTED = Gauge(
    "checkoutlab_api_worker_started_timestamp_seconds",
    "Unix time each live API worker process started serving (one series per pid).",
    multiprocess_mode="liveall",
)

# -- decisions ----------------------------------------------------------------------------------

PROFILES_SERVED = Counter(
    "checkoutlab_profiles_served_total",
    "Payment profiles served, by risk level, experiment variant and degraded scoring.",
    ["risk_level", "experiment", "variant", "degraded"],
)

# -- gateways -----------------------------------------------------------------------------------

GATEWAY_ATTEMPTS = Counter(
    "checkoutlab_gateway_attempts_total",
    "Gateway calls recorded by payments routing, by gateway and result "
    "(skipped: not sent, circuit breaker open).",
    ["gateway", "result"],
)
GATEWAY_FAILURES_TOTAL = Counter(
    "checkoutlab_gateway_failures_total",
    "Gateway attempts that failed (error or timeout), by gateway and kind.",
    ["gateway", "result"],
)
GATEWAY_LATENCY = Histogram(
    "checkoutlab_gateway_attempt_duration_seconds",
    "Duration of one gateway attempt, by gateway.",
    ["gateway"],
    buckets=LATENCY_BUCKETS,
)

# -- models and policies in use (per API worker) -----------------------------------------------

FRAUD_MODEL_VERSION = Gauge(
    "checkoutlab_fraud_model_version",
    "Registry version of the fraud champion each API worker scores with (0: none, degraded).",
    ["model"],
    multiprocess_mode="liveall",
)
BANDIT_SNAPSHOT_SEQ = Gauge(
    "checkoutlab_bandit_snapshot_seq",
    "Sequence number of the policy snapshot each API worker serves, per merchant and policy.",
    ["merchant", "policy"],
    multiprocess_mode="liveall",
)
BANDIT_SNAPSHOT_STALENESS = Gauge(
    "checkoutlab_bandit_snapshot_staleness_seconds",
    "Seconds since a worker last confirmed it serves the newest snapshot (worst live worker).",
    ["merchant", "policy"],
    multiprocess_mode="livemax",
)

# -- the learner (``checkoutlab worker``) -------------------------------------------------------

LEARNER_LAG_EVENTS = Gauge(
    "checkoutlab_learner_lag_events",
    "Learner events in the log after the learner's cursor (capped at "
    "checkoutlab.bandits.learner.LAG_CAP).",
    multiprocess_mode="max",
)
LEARNER_LAG_SECONDS = Gauge(
    "checkoutlab_learner_lag_seconds",
    "Age of the oldest event the learner has not consumed yet (0 when caught up).",
    multiprocess_mode="max",
)
LEARNER_CURSOR = Gauge(
    "checkoutlab_learner_cursor",
    "Id of the last event the learner consumed.",
    multiprocess_mode="max",
)
LEARNER_REWARDS = Counter(
    "checkoutlab_learner_rewards_total",
    "Rewards the learner recorded, by outcome (succeeded, window_closed).",
    ["outcome"],
)
LEARNER_BATCH_FAILURES = Counter(
    "checkoutlab_learner_batch_failures_total",
    "Learner batches that failed and were retried from the stored cursor.",
)
LEARNER_LAST_BATCH = Gauge(
    "checkoutlab_learner_last_batch_timestamp_seconds",
    "Unix time of the learner's last committed batch.",
    multiprocess_mode="max",
)


# -- recording ----------------------------------------------------------------------------------


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in HTTP_METHODS else "other"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def observe_profile(
    *, risk_level: str, experiment: str | None, variant: str | None, degraded: bool
) -> None:
    """One served payment profile (called once it is committed)."""
    PROFILES_SERVED.labels(
        risk_level, experiment or "none", variant or "none", "true" if degraded else "false"
    ).inc()


def observe_gateway_attempt(gateway: str, result: str, latency_s: float) -> None:
    """One attempt at a gateway, whatever its answer; payments routing calls this.

    ``result`` is one of :data:`GATEWAY_RESULTS`: ``succeeded``, ``declined`` (an issuer or
    card decline: the gateway worked), ``requires_action``, ``processing``, ``error``
    (5xx, network, retryable processing error) or ``timeout``. The last two also count in
    ``checkoutlab_gateway_failures_total``. Never raises: metrics must not fail a payment.
    """
    try:
        result = result if result in GATEWAY_RESULTS else "other"
        GATEWAY_ATTEMPTS.labels(gateway, result).inc()
        if result in GATEWAY_FAILURES:
            GATEWAY_FAILURES_TOTAL.labels(gateway, result).inc()
        GATEWAY_LATENCY.labels(gateway).observe(max(float(latency_s), 0.0))
    except Exception:  # a broken metric must not break a confirm
        log.exception("gateway metric not recorded")


def gateway_result(status: str, *, retryable: bool = False, decline_code: str | None = None) -> str:
    """Map a recorded attempt (routing's result, retryable, decline code) onto ``result``.

    A ``failed`` answer that failover may retry elsewhere is a gateway ``error``; one it
    must not retry is an issuer ``declined``. An ``unknown`` outcome is a ``timeout`` when
    the call did not answer in time, else an ``error``.
    """
    if status == "failed":
        return "error" if retryable else "declined"
    if status == "unknown":
        return "timeout" if decline_code == "gateway_timeout" else "error"
    return status


def set_fraud_model(model: str, version: str | None) -> None:
    """The champion this worker scores with; None while it serves the rules fallback."""
    try:
        value = int(version) if version is not None else 0
    except ValueError:  # registry versions are integers; anything else is not comparable
        value = -1
    FRAUD_MODEL_VERSION.labels(model).set(value)


def set_bandit_snapshots(served: Iterable[tuple[str, str, int, float]]) -> None:
    """``(merchant, policy, snapshot seq, staleness seconds)`` of each chain a worker serves."""
    for merchant, policy, seq, staleness in served:
        BANDIT_SNAPSHOT_SEQ.labels(merchant, policy).set(seq)
        BANDIT_SNAPSHOT_STALENESS.labels(merchant, policy).set(staleness)


def observe_learner_batch(*, succeeded: int, window_closed: int) -> None:
    """One committed learner batch and the rewards it recorded."""
    if succeeded:
        LEARNER_REWARDS.labels("succeeded").inc(succeeded)
    if window_closed:
        LEARNER_REWARDS.labels("window_closed").inc(window_closed)
    LEARNER_LAST_BATCH.set(time.time())


def set_learner_lag(*, events: int, seconds: float, cursor: int) -> None:
    LEARNER_LAG_EVENTS.set(events)
    LEARNER_LAG_SECONDS.set(seconds)
    LEARNER_CURSOR.set(cursor)


def observe_learner_failure() -> None:
    LEARNER_BATCH_FAILURES.inc()


# -- exposition ---------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> bytes:
    """The text exposition of this process, or of every worker in multiprocess mode."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


_LIVE_FILE = re.compile(r"^gauge_live\w+?_(\d+)\.db$")


def worker_started() -> None:
    """Mark this API worker live; drop live gauges of workers that died without cleanup."""
    API_WORKER_STARTED.set(time.time())
    path = multiprocess_dir()
    if path is None:
        return
    dead = set()
    for name in os.listdir(path):
        match = _LIVE_FILE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        _multiprocess.mark_process_dead(pid, path)


def worker_stopped() -> None:
    """Remove this worker's live gauges (multiprocess mode) so its last values stop counting."""
    path = multiprocess_dir()
    if path is not None:
        _multiprocess.mark_process_dead(os.getpid(), path)


#: The files prometheus-client's multiprocess mode writes (``{type}_{pid}.db``).
_MULTIPROC_FILES = ("counter_*.db", "gauge_*.db", "histogram_*.db", "summary_*.db")


def prepare_multiprocess_dir(path: str | Path | None = None) -> tuple[str, bool]:
    """Create (or empty) the multiprocess directory and export it to child processes.

    The prometheus-client documentation requires the directory to be wiped between runs:
    files of a previous run would be summed into this one. Returns the path and whether it
    was created here (then the caller removes it on exit with :func:`remove_multiprocess_dir`).
    """
    created = path is None
    target = (
        Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="checkoutlab-metrics-"))
    )
    target.mkdir(parents=True, exist_ok=True)
    # Only prometheus-client's own files: the directory is the operator's choice and may
    # hold other SQLite databases.
    for pattern in _MULTIPROC_FILES:
        for stale in glob.glob(str(target / pattern)):
            os.remove(stale)
    os.environ[MULTIPROC_ENV] = str(target)
    return str(target), created


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sample(name: str, labels: dict[str, str] | None = None) -> Any:
    """One sample's value in this process's registry (tests and the CLI's status lines)."""
    return REGISTRY.get_sample_value(name, labels or {})
