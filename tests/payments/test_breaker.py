"""The per-gateway circuit breaker: opens on consecutive failures, one probe when half-open."""

from __future__ import annotations

import threading

import pytest

from checkoutlab.payments.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, threshold: int = 3, reset: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, reset_seconds=reset, clock=clock)


def test_opens_after_consecutive_failures_only(clock: Clock) -> None:
    breaker = make(clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    snap = breaker.snapshot()
    assert snap.consecutive_failures == 3 and snap.retry_in_seconds == 30.0


def test_half_open_lets_one_probe_through_and_its_success_closes(clock: Clock) -> None:
    breaker = make(clock, threshold=1, reset=10)
    breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allow()
    assert breaker.snapshot().retry_in_seconds == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.allow()  # the probe
    assert breaker.state == "half_open"
    assert not breaker.allow()  # everyone else keeps skipping while it runs
    breaker.record_success()
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(5))
    assert breaker.snapshot().consecutive_failures == 0


def test_failed_probe_opens_again_for_a_full_period(clock: Clock) -> None:
    breaker = make(clock, threshold=2, reset=10)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_a_probe_that_never_reports_is_given_up(clock: Clock) -> None:
    breaker = make(clock, threshold=1, reset=5)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow()
    clock.now += 4
    assert not breaker.allow()
    clock.now += 1  # the probe's worker died: another caller may probe
    assert breaker.allow()


def test_exactly_one_probe_under_concurrency(clock: Clock) -> None:
    breaker = make(clock, threshold=1, reset=1)
    breaker.record_failure()
    clock.now += 1
    allowed: list[bool] = []
    barrier = threading.Barrier(20)

    def ask() -> None:
        barrier.wait()
        allowed.append(breaker.allow())

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1


def test_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(reset_seconds=0)


def test_a_released_probe_frees_the_slot_at_once(clock: Clock) -> None:
    breaker = make(clock, threshold=1, reset=10)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()  # the probe
    assert not breaker.allow()
    breaker.release()  # its request was refused as invalid: no verdict on the gateway
    assert breaker.state == "half_open"
    assert breaker.allow(), "the probe slot leaked until reset_seconds passed"


def test_a_late_failure_while_open_does_not_restart_the_wait(clock: Clock) -> None:
    breaker = make(clock, threshold=1, reset=10)
    breaker.record_failure()  # opens at 1000
    clock.now += 8
    breaker.record_failure()  # a call that started before it opened, failing late
    assert breaker.snapshot().retry_in_seconds == pytest.approx(2.0)
    clock.now += 2
    assert breaker.allow()
