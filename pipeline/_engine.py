"""The engine: wiring only. A decode thread, the compute loop, an encode thread, bounded queues.

    decode thread:  PyAV -> FrameBatch -> resize+pad (OpenCV, exact)  ──► queue (bounded)
    compute (caller's thread): upload -> model per frame -> render kernel -> one copy to host ──► queue (bounded)
    encode thread:  hint batches -> writer (temporary file, renamed when complete)

On CUDA the frames of a batch are issued round-robin on ``CUDA_STREAMS`` streams (the exports
take one image per call, so streams are how several model calls overlap), hints are rendered
into one device buffer per batch and copied to the host once, into pinned buffers from a small
ring that is reused (never more buffers than can be in flight). The CPU path is the same code
with no streams and plain buffers.

Memory does not grow with video length: at most ``QUEUE_DEPTH`` batches wait between stages.
Any stage's exception stops the others and is re-raised in the caller's thread; the writer then
removes its temporary file.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ._api import DensePoseEstimator
from ._decode import VideoInfo, iter_frame_batches, probe_video
from ._encode import VideoWriter, default_output_path, write_png
from ._errors import OutputError
from ._preprocess import resized_size
from ._types import FrameBatch

QUEUE_DEPTH = 2
CUDA_STREAMS = 4
# host buffers in flight: QUEUE_DEPTH queued + 1 being encoded + 1 being filled
_HOST_RING = QUEUE_DEPTH + 2
_END = object()


@dataclass(frozen=True)
class EncodeResult:
    input_path: Path
    output_path: Path
    frames: int
    seconds: float
    # busy seconds per stage: decode (incl. resize+pad), compute (upload, model, render, copy), encode;
    # on CUDA also model_gpu (device time of the model calls, from CUDA events)
    stage_seconds: dict = field(default_factory=dict)
    # one-line notes about the input that did not stop the encode (e.g. a truncated MKV/TS)
    warnings: tuple[str, ...] = ()


class _HostRing:
    """Reusable host buffers for hint batches (pinned on CUDA, for asynchronous copies)."""

    def __init__(self, pinned: bool) -> None:
        self._pinned = pinned
        self._buffers: list[torch.Tensor] = []
        self._next = 0

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        if len(self._buffers) < _HOST_RING:
            buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=self._pinned)
            self._buffers.append(buffer)
        else:
            buffer = self._buffers[self._next % _HOST_RING]
            if tuple(buffer.shape[1:]) != tuple(shape[1:]) or buffer.shape[0] < shape[0]:
                buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=self._pinned)
                self._buffers[self._next % _HOST_RING] = buffer
        self._next += 1
        return buffer[: shape[0]]


def _render_batch(estimator: DensePoseEstimator, prepared: "_Prepared", streams: list, timings: dict) -> torch.Tensor:
    """Model + render for every frame of a batch into one uint8 [B, h, w, 3] device tensor."""
    device = estimator.device
    h, w = prepared.hint_hw
    hints = torch.empty((len(prepared.padded_rgb), h, w, 3), dtype=torch.uint8, device=device)
    if not streams:
        for j, padded in enumerate(prepared.padded_rgb):
            hints[j] = estimator.render(estimator.detect(torch.from_numpy(padded)), prepared.hint_hw)
        return hints
    current = torch.cuda.current_stream(device)
    events = []
    for stream in streams:
        stream.wait_stream(current)  # `hints` was allocated on the current stream
    for j, padded in enumerate(prepared.padded_rgb):
        stream = streams[j % len(streams)]
        with torch.cuda.stream(stream):
            image = torch.from_numpy(padded).pin_memory().to(device, non_blocking=True)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            detections = estimator.detect(image)
            end.record(stream)
            hints[j] = estimator.render(detections, prepared.hint_hw)
            events.append((start, end))
    for stream in streams:
        current.wait_stream(stream)
    hints.record_stream(current)
    timings["_model_events"] = timings.get("_model_events", []) + events
    return hints


@dataclass
class _Prepared:
    batch: FrameBatch
    padded_rgb: list[np.ndarray]
    hint_hw: tuple[int, int]


class _Stop(Exception):
    """Raised inside a stage when another stage failed."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


