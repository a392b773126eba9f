"""A per-gateway circuit breaker: skip a gateway that keeps failing, probe it again later.

Why not pybreaker: its ``CircuitBreaker.call`` holds one lock for the whole protected call,
which would serialise every payment through a gateway, and it has no way to ask "may I call"
apart from recording an outcome. Routing needs both: it checks the breaker, makes the call
under its own time budget, then reports. So this is the small state machine only:

- **closed**: calls pass; ``failure_threshold`` consecutive failures open it.
- **open**: calls are refused until ``reset_seconds`` have passed since it opened.
- **half-open**: exactly one caller (the probe) is let through; its success closes the
  breaker, its failure opens it again. A probe that never reports (its process died) is
  given up after ``reset_seconds`` so another caller can probe.

Only gateway failures count (timeouts, connection errors, 5xx, unreadable answers), never a
shopper's decline. State is per process: each API worker learns on its own, which costs a few
extra failed calls per worker and needs no shared store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerSnapshot:
    state: BreakerState
    consecutive_failures: int
    failure_threshold: int
    reset_seconds: float
    retry_in_seconds: float | None  # open: when the next probe may go; else None


class CircuitBreaker:
    """Thread-safe breaker for one gateway.

    Parameters
    ----------
    failure_threshold
        Consecutive failures that open the breaker.
    reset_seconds
        How long the breaker stays open before letting one probe through.
    clock
        Monotonic seconds; injected by tests.

    Examples
    --------
    >>> now = [0.0]
    >>> breaker = CircuitBreaker(failure_threshold=2, reset_seconds=10, clock=lambda: now[0])
    >>> breaker.record_failure(); breaker.record_failure(); breaker.state
    'open'
    >>> breaker.allow()
    False
    >>> now[0] = 10.0
    >>> breaker.allow(), breaker.allow()  # one probe only
    (True, False)
    >>> breaker.record_success(); breaker.state
    'closed'
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_seconds <= 0:
            raise ValueError("reset_seconds must be positive")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_since: float | None = None

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def allow(self) -> bool:
        """May a call go to the gateway now? In half-open, True for the one probe only."""
        with self._lock:
            now = self._clock()
            if self._state == "closed":
                return True
            if self._state == "open":
                if now - self._opened_at < self.reset_seconds:
                    return False
                self._state = "half_open"
                self._probe_since = None
            if self._probe_since is not None and now - self._probe_since < self.reset_seconds:
                return False  # a probe is out; wait for its result
            self._probe_since = now
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._probe_since = None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == "open":
                # A call that started before the breaker opened and fails late: the breaker
                # already knows; restarting the wait would postpone the probe indefinitely.
                return
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                self._state = "open"
                self._opened_at = self._clock()
                self._probe_since = None

    def release(self) -> None:
        """Report a call that ended without saying anything about the gateway's health.

        A request the gateway refused as invalid (the caller's mistake) neither closes nor
        opens the breaker; in half-open it hands the probe slot back at once, instead of
        leaving other callers refused until the probe is given up after ``reset_seconds``.
        """
        with self._lock:
            if self._state == "half_open":
                self._probe_since = None

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            retry_in = None
            if self._state == "open":
                retry_in = max(0.0, self.reset_seconds - (self._clock() - self._opened_at))
            return BreakerSnapshot(
                state=self._state,
                consecutive_failures=self._failures,
                failure_threshold=self.failure_threshold,
                reset_seconds=self.reset_seconds,
                retry_in_seconds=retry_in,
            )
