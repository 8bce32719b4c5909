"""The engine: wiring only. A decode thread, the compute loop, an encode thread, bounded queues.

    decode thread:  PyAV -> FrameBatch -> resize+pad (OpenCV, exact)  ──► queue (bounded)
    compute (caller's thread): upload -> model per frame -> render kernel -> one copy to host ──► queue (bounded)
    encode thread:  hint batches -> writer (temporary file, renamed when complete)

Memory does not grow with video length: at most ``QUEUE_DEPTH`` batches wait between stages.
Any stage's exception stops the others and is re-raised in the caller's thread; the writer then
removes its temporary file.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ._api import DensePoseEstimator
from ._decode import VideoInfo, iter_frame_batches, probe_video
from ._encode import VideoWriter, default_output_path, write_png
from ._errors import OutputError
from ._types import FrameBatch

QUEUE_DEPTH = 2
_END = object()


@dataclass(frozen=True)
class EncodeResult:
    input_path: Path
    output_path: Path
    frames: int
    seconds: float


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
    return out


def encode_video(input_path: str | Path, output_path: str | Path | None, estimator: DensePoseEstimator,
                 progress: Callable[[int], None] | None = None) -> EncodeResult:
    """Render the hint video of ``input_path`` into ``output_path`` (default: beside the input)."""
    config = estimator.config
    input_path = Path(input_path)
    info = probe_video(input_path)
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
    hint_hw = estimator.prepare(np.zeros((info.height, info.width, 3), np.uint8))[1]
    frames_written = 0

    def decode_stage() -> None:
        try:
            for batch in iter_frame_batches(input_path, batch_size=config.batch_size):
                padded, sizes = [], set()
                for frame in batch.frames_rgb.numpy():
                    image, hw = estimator.prepare(frame)
                    padded.append(image)
                    sizes.add(hw)
                _put(prepared_q, _Prepared(batch, padded, sizes.pop()), stop)
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
            hints_rgb, pts = item
            writer.write(hints_rgb, pts)
            frames_written += len(pts)
            if progress:
                progress(len(pts))

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
                    hints = torch.stack([estimator.render(estimator.detect(torch.from_numpy(p)), item.hint_hw)
                                         for p in item.padded_rgb])
                    _put(hints_q, (hints.cpu().numpy(), item.batch.pts), stop)
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
    return EncodeResult(input_path, out, frames_written, time.perf_counter() - started)