class _StageThread(threading.Thread):
    """A daemon thread that records its exception and raises the shared stop flag on failure."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._stop_event = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except _Stop:
            pass
        except BaseException as error:  # re-raised in the caller's thread
            self.error = error
            self._stop_event.set()


def resolve_output_path(input_path: Path, output_path: Path | None, info: VideoInfo, lossless: bool, overwrite: bool) -> Path:
    """The output's final path, refused early when it would clobber the input or an existing file."""
    out = Path(output_path) if output_path is not None else default_output_path(input_path, lossless=lossless, image=info.is_image)
    if out.exists() and out.resolve() == input_path.resolve():
        raise OutputError(f"output {out} is the input file; choose another output path")
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise OutputError(f"output directory {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {out.parent} is not writable")
    return out


def encode_video(input_path: str | Path, output_path: str | Path | None, estimator: DensePoseEstimator,
                 progress: Callable[[int], None] | None = None, info: VideoInfo | None = None) -> EncodeResult:
    """Render the hint video of ``input_path`` into ``output_path`` (default: beside the input)."""
    config = estimator.config
    input_path = Path(input_path)
    info = info if info is not None else probe_video(input_path)
    out = resolve_output_path(input_path, Path(output_path) if output_path else None, info, config.lossless, config.overwrite)
    started = time.perf_counter()

    if info.is_image:
        batch = next(iter_frame_batches(input_path, batch_size=1))
        hint = estimator.hint(batch.frames_rgb[0].numpy()).cpu().numpy()
        write_png(out, hint, overwrite=config.overwrite)
        if progress:
            progress(1)
        return EncodeResult(input_path, out, 1, time.perf_counter() - started)

    stop = threading.Event()
    prepared_q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    hints_q: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    hint_hw = resized_size(info.height, info.width, config.resolution)
    frames_written = 0
    warnings: list[str] = []

    timings: dict = {"decode": 0.0, "compute": 0.0, "encode": 0.0}

    def decode_stage() -> None:
        try:
            batches = iter_frame_batches(input_path, batch_size=config.batch_size, warnings_out=warnings)
            while True:
                t0 = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    break
                padded = [estimator.prepare(frame)[0] for frame in batch.frames_rgb.numpy()]
                timings["decode"] += time.perf_counter() - t0
                _put(prepared_q, _Prepared(batch, padded, hint_hw), stop)
        finally:
            if not stop.is_set():
                _put(prepared_q, _END, stop)

    writer = VideoWriter(out, width=hint_hw[1], height=hint_hw[0], time_base=info.time_base, fps_hint=info.fps,
                         lossless=config.lossless, overwrite=config.overwrite)

    def encode_stage() -> None:
        nonlocal frames_written
        while True:
            item = _get(hints_q, stop)
            if item is _END:
                return
            hints_rgb, pts, copied = item
            t0 = time.perf_counter()
            if copied is not None:
                copied.synchronize()  # the asynchronous device-to-host copy has landed
            writer.write(hints_rgb.numpy(), pts)
            timings["encode"] += time.perf_counter() - t0
            frames_written += len(pts)
            if progress:
                progress(len(pts))

    on_cuda = estimator.device.type == "cuda"
    streams = [torch.cuda.Stream(estimator.device) for _ in range(CUDA_STREAMS)] if on_cuda else []
    ring = _HostRing(pinned=on_cuda)
    decoder = _StageThread("densevid-decode", decode_stage, stop)
    encoder = _StageThread("densevid-encode", encode_stage, stop)
    try:
        with writer:
            decoder.start()
            encoder.start()
            try:
                while True:
                    item = _get(prepared_q, stop)
                    if item is _END:
                        break
                    t0 = time.perf_counter()
                    hints = _render_batch(estimator, item, streams, timings)
                    host = ring.take(tuple(hints.shape))
                    host.copy_(hints, non_blocking=on_cuda)  # the one device-to-host copy per batch
                    copied = None
                    if on_cuda:
                        copied = torch.cuda.Event()
                        copied.record(torch.cuda.current_stream(estimator.device))
                    timings["compute"] += time.perf_counter() - t0
                    _put(hints_q, (host, item.batch.pts, copied), stop)
                _put(hints_q, _END, stop)
                encoder.join()
            except _Stop:
                pass
            except BaseException:
                stop.set()
                raise
            finally:
                decoder.join()
                encoder.join() if not stop.is_set() else encoder.join(timeout=5)
            for stage in (decoder, encoder):
                if stage.error is not None:
                    raise stage.error
    finally:
        stop.set()
    events = timings.pop("_model_events", [])
    if events:
        torch.cuda.synchronize(estimator.device)
        timings["model_gpu"] = sum(start.elapsed_time(end) for start, end in events) / 1000.0
    return EncodeResult(input_path, out, frames_written, time.perf_counter() - started, timings, tuple(warnings))
