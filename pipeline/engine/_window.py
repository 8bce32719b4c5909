"""The frame window: which source frames a run encodes, before --fps resamples them.

In this order: a ``Trim`` in seconds (a caller's, e.g. a trimmed ComfyUI video), then --skip-frames N,
then every K-th frame (--every-nth), then at most M frames (--max-frames). Decoding stops at the
window's end.

Kept frames keep their source timestamps, shifted so that the first kept frame lands on the source's
first timestamp: the output starts where the source starts (time 0 for most files), and each kept
frame lasts until the next kept one, so the video plays at the source's speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator

from ..core import ConfigError, Frame, FrameBatch, InputError


@dataclass(frozen=True)
class Trim:
    """A time window of the source: ``start`` seconds after its first frame, ``duration`` seconds long
    (None: to the end)."""

    start: float = 0.0
    duration: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and self.start >= 0):
            raise ConfigError(f"trim start {self.start!r}: must be a finite number of seconds >= 0")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise ConfigError(f"trim duration {self.duration!r}: must be a finite number of seconds > 0, or None")


@dataclass
class WindowStart:
    """Filled in as the window's first frame is decoded: where the output starts in the source, in seconds
    after the source's first frame (what the source's audio is cut at)."""

    seconds: float = 0.0


def has_window(config, trim: Trim | None) -> bool:
    return (config.skip_frames > 0 or config.every_nth > 1 or config.max_frames is not None
            or (trim is not None and trim != Trim()))


def windowed_count(frame_count: int | None, config) -> int | None:
    """How many frames the window keeps of ``frame_count`` (without a trim), for planning only."""
    if frame_count is None:
        return None
    kept = math.ceil(max(0, frame_count - config.skip_frames) / config.every_nth)
    return min(kept, config.max_frames) if config.max_frames is not None else kept


def window_batches(batches: Iterable[FrameBatch], config, trim: Trim | None = None,
                   start_out: WindowStart | None = None) -> Iterator[FrameBatch]:
    """The frames of ``batches`` inside the window, in batches of at most ``config.batch_size``, with their
    pts shifted as the module docstring says."""
    if not has_window(config, trim):
        yield from batches
        return
    trim = trim or Trim()
    batches = iter(batches)
    first_pts: int | None = None  # the source's first frame
    shift: int | None = None  # subtracted from every kept frame's pts
    in_trim = 0  # frames inside the trim so far
    taken = 0
    kept: list[Frame] = []
    time_base: Fraction | None = None
    try:
        for batch in batches:
            time_base = batch.time_base
            for frame in batch:
                if first_pts is None:
                    first_pts = frame.pts
                seconds = float((frame.pts - first_pts) * time_base)
                if seconds < trim.start:
                    continue
                if trim.duration is not None and seconds >= trim.start + trim.duration:
                    break
                position = in_trim - config.skip_frames
                in_trim += 1
                if position < 0 or position % config.every_nth:
                    continue
                if shift is None:
                    shift = frame.pts - first_pts
                    if start_out is not None:
                        start_out.seconds = seconds
                kept.append(Frame(frame.frame_rgb, frame.pts - shift, frame.index))
                taken += 1
                if len(kept) == config.batch_size:
                    yield FrameBatch.of(kept, time_base)
                    kept = []
                if config.max_frames is not None and taken >= config.max_frames:
                    break
            else:
                continue
            break  # the window ended inside this batch: decode no further
        if kept:
            yield FrameBatch.of(kept, time_base)
        if taken == 0 and first_pts is not None:
            raise InputError(f"the frame window keeps no frame of the input's {in_trim} frame(s) "
                             f"{_describe(config, trim)}: skip fewer frames or widen the trim")
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # the decoder's file, now rather than when collected


def _describe(config, trim: Trim) -> str:
    parts = [f"from {trim.start:g} s" + (f" for {trim.duration:g} s" if trim.duration is not None else "")] \
        if trim != Trim() else ["(the whole input)"]
    parts.append(f"with --skip-frames {config.skip_frames}")
    return " ".join(parts)
