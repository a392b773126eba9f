"""The shared periodic thread: ticks, survives a failing tick, restarts after stop."""

from __future__ import annotations

import threading

from checkoutlab.background import PeriodicTask


class Counter(PeriodicTask):
    interval_seconds = 0.01

    def __init__(self, fail_first: bool = False) -> None:
        self.ticks = 0
        self.fail_first = fail_first
        self.ticked = threading.Event()

    def tick(self) -> None:
        self.ticks += 1
        if self.fail_first and self.ticks == 1:
            raise RuntimeError("first tick fails")
        self.ticked.set()


def test_a_failing_tick_is_retried() -> None:
    task = Counter(fail_first=True)
    task.start()
    assert task.ticked.wait(5)
    task.stop()
    assert task.ticks >= 2


def test_start_after_stop_runs_again() -> None:
    task = Counter()
    task.start()
    assert task.ticked.wait(5)
    task.stop()
    task.ticked.clear()
    task.start()
    assert task.ticked.wait(5), "a restarted task must tick again"
    task.stop()
