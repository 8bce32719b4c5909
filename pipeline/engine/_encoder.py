"""The encode thread: ``HintBatch``es -> [--fps: repeat] -> ``OutputBatch`` -> the job's sinks, so that x264
(and the PNG and IUV writers) overlap the model."""

from __future__ import annotations

import contextlib
import queue
import time
from typing import Callable

import numpy as np

from ._post import QUEUE_DEPTH
from ._threads import RunState, StageThread, Stopped, get, put


class Encoder:
    """Feeds the sinks in its own thread; at most ``QUEUE_DEPTH`` batches wait for it.

    ``progress(n)`` is called in the encode thread after every batch of n frames written, and
    ``on_written(hints)`` with that batch's hints (uint8 [B, h, w, 3], repeats included).
    """

    def __init__(self, state: RunState, progress: Callable[[int], None] | None,
                 on_written: Callable[[np.ndarray], None] | None = None) -> None:
        self.state = state
        self.stop = state.stop
        self.progress = progress
        self.on_written = on_written
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.frames_written = 0
        self.seconds = 0.0

    def run(self, batches, sinks) -> None:
        """Every batch of the ``batches`` iterator (closed at the end) into ``sinks``; the first error of any
        stage is raised here."""
        thread = StageThread("densevid-encode", lambda: self._encode(sinks), self.state)
        thread.start()
        try:
            with contextlib.closing(batches):
                for batch in batches:
                    put(self.queue, batch, self.stop)
            put(self.queue, None, self.stop)
            thread.join()
        except Stopped:
            pass
        except BaseException:
            self.stop.set()
            raise
        finally:
            thread.join() if not self.stop.is_set() else thread.join(timeout=5)
        self.state.raise_failure()  # whichever stage failed first, whoever noticed the stop

    def _encode(self, sinks) -> None:
        while True:
            item = get(self.queue, self.stop)
            if item is None:
                return
            t0 = time.perf_counter()
            batch = item.output()
            if batch.pts:
                sinks.write(batch)
            self.seconds += time.perf_counter() - t0
            self.frames_written += len(batch.pts)
            if self.on_written and batch.pts:
                self.on_written(batch.hints)
            if self.progress:
                self.progress(len(item.out_pts))
