"""One run's stages wired together: source thread -> model workers -> reorder buffer -> post-stages.

    source thread:   frames -> [crop] -> resize + pad (OpenCV, exact) ──► PreparedFrame   (bounded by permits)
    model workers:   N threads (a CUDA stream each): model -> render ──► RenderedFrame     (any order)
    caller's thread: reorder buffer -> batches -> post-stages -> one copy to the host ──► HintBatch

Memory does not grow with video length: at most ``2 N B`` frames (B frames per model call) are between the
source and the caller's thread (permits taken by the source, given back as frames leave the reorder buffer),
one batch is being assembled, and the GPU-busy measurement folds its events as they complete. Any stage's exception (or
Ctrl-C, or the consumer closing early) stops the others, which end after their current frame; the first
failure is re-raised in the caller's thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from ..config import EncodeConfig
from ._framing import FramePlan
from ._post import HintBatch, PostStages
from ._reorder import ReorderBuffer
from ._source import SourceFrame, SourceStage
from ._threads import RunState, StageThread, Stopped
from ._workers import ModelWorkers, RenderMode, cpu_threads, plan_workers


@dataclass(frozen=True)
class RunSpec:
    """What a run of the stages is: the loaded estimator, the run's config, its framing, what the workers
    render, whether previews travel with the frames, and how many frames come (when known: no more workers
    than frames)."""

    estimator: object  # DensePoseEstimator (its loaded model, LUT and render backend)
    config: EncodeConfig
    plan: FramePlan
    mode: RenderMode
    want_preview: bool = False
    frame_count: int | None = None

    @staticmethod
    def mode_for(config: EncodeConfig, plan: FramePlan) -> RenderMode:
        """IUV with --iuv; label maps when a post-stage needs them (--smooth, framing that resamples or pads);
        else the fused render of coloured hints."""
        if config.iuv_path is not None:
            return RenderMode.IUV
        return RenderMode.LABELS if (config.smooth > 1 or plan.needs_label_stage) else RenderMode.HINT


class Pipeline:
    """The stages of one run. ``batches()`` runs them and yields ``HintBatch``es in order (in the caller's
    thread); afterwards ``timings`` holds each stage's busy seconds."""

    def __init__(self, spec: RunSpec, frames: Callable[[], Iterable[SourceFrame]],
                 cancel_check: Callable[[], None] | None = None) -> None:
        self.spec = spec
        estimator = spec.estimator
        self.state = RunState()
        self.on_cuda = estimator.device.type == "cuda"
        model_batch = estimator.model.model_batch
        worker_plan = plan_workers(estimator.device, spec.config.workers, frames=spec.frame_count,
                                   model_batch=model_batch)
        inbox: queue.Queue = queue.Queue(maxsize=worker_plan.workers)
        results: queue.Queue = queue.Queue()  # unbounded: the permits bound what is in flight
        permits = threading.Semaphore(2 * worker_plan.workers * model_batch)
        self.source = SourceStage(frames, spec.plan, spec.want_preview, inbox, permits, worker_plan.workers,
                                  self.state, model_batch)
        self.workers = ModelWorkers(estimator, spec.plan.hint_hw, spec.mode, worker_plan, inbox, results, self.state)
        self.reorder = ReorderBuffer(results, permits, worker_plan.workers, self.state, cancel_check)
        self.post = PostStages(estimator, spec.plan, spec.mode, spec.config.batch_size, spec.config.smooth,
                               spec.want_preview)
        self._source_thread = StageThread("densevid-source", self.source.run, self.state)
        self._caller_threads = contextlib.ExitStack()  # the caller's torch thread count during the run
        self._started = self._closed = False
        self.timings: dict[str, float] = {}

    def start(self) -> None:
        """Start decoding and the model workers now, so that what the caller does before it takes the batches
        (hashing the model file for the fingerprint, opening the outputs) overlaps the first model calls.
        ``batches`` starts them itself when this was not called; a started pipeline must be iterated through
        ``batches`` or ``close``d."""
        if self._started:
            return
        self._started = True
        self._caller_threads.enter_context(cpu_threads(self.workers.plan))
        if self.on_cuda:
            device = self.spec.estimator.device
            base = torch.cuda.Event(enable_timing=True)
            base.record(torch.cuda.current_stream(device))
            self.workers.busy.start(base)
        self._source_thread.start()
        self.workers.start()

    def close(self) -> None:
        """Stop the stages (each ends after its current frame) and wait for them; the caller's thread count is
        back as it was. Safe to call more than once, and before ``start``."""
        if self._started and not self._closed:
            self.state.stop.set()
            self._join()

    def _join(self) -> None:
        self._closed = True
        try:
            self._source_thread.join()
            self.workers.join()
        finally:
            self._caller_threads.close()

    def batches(self) -> Iterator[HintBatch]:
        self.start()
        try:
            yield from self.post.batches(self.reorder)
        except Stopped:
            pass
        except BaseException:  # also the consumer closing early: the stages end after their current frame
            self.state.stop.set()
            raise
        finally:
            self._join()
        self.state.raise_failure()  # reached on a normal end, or when a stage failed (Stopped)
        self.timings = {"decode": self.source.seconds, "post": self.post.seconds,
                        "model": sum(self.workers.model_seconds), "render": sum(self.workers.render_seconds)}
        if self.on_cuda and self.workers.busy.calls:
            self.timings["model_gpu"], self.timings["model_gpu_sum"] = self.workers.busy.totals()
