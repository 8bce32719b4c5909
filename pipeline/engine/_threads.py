"""The engine's thread plumbing: queue waits that give up when the run stops, and stage threads.

The stages of a run share one ``RunState``: a stop event and the failures in the order they
happened. A stage that fails records its exception and sets the event; every other stage notices
within ``POLL_SECONDS`` (waits on queues and permits poll it), unwinds with ``Stopped`` and ends;
the caller raises the first failure, whichever stage noticed the stop first.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

POLL_SECONDS = 0.1


class Stopped(Exception):
    """Raised inside a stage when the run stopped (another stage failed, or the caller gave up)."""


class RunState:
    """What the stages of one run share: the stop event, and the failures, first first."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.failures: list[BaseException] = []

    def fail(self, error: BaseException) -> None:
        self.failures.append(error)
        self.stop.set()

    def raise_failure(self) -> None:
        if self.failures:
            raise self.failures[0]


def put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise Stopped
        try:
            q.put(item, timeout=POLL_SECONDS)
            return
        except queue.Full:
            continue


def get(q: queue.Queue, stop: threading.Event, poll: Callable[[], None] | None = None):
    """The next item; ``poll`` (e.g. a cancellation check that raises) runs while waiting."""
    while True:
        if stop.is_set():
            raise Stopped
        if poll is not None:
            poll()
        try:
            return q.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue


def acquire(permits: threading.Semaphore, stop: threading.Event) -> None:
    while not permits.acquire(timeout=POLL_SECONDS):
        if stop.is_set():
            raise Stopped
    if stop.is_set():
        raise Stopped


class StageThread(threading.Thread):
    """A daemon thread running one stage; its exception is recorded in the run's failures and stops it."""

    def __init__(self, name: str, target: Callable[[], None], state: RunState) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._state = state

    def run(self) -> None:
        try:
            self._target_fn()
        except Stopped:
            pass
        except BaseException as error:  # raised in the caller's thread
            self._state.fail(error)
