"""Model workers: N frames in the model at once, each in its own thread.

With the real exports the model is over 99% of the work on a CPU, and on a GPU the one stage that
must never wait, so the engine keeps several frames in it. ``ModelWorkers`` runs N threads; each
takes a ``PreparedFrame`` from a shared bounded queue, runs the model and the render on it, and puts
a ``RenderedFrame`` on the results queue. Frames finish out of order; the engine puts them back in
order (a reorder buffer bounded by the number of frames in flight).

* CUDA: each worker issues its frames on its own stream. The exports synchronise with the host
  several times per call (NMS, top-k, per-image filtering); one thread waits at each sync, N
  threads keep the GPU fed while any of them waits.
* CPU: torch's intra-op threads (``torch.get_num_threads()``: the cores, OMP_NUM_THREADS, or what
  the caller set) are split between the workers. ``torch.set_num_threads`` called inside a worker
  thread sizes that thread's own OpenMP team (OpenMP's thread count is per thread, and MKL's is set
  thread-locally): the caller's count is unchanged. It also becomes the default of threads created
  later, so the engine restores the caller's setting when a run ends (``cpu_threads``).

Default number of workers (``plan_workers``), from the device and that thread budget (the
measurements behind the rule are in the README, "Speed: model workers"):

* CPU: ``min(budget, CPU_MAX_WORKERS)`` workers of ``budget // workers`` intra-op threads each. With
  a model of the real exports' cost, whole frames side by side scale better than intra-op threads
  (two frames at once in two 1-thread workers beat one frame with 2 threads), so every core gets
  its own frame up to ``CPU_MAX_WORKERS``; past that the workers get more threads instead, since
  every frame in flight holds the model's activations.
* CUDA: ``CUDA_WORKERS``: throughput rises with N up to 4 and beyond for a scripted R-CNN (its
  host-side syncs overlap); 4 keeps most of the gain for little memory and few host threads.
"""

from __future__ import annotations

import contextlib
import enum
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from ._threads import RunState, StageThread, get, put

CPU_MAX_WORKERS = 4
CUDA_WORKERS = 4
CUDA_BATCHED_WORKERS = 2
END = object()  # on the inbox: no more frames (one per worker)
DONE = object()  # on the results queue: a worker has finished


class RenderMode(enum.Enum):
    """What the workers render per frame: the coloured hint itself (the fused render), or the label map
    (for post-stages: smoothing, framing that resamples or pads), or labels with U and V (--iuv)."""

    HINT = "hint"
    LABELS = "labels"
    IUV = "iuv"


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    threads: int | None  # torch intra-op threads per worker on the CPU; None: left as they are (CUDA)


