"""The engine: wiring only. A source thread, N model workers, the caller's thread, an encode thread.

    source thread:  PyAV -> [--fps: drop] -> [crop] -> resize+pad (OpenCV, exact) ──► PreparedFrame (bounded)
    model workers (N threads, a CUDA stream each): model -> render, per frame ──► RenderedFrame (any order)
    caller's thread: back in order -> batches -> post-stages -> one copy to the host ──► HintBatch (bounded)
    encode thread:  HintBatch -> [--fps: repeat] -> OutputBatch -> sinks (temporary files, renamed when complete)

A job is settled before any work (``prepare_job``: its output paths checked and its framing planned,
once), then run (``encode_job``) with a loaded estimator and one config: every setting of the run
(colormap, resolution, framing, ...) comes from that config; the estimator contributes the loaded
model (model, device, precision). An image input is a one-frame video whose sink is a PNG.
``render_frames`` runs the same stages on frames already in memory and yields the hints.

The model workers (``_workers``) keep N frames in the model at once; frames come out of them in any
order and the caller's thread restores it. Output order, timestamps and pixels do not depend on N.

Post-stages (only with --smooth, --iuv, or a --size framing that resamples or pads): the workers
render uint8 label maps instead of coloured hints, then, per batch on the device: temporal
smoothing (stateful across batches, K//2 frames of lookahead), framing (nearest resize, centred pad
with label 0), the colormap LUT, and the one device-to-host copy, into pinned buffers on CUDA from
a small ring that is reused (never more buffers than can be in flight).

Memory does not grow with video length: at most ``2 N`` frames are between the source and the
caller's thread (permits taken by the source, given back as frames leave the reorder buffer), one
batch is being assembled, and at most ``QUEUE_DEPTH`` batches wait for the encoder. Any stage's
exception (or Ctrl-C) stops the others, which end after their current frame, and is re-raised in
the caller's thread; the sinks then remove their temporary files.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..kernels.framing import frame_maps
from ..kernels.smooth import TemporalSmoother
from ._api import DensePoseEstimator
from ._config import EncodeConfig
from ._decode import VideoInfo, iter_frame_batches, probe_video
from ._errors import ConfigError, InputError
from ._fingerprint import run_fingerprint
from ._fps import resample
from ._framing import FramePlan, plan_framing
from ._preprocess import resize_and_pad
from ._sinks import OutputBatch, OutputTargets, check_targets, open_sinks
from ._threads import RunState, StageThread, Stopped, acquire, get, put
from ._types import FrameBatch
from ._workers import (
    DONE,
    END,
    ModelWorkers,
    PreparedFrame,
    RenderedFrame,
    busy_union_seconds,
    cpu_threads,
    plan_workers,
)

QUEUE_DEPTH = 2
# host buffers in flight: QUEUE_DEPTH queued + 1 being encoded + 1 being filled
_HOST_RING = QUEUE_DEPTH + 2


@dataclass(frozen=True)
class EncodeResult:
    input_path: Path
    output_path: Path
    frames: int
    seconds: float
    # busy seconds per stage: decode (incl. crop, resize+pad), model and render (summed over the
    # workers), post (ordering, post-stages, copy to the host), encode (the sinks); on CUDA also
    # model_gpu: seconds in which at least one model call was running on the device, and model_gpu_sum:
    # the model calls' device seconds added up (from CUDA events; their ratio is the calls' mean overlap)
    stage_seconds: dict = field(default_factory=dict)
    # one-line notes about the input that did not stop the encode (e.g. a truncated MKV/TS)
    warnings: tuple[str, ...] = ()
    workers: int = 1


@dataclass(frozen=True)
class EncodeJob:
    """One input, settled before any work: its probe, config, framing and checked output paths."""

    input_path: Path
    info: VideoInfo
    config: EncodeConfig
    plan: FramePlan
    targets: OutputTargets

    @property
    def time_base(self) -> Fraction:
        """Of the output's timestamps: 1/F with --fps, else the input's."""
        return 1 / self.config.fps if self.config.fps is not None else self.info.time_base

    @property
    def fps_hint(self) -> Fraction | None:
        return self.config.fps if self.config.fps is not None else self.info.fps


def frame_plan(height: int, width: int, config) -> FramePlan:
    """The framing of height x width frames under this config (ConfigError for a crop box that does not fit)."""
    return plan_framing(height, width, size=config.size, fit=config.fit, crop_box=config.crop_box,
                        resolution=config.resolution)


def prepare_job(input_path: str | Path, output_path: str | Path | None, config: EncodeConfig,
                info: VideoInfo | None = None) -> EncodeJob:
    """Probe the input (unless ``info`` is given), check every output path and plan the framing:
    the cheap refusals, before any model is loaded or frame decoded."""
    input_path = Path(input_path)
    info = info if info is not None else probe_video(input_path)
    targets = check_targets(input_path, Path(output_path) if output_path else None, info, config)
    return EncodeJob(input_path, info, config, frame_plan(info.height, info.width, config), targets)


def encode_video(input_path: str | Path, output_path: str | Path | None, estimator: DensePoseEstimator,
                 progress: Callable[[int], None] | None = None, info: VideoInfo | None = None,
                 config: EncodeConfig | None = None) -> EncodeResult:
    """Render the hint video of ``input_path`` into ``output_path`` (default: beside the input).

    ``config``: the settings of this call (colormap, resolution, outputs, framing, fps, smoothing,
    batch size, workers ...), default the estimator's. The estimator contributes only its loaded
    model (model, device, precision), so a batch shares one estimator across inputs with their own
    configs. ``progress(n)`` is called (in the encode thread) after every n frames written.
    """
    config = config if config is not None else estimator.config
    return encode_job(prepare_job(input_path, output_path, config, info), estimator, progress)


def encode_job(job: EncodeJob, estimator: DensePoseEstimator, progress: Callable[[int], None] | None = None
               ) -> EncodeResult:
    """Run a prepared job with a loaded model (see ``encode_video``)."""
    started = time.perf_counter()
    warnings: list[str] = []
    stages = _Stages(estimator.with_config(job.config), job.config, job.plan, _render_mode(job.config, job.plan),
                     lambda: _video_frames(job, warnings), want_preview=job.targets.preview is not None,
                     frame_count=job.info.frame_count if job.config.fps is None else None)
    encoder = _Encoder(stages.state, progress)
    fingerprint = run_fingerprint(job.input_path, job.config, stages.estimator)  # stored with every output, for resume
    with open_sinks(job.targets, job.config, job.plan.out_hw, job.time_base, job.fps_hint, fingerprint) as sinks:
        encoder.run(stages, sinks)
    return EncodeResult(job.input_path, job.targets.hint, encoder.frames_written, time.perf_counter() - started,
                        {**stages.timings, "encode": encoder.seconds}, tuple(warnings), stages.workers.plan.workers)


def render_frames(estimator: DensePoseEstimator, frames_rgb: Iterable, config: EncodeConfig | None = None, *,
                  progress: Callable[[int], None] | None = None,
                  cancel_check: Callable[[], None] | None = None) -> Iterator[np.ndarray]:
    """Hints of frames already in memory, in order, through the same workers as a video.

    ``frames_rgb``: uint8 RGB frames [H, W, 3] (numpy arrays or CPU tensors, e.g. the rows of a
    [B, H, W, 3] batch), all of one size; read lazily, so memory stays bounded whatever their number.
    Yields one uint8 [h, w, 3] numpy hint per frame, in order. ``config`` (default the estimator's):
    colormap, resolution, framing, smoothing, batch size, workers; --fps and the file outputs need a
    video. ``progress(n)``: called as n more hints are ready. ``cancel_check()``: called between
    frames and while waiting for one; whatever it raises (e.g. ComfyUI's
    ``throw_exception_if_processing_interrupted``) stops the workers and propagates.
    """
    config = config if config is not None else estimator.config
    if config.fps is not None or config.frames_dir or config.preview_path or config.iuv_path:
        raise ConfigError("render_frames takes frames without timestamps and returns the hints: fps, frames_dir, "
                          "preview_path and iuv_path need a video file (encode_video)")
    frames = iter(frames_rgb)
    first = next(frames, None)
    if first is None:
        return
    first = _as_frame(first, 0)
    plan = frame_plan(first.shape[0], first.shape[1], config)

    def source() -> Iterator[tuple[np.ndarray, tuple[int, ...]]]:
        yield first, (0,)
        for seq, frame in enumerate(frames, 1):
            frame = _as_frame(frame, seq)
            if frame.shape != first.shape:
                raise InputError(f"frame {seq} is {frame.shape[1]}x{frame.shape[0]} but frame 0 is "
                                 f"{first.shape[1]}x{first.shape[0]}: all frames must have one size")
            yield frame, (seq,)

    stages = _Stages(estimator.with_config(config), config, plan, _render_mode(config, plan), source,
                     want_preview=False, cancel_check=cancel_check, frame_count=_length(frames_rgb))
    with contextlib.closing(stages.batches()) as batches:
        for batch in batches:
            hints = batch.output().hints
            if progress:
                progress(len(hints))
            for hint in hints:
                if cancel_check:
                    cancel_check()
                yield hint.copy()  # a row of a batch (on CUDA, of a host buffer that is reused)


def _length(frames_rgb) -> int | None:
    try:
        return len(frames_rgb)
    except TypeError:  # an iterator
        return None


def _as_frame(frame, seq: int) -> np.ndarray:
    array = frame.numpy() if isinstance(frame, torch.Tensor) and frame.device.type == "cpu" else frame
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        what = f"{getattr(array, 'dtype', type(array).__name__)} {list(getattr(array, 'shape', []))}"
        raise InputError(f"frame {seq} is {what}; expected a uint8 RGB [H, W, 3] array or CPU tensor")
    return array


def _render_mode(config: EncodeConfig, plan: FramePlan) -> str:
    """"hint": the fused render of coloured hints; "labels": label maps for the post-stages;
    "iuv": labels with U and V."""
    if config.iuv_path is not None:
        return "iuv"
    return "labels" if (config.smooth > 1 or plan.needs_label_stage) else "hint"


def _video_frames(job: EncodeJob, warnings: list[str]) -> Iterator[tuple[np.ndarray, tuple[int, ...]]]:
    """The input's frames that are shown (--fps drops the others), each with the output pts showing it."""
    batches = iter_frame_batches(job.input_path, batch_size=job.config.batch_size, warnings_out=warnings)
    for batch, out_pts in _kept_batches(batches, job.info, job.config):
        yield from zip(batch.frames_rgb.numpy(), out_pts)


def _kept_batches(batches, info: VideoInfo, config) -> "Iterator[tuple[FrameBatch, list[tuple[int, ...]]]]":
    """Decoded batches -> (batch of the frames that are shown, their output pts); --fps drops/repeats here."""
    if config.fps is None:
        for batch in batches:
            yield batch, [(p,) for p in batch.pts]
        return

    def frames():
        for batch in batches:
            for j in range(len(batch)):
                yield batch.pts[j], (batch.frames_rgb[j], batch.pts[j], batch.time_base, batch.start_index + j)

    nominal = 1 / info.fps if info.fps else None
    kept: list = []

    def flush():
        frames_rgb = torch.stack([k[0][0] for k in kept])
        batch = FrameBatch(frames_rgb, tuple(k[0][1] for k in kept), kept[0][0][2], kept[0][0][3])
        out = (batch, [k[1] for k in kept])
        kept.clear()
        return out

    for payload, out_pts in resample(frames(), info.time_base, config.fps, nominal):
        kept.append((payload, out_pts))
        if len(kept) >= config.batch_size:
            yield flush()
    if kept:
        yield flush()


# --- what the caller's thread hands to the encoder ----------------------------------------------------


@dataclass
class HintBatch:
    """A batch's hints (and IUV) on the host, one row per distinct frame, in order."""

    hints: torch.Tensor  # uint8 [B, h, w, 3] on the host (CUDA: a buffer of the ring)
    out_pts: list[tuple[int, ...]]
    previews: list[np.ndarray] | None = None
    iuv: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # I uint8, U, V float16 [B, h, w]
    copied: "torch.cuda.Event | None" = None  # CUDA: set when the asynchronous copy to the host has landed

    def output(self) -> OutputBatch:
        """The frames in output order: --fps repeats a frame (or shows it zero times)."""
        if self.copied is not None:
            self.copied.synchronize()
        hints = self.hints.numpy()
        pts = tuple(p for shown in self.out_pts for p in shown)
        if all(len(shown) == 1 for shown in self.out_pts):
            return OutputBatch(hints, pts, np.stack(self.previews) if self.previews else None, self.iuv)
        index = [j for j, shown in enumerate(self.out_pts) for _ in shown]
        previews = np.stack([self.previews[j] for j in index]) if self.previews and index else None
        iuv = tuple(a[index] for a in self.iuv) if self.iuv is not None else None
        return OutputBatch(hints[index], pts, previews, iuv)


class _HostRing:
    """Reusable pinned host buffers for hint batches (CUDA: the target of asynchronous copies)."""

    def __init__(self) -> None:
        self._buffers: list[torch.Tensor] = []
        self._next = 0

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        if len(self._buffers) < _HOST_RING:
            buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
            self._buffers.append(buffer)
        else:
            buffer = self._buffers[self._next % _HOST_RING]
            if tuple(buffer.shape[1:]) != tuple(shape[1:]) or buffer.shape[0] < shape[0]:
                buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
                self._buffers[self._next % _HOST_RING] = buffer
        self._next += 1
        return buffer[: shape[0]]


# --- the stages up to the host copy -----------------------------------------------------------------


class _Stages:
    """Source thread -> model workers -> (the caller's thread) order, batches, post-stages, host copy.

    ``frames()`` yields (uint8 RGB frame, output pts showing it) and runs in the source thread;
    ``frame_count``: how many it will yield, when known (no more workers than frames).
    ``batches()`` runs everything and yields ``HintBatch`` es in order in the caller's thread.
    """

    def __init__(self, estimator: DensePoseEstimator, config: EncodeConfig, plan: FramePlan, mode: str,
                 frames: Callable[[], Iterable[tuple[np.ndarray, tuple[int, ...]]]], want_preview: bool,
                 cancel_check: Callable[[], None] | None = None, frame_count: int | None = None) -> None:
        self.estimator, self.config, self.plan, self.mode = estimator, config, plan, mode
        self.frames, self.want_preview, self.cancel_check = frames, want_preview, cancel_check
        self.state = RunState()
        self.stop = self.state.stop
        self.on_cuda = estimator.device.type == "cuda"
        worker_plan = plan_workers(estimator.device, config.workers, frames=frame_count)
        self.inbox: queue.Queue = queue.Queue(maxsize=worker_plan.workers)
        self.results: queue.Queue = queue.Queue()  # unbounded: the permits bound what is in flight
        self.permits = threading.Semaphore(2 * worker_plan.workers)
        self.workers = ModelWorkers(estimator, plan.hint_hw, mode, worker_plan, self.inbox, self.results, self.state)
        self.source = StageThread("densevid-source", self._source_stage, self.state)
        self.ring = _HostRing() if self.on_cuda else None
        self.timings = {"decode": 0.0, "post": 0.0}

    def batches(self) -> Iterator[HintBatch]:
        base = None
        with cpu_threads(self.workers.plan):
            if self.on_cuda:
                base = torch.cuda.Event(enable_timing=True)
                base.record(torch.cuda.current_stream(self.estimator.device))
            self.source.start()
            self.workers.start()
            try:
                yield from self._in_order()
            except Stopped:
                pass
            except BaseException:  # also the consumer closing early: the stages end after their current frame
                self.stop.set()
                raise
            finally:
                self.source.join()
                self.workers.join()
        self.state.raise_failure()  # reached on a normal end, or when a stage failed (Stopped)
        self.timings["model"] = sum(self.workers.model_seconds)
        self.timings["render"] = sum(self.workers.render_seconds)
        if base is not None and self.workers.model_events:
            torch.cuda.synchronize(self.estimator.device)
            self.timings["model_gpu"] = busy_union_seconds(base, self.workers.model_events)
            events = self.workers.model_events
            self.timings["model_gpu_sum"] = sum(start.elapsed_time(end) for start, end in events) / 1e3

    # source thread: frames -> PreparedFrame
    def _source_stage(self) -> None:
        plan = self.plan
        frames = iter(self.frames())
        seq = 0
        while True:
            t0 = time.perf_counter()
            item = next(frames, None)
            if item is None:
                break
            frame, out_pts = item
            source = plan.crop_frame(frame)
            padded = resize_and_pad(source, plan.resolution)[0]
            preview = plan.preview_source(source) if self.want_preview else None
            self.timings["decode"] += time.perf_counter() - t0
            acquire(self.permits, self.stop)  # given back when the frame leaves the reorder buffer
            put(self.inbox, PreparedFrame(seq, padded, out_pts, preview), self.stop)
            seq += 1
        for _ in self.workers.threads:
            put(self.inbox, END, self.stop)

    # the caller's thread: results in any order -> in order -> batches -> HintBatch
    def _ordered_frames(self) -> Iterator[RenderedFrame]:
        waiting: dict[int, RenderedFrame] = {}  # the reorder buffer: at most the permits' count
        next_seq, finished = 0, 0
        while True:
            if next_seq in waiting:
                frame = waiting.pop(next_seq)
                next_seq += 1
                self.permits.release()
                yield frame
            elif finished == len(self.workers.threads):
                return
            else:
                item = get(self.results, self.stop, poll=self.cancel_check)
                if item is DONE:
                    finished += 1
                else:
                    waiting[item.seq] = item

    def _in_order(self) -> Iterator[HintBatch]:
        smoother = TemporalSmoother(self.config.smooth) if self.config.smooth > 1 else None
        group: list[RenderedFrame] = []
        frames = self._ordered_frames()
        while True:
            frame = next(frames, None)
            if frame is not None:
                group.append(frame)
                if len(group) < self.config.batch_size:
                    continue
            if group:
                t0 = time.perf_counter()
                batch = self._post(group, smoother)
                self.timings["post"] += time.perf_counter() - t0
                group = []
                if batch is not None:
                    yield batch
            if frame is None:
                break
        if smoother is not None:
            t0 = time.perf_counter()
            labels, metas = smoother.flush()
            batch = self._emit_maps((labels,), metas) if labels is not None else None
            self.timings["post"] += time.perf_counter() - t0
            if batch is not None:
                yield batch

    def _post(self, group: list[RenderedFrame], smoother) -> HintBatch | None:
        if self.on_cuda:
            current = torch.cuda.current_stream(self.estimator.device)
            for frame in group:
                current.wait_event(frame.ready)  # the worker's stream has rendered it
                for t in frame.maps:
                    t.record_stream(current)  # made on the worker's stream, used (and freed) on this one
        maps = tuple(torch.stack(parts) for parts in zip(*(frame.maps for frame in group)))
        metas = [(frame.out_pts, frame.preview) for frame in group]
        if self.mode == "hint":
            return self._emit(maps[0], metas)
        if smoother is not None:
            labels, metas = smoother.push(maps[0], metas)
            return self._emit_maps((labels,), metas)
        return self._emit_maps(maps, metas)

    def _emit_maps(self, maps: tuple[torch.Tensor, ...], metas: list) -> HintBatch | None:
        """Post-stages on the device: framing, colormap, then the copy to the host."""
        if not metas:
            return None
        plan = self.plan
        framed = [frame_maps(m, plan.content_hw, plan.out_hw, 0) for m in maps]
        iuv = None
        if self.mode == "iuv":
            iuv = (framed[0].cpu().numpy(), framed[1].to(torch.float16).cpu().numpy(),
                   framed[2].to(torch.float16).cpu().numpy())
        return self._emit(self.estimator.colorize(framed[0]), metas, iuv)

    def _emit(self, hints: torch.Tensor, metas: list, iuv=None) -> HintBatch:
        host, copied = hints, None  # on the CPU the batch is already a fresh host tensor
        if self.on_cuda:
            host = self.ring.take(tuple(hints.shape))
            host.copy_(hints, non_blocking=True)  # the one device-to-host copy per batch
            copied = torch.cuda.Event()
            copied.record(torch.cuda.current_stream(self.estimator.device))
        previews = [preview for _, preview in metas] if self.want_preview else None
        return HintBatch(host, [out_pts for out_pts, _ in metas], previews, iuv, copied)


# --- the encode thread -------------------------------------------------------------------------------


class _Encoder:
    """Feeds the sinks in its own thread, so that x264 overlaps the model."""

    def __init__(self, state: RunState, progress: Callable[[int], None] | None) -> None:
        self.state = state
        self.stop = state.stop
        self.progress = progress
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.frames_written = 0
        self.seconds = 0.0

    def run(self, stages: _Stages, sinks) -> None:
        """Every batch of ``stages`` into ``sinks``; the first error of any stage is raised here."""
        thread = StageThread("densevid-encode", lambda: self._encode(sinks), self.state)
        thread.start()
        try:
            with contextlib.closing(stages.batches()) as batches:
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
            if self.progress:
                self.progress(len(item.out_pts))
