"""The reorder buffer: the workers' results, which finish in any order, back in the source's order.

Bounded by the permits the source takes (one per frame in flight): a frame gives its permit back when
it leaves here, so the buffer never holds more than the permits' count.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

from ._threads import RunState, get
from ._workers import DONE, RenderedFrame


class ReorderBuffer:
    """Yields the ``RenderedFrame``s of ``results`` in ``seq`` order until every one of ``workers`` has posted
    ``DONE``. ``cancel_check`` runs while waiting (what it raises propagates)."""

    def __init__(self, results: queue.Queue, permits: threading.Semaphore, workers: int, state: RunState,
                 cancel_check: Callable[[], None] | None = None) -> None:
        self.results, self.permits, self.workers, self.stop = results, permits, workers, state.stop
        self.cancel_check = cancel_check

    def __iter__(self) -> Iterator[RenderedFrame]:
        waiting: dict[int, RenderedFrame] = {}
        next_seq, finished = 0, 0
        while True:
            if next_seq in waiting:
                frame = waiting.pop(next_seq)
                next_seq += 1
                self.permits.release()
                yield frame
            elif finished == self.workers:
                return
            else:
                item = get(self.results, self.stop, poll=self.cancel_check)
                if item is DONE:
                    finished += 1
                else:
                    waiting[item.seq] = item
