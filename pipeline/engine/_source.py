"""The source stage: decoded frames -> [--fps: drop] -> [crop] -> resize + pad -> ``PreparedFrame``s.

``video_frames`` turns a job's input into (frame, output pts) pairs, --fps dropping or repeating frames
on the way (``_fps.resample``); ``SourceStage`` runs in its own thread, frames the frames as the job's
``FramePlan`` says, resizes and pads them exactly as the node does (OpenCV, ``_preprocess``), and hands
them to the model workers, never more in flight than its permits allow.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable, Iterator

import numpy as np

from ..core import FrameBatch
from ..io import VideoInfo, iter_frame_batches
from ._fps import resample
from ._framing import FramePlan
from ._preprocess import resize_and_pad
from ._threads import RunState, acquire, put
from ._window import Trim, WindowStart, window_batches
from ._workers import END, PreparedFrame

# (uint8 RGB frame [H, W, 3], the output pts that show it: none, one or several with --fps)
SourceFrame = tuple[np.ndarray, tuple[int, ...]]


def video_frames(path, info: VideoInfo, config, warnings: list[str], trim: Trim | None = None,
                 start_out: WindowStart | None = None) -> Iterator[SourceFrame]:
    """The input's frames that are shown (the frame window and ``trim`` choose them, --fps drops more),
    each with the output pts showing it; one-line warnings about the input (e.g. a truncated file) are
    appended to ``warnings``."""
    batches = iter_frame_batches(path, batch_size=config.batch_size, warnings_out=warnings)
    batches = window_batches(batches, config, trim, start_out)
    for batch, out_pts in kept_batches(batches, info, config):
        yield from zip(batch.frames_rgb.numpy(), out_pts)


def kept_batches(batches: Iterable[FrameBatch], info: VideoInfo, config
                 ) -> Iterator[tuple[FrameBatch, list[tuple[int, ...]]]]:
    """Decoded batches -> (batch of the frames that are shown, their output pts); --fps drops/repeats here."""
    if config.fps is None:
        for batch in batches:
            yield batch, [(p,) for p in batch.pts]
        return

    def frames():
        for batch in batches:
            for frame in batch:
                yield frame.pts, (frame, batch.time_base)

    nominal = 1 / info.fps if info.fps else None
    kept: list = []  # Frame, its output pts
    time_base = None
    for (frame, time_base), out_pts in resample(frames(), info.time_base, config.fps, nominal):
        kept.append((frame, out_pts))
        if len(kept) >= config.batch_size:
            yield FrameBatch.of([f for f, _ in kept], time_base), [p for _, p in kept]
            kept = []
    if kept:
        yield FrameBatch.of([f for f, _ in kept], time_base), [p for _, p in kept]


class SourceStage:
    """Frames -> lists of ``model_batch`` ``PreparedFrame``s (one model call each) on the workers' inbox, in
    the source thread.

    ``frames()`` yields ``SourceFrame``s; a permit is taken per frame and given back when the frame
    leaves the reorder buffer, so at most the permits' count is between this stage and the caller.
    ``seconds`` is the busy time (decode, crop, resize + pad, preview framing).
    """

    def __init__(self, frames: Callable[[], Iterable[SourceFrame]], plan: FramePlan, want_preview: bool,
                 inbox: queue.Queue, permits: threading.Semaphore, workers: int, state: RunState,
                 model_batch: int = 1) -> None:
        self.frames, self.plan, self.want_preview = frames, plan, want_preview
        self.inbox, self.permits, self.workers, self.stop = inbox, permits, workers, state.stop
        self.model_batch = model_batch
        self.seconds = 0.0

    def run(self) -> None:
        plan = self.plan
        frames = iter(self.frames())
        seq = 0
        group: list[PreparedFrame] = []
        while True:
            t0 = time.perf_counter()
            item = next(frames, None)
            if item is None:
                break
            frame, out_pts = item
            source = plan.crop_frame(frame)
            padded = resize_and_pad(source, plan.resolution)[0]
            preview = plan.preview_source(source) if self.want_preview else None
            self.seconds += time.perf_counter() - t0
            acquire(self.permits, self.stop)  # given back when the frame leaves the reorder buffer
            group.append(PreparedFrame(seq, padded, out_pts, preview))
            seq += 1
            if len(group) == self.model_batch:
                put(self.inbox, group, self.stop)
                group = []
        if group:
            put(self.inbox, group, self.stop)
        for _ in range(self.workers):
            put(self.inbox, END, self.stop)
