"""One periodic background thread, shared by everything an API worker refreshes.

The fraud champion, the fraud feature store and the bandit snapshots each poll something
on an interval. They share this base so start/stop/crash handling is written once: a tick
that raises is logged and retried next period, and ``start()`` after ``stop()`` works (the
app's lifespan can run more than once in one process, as tests do).
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class PeriodicTask:
    """Subclasses set ``interval_seconds`` and implement :meth:`tick`."""

    thread_name = "periodic-task"
    interval_seconds: float = 1.0
    run_immediately = True  # first tick at start, not one interval later

    def tick(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if getattr(self, "_thread", None) is not None:
            return
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name=self.thread_name, daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        stop = self._stop_event
        if not self.run_immediately and stop.wait(self.interval_seconds):
            return
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # never let the thread die
                log.exception("%s tick failed; retrying next period", self.thread_name)
            stop.wait(self.interval_seconds)

    def stop(self) -> None:
        thread = getattr(self, "_thread", None)
        if thread is None:
            return
        self._stop_event.set()
        thread.join(timeout=5)
        self._thread = None