def plan_workers(device: torch.device, requested: int | None = None, budget: int | None = None,
                 frames: int | None = None, model_batch: int = 1) -> WorkerPlan:
    """How many model calls run at once, and with how many intra-op threads each (see above).

    ``requested``: the --workers setting (None: the default rule); ``budget``: the CPU threads to
    split (default ``torch.get_num_threads()``); ``frames``: how many frames the run has, when known:
    by default no more workers than batches (an image gets one worker with every thread);
    ``model_batch``: frames per call (a native model that batches: on CUDA ``CUDA_BATCHED_WORKERS`` then,
    since one call already fills the GPU and a second one overlaps its host-side steps).
    """
    default = CUDA_WORKERS if model_batch == 1 else CUDA_BATCHED_WORKERS
    if device.type != "cuda":
        budget = max(1, budget or torch.get_num_threads())
        default = min(budget, CPU_MAX_WORKERS)
    calls = -(-frames // model_batch) if frames else None
    workers = requested or (min(default, calls) if calls else default)
    return WorkerPlan(workers, None if device.type == "cuda" else max(1, budget // workers))


@contextlib.contextmanager
def cpu_threads(plan: WorkerPlan):
    """The caller's thread runs with a worker's share of the threads during a run; afterwards the
    caller's setting is back (also as the default for new threads, which the workers changed)."""
    if plan.threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class PreparedFrame:
    """Source -> workers: one frame resized and padded for the model."""

    seq: int  # position in the run: the order the outputs keep
    padded_rgb: np.ndarray  # uint8 [H, W, 3]
    out_pts: tuple[int, ...]  # the output pts that show this frame (--fps: none, one or several)
    preview: np.ndarray | None = None  # the source framed like the hint (--preview)


@dataclass(frozen=True)
class RenderedFrame:
    """Workers -> the engine: one frame's rendered maps, on the model's device."""

    seq: int
    maps: tuple[torch.Tensor, ...]  # (hint [h, w, 3],) | (labels [h, w],) | (I, U, V) [h, w]
    out_pts: tuple[int, ...]
    preview: np.ndarray | None
    ready: "torch.cuda.Event | None" = None  # CUDA: recorded on the worker's stream after the render


class ModelWorkers:
    """N threads running the model and the render on frames from ``inbox`` into ``results``.

    An inbox item is a list of ``PreparedFrame``s of one size: one model call (``detect_batch``) for all of
    them (the source groups ``model_batch`` frames; 1 for the TorchScript file), then the render of each.

    ``mode``: see ``RenderMode``. Each worker ends at an ``END`` on the inbox, posting ``DONE``; an error
    stops the run. On CUDA ``busy`` measures the time the device spends in model calls (``BusyClock``).
    """

    def __init__(self, estimator, hint_hw: tuple[int, int], mode: RenderMode, plan: WorkerPlan, inbox: queue.Queue,
                 results: queue.Queue, state: RunState) -> None:
        self.estimator = estimator
        self.hint_hw = hint_hw
        self.mode = mode
        self.plan = plan
        self.inbox, self.results, self.stop = inbox, results, state.stop
        self.on_cuda = estimator.device.type == "cuda"
        # "cuda" means the caller's current device; a new thread's current device is device 0
        self.device_index = (estimator.device.index if estimator.device.index is not None
                             else torch.cuda.current_device()) if self.on_cuda else None
        self.model_seconds = [0.0] * plan.workers
        self.render_seconds = [0.0] * plan.workers
        self.busy = BusyClock() if self.on_cuda else None  # CUDA: the model calls' device time
        self.threads = [StageThread(f"densevid-model-{i}", lambda i=i: self._work(i), state)
                        for i in range(plan.workers)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def _work(self, index: int) -> None:
        if self.plan.threads is not None:
            torch.set_num_threads(self.plan.threads)  # this thread's OpenMP team (see the module docstring)
        stream = None
        if self.on_cuda:
            torch.cuda.set_device(self.device_index)  # the current device is per thread
            stream = torch.cuda.Stream(self.device_index)
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            while True:
                item = get(self.inbox, self.stop)
                if item is END:
                    put(self.results, DONE, self.stop)
                    return
                for rendered in self._render(item, stream, index):
                    put(self.results, rendered, self.stop)

    def _render(self, items: list[PreparedFrame], stream, index: int) -> list[RenderedFrame]:
        estimator, hint_hw = self.estimator, self.hint_hw
        t0 = time.perf_counter()
        images = torch.from_numpy(np.stack([item.padded_rgb for item in items]))
        if stream is None:
            detections = estimator.detect_batch(images)
        else:
            images = images.pin_memory().to(estimator.device, non_blocking=True)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            detections = estimator.detect_batch(images)
            end.record(stream)
            self.busy.add(start, end)
        t1 = time.perf_counter()
        rendered = []
        for item, frame_detections in zip(items, detections):
            if self.mode is RenderMode.HINT:
                maps = (estimator.render(frame_detections, hint_hw),)
            elif self.mode is RenderMode.LABELS:
                maps = (estimator.render_labels(frame_detections, hint_hw),)
            else:
                maps = tuple(estimator.render_iuv(frame_detections, hint_hw))
            rendered.append((item, maps))
        ready = None
        if stream is not None:
            ready = torch.cuda.Event()
            ready.record(stream)
        self.model_seconds[index] += t1 - t0
        self.render_seconds[index] += time.perf_counter() - t1
        return [RenderedFrame(item.seq, maps, item.out_pts, item.preview, ready) for item, maps in rendered]


class BusyClock:
    """The device time of the model calls, from CUDA events around each: ``seconds`` in which at least one
    call was running (the union of their intervals, a measure of how busy the model kept the GPU) and
    ``sum_seconds`` (the calls' durations added up; their ratio is the calls' mean overlap).

    Memory is bounded whatever the video's length: calls are folded into the totals as soon as their events
    have completed, keeping only the intervals that a call still running could overlap. That works because
    an event that has not completed yet lies later on the device's clock than every completed one.
    ``base`` is the event the times are measured from; ``add`` may be called from several threads.
    """

    def __init__(self, base=None, fold_every: int = 64) -> None:
        self.base = base
        self.fold_every = fold_every
        self._lock = threading.Lock()
        self._pending: list = []  # (start, end) events, not folded yet
        self._spans: list[tuple[float, float]] = []  # completed calls (ms from base) that a pending one may overlap
        self._busy_ms = 0.0  # union of the intervals already folded away
        self._sum_ms = 0.0
        self.calls = 0

    def start(self, base) -> None:
        """Measure from ``base`` (an event recorded before the first call)."""
        self.base = base

    def add(self, start, end) -> None:
        with self._lock:
            self._pending.append((start, end))
            self.calls += 1
            if len(self._pending) >= self.fold_every:
                self._fold(wait=False)

    def _fold(self, wait: bool) -> None:
        if wait:
            for _, end in self._pending:
                end.synchronize()
        done = [end.query() for _, end in self._pending]  # first every end, then the starts (see below)
        still, horizon = [], float("inf")
        for (start, end), finished in zip(self._pending, done):
            if finished:
                lo, hi = self.base.elapsed_time(start), self.base.elapsed_time(end)
                self._spans.append((lo, hi))
                self._sum_ms += hi - lo
            else:
                still.append((start, end))
                # started: it may overlap completed calls from its start on; not started by now: it starts
                # after every end found complete above
                if start.query():
                    horizon = min(horizon, self.base.elapsed_time(start))
        self._pending = still
        # merge; an interval that ends before the horizon can grow no more (a call not started yet starts after
        # every completed event), so it goes into the total
        merged: list[list[float]] = []
        for lo, hi in sorted(self._spans):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        kept = []
        for lo, hi in merged:
            if hi < horizon:
                self._busy_ms += hi - lo
            else:
                kept.append((lo, hi))
        self._spans = kept

    def totals(self) -> tuple[float, float]:
        """(busy seconds, summed seconds) of every call so far; waits for the calls in flight."""
        with self._lock:
            self._fold(wait=True)
            return self._busy_ms / 1000.0, self._sum_ms / 1000.0
