"""The engine's thread plumbing: queue waits that give up when the run stops, and stage threads.

Every stage of a run shares one ``stop`` event. A stage that fails records its exception and sets
it; every other stage notices within ``POLL_SECONDS`` (waits on queues and permits poll it), unwinds
with ``Stopped`` and ends; the caller re-raises the first error.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

POLL_SECONDS = 0.1


class Stopped(Exception):
    """Raised inside a stage when the run stopped (another stage failed, or the caller gave up)."""


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
    """A daemon thread running one stage; its exception is kept in ``error`` and stops the run."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._stop_event = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except Stopped:
            pass
        except BaseException as error:  # re-raised in the caller's thread
            self.error = error
            self._stop_event.set()
