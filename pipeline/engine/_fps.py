"""--fps: resample a video's frames onto a constant-rate grid by dropping or repeating frames.

Rule (exact, in rational arithmetic): with input frame times t_i (seconds), the first one t_0,
output frame k is at time t_0 + k / F and shows the latest input frame with t_i <= that time.
The last input frame lasts one nominal frame duration (1 / the stream's average rate, else the
last gap between frames, else 1 / F), and the output's length is that total duration rounded
half up to whole output frames (so millisecond-rounded MKV timestamps add no spurious frame).
Output timestamps are on the 1/F grid, in time base 1/F:
pts_k = round(t_0 * F) + k (a start off the grid is snapped to the nearest grid point).

Streaming: an input frame's repeat count is known as soon as the next frame's timestamp is, so
the resampler holds one frame; frames with count 0 are dropped before detection (they cost
nothing but decoding).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterable, Iterator


def _ceil(x: Fraction) -> int:
    return math.ceil(x)


def resample(frames: Iterable[tuple[int, object]], time_base: Fraction, fps: Fraction,
             nominal_duration: Fraction | None = None) -> Iterator[tuple[object, tuple[int, ...]]]:
    """(pts, payload) in input order -> (payload, output pts in time base 1/fps) for each kept frame.

    Frames shown 0 times are not yielded. Holds one frame.
    """
    time_base, fps = Fraction(time_base), Fraction(fps)
    t0 = None
    base = 0
    next_k = 0
    pending = None  # time, payload
    last_gap = None
    for pts, payload in frames:
        t = pts * time_base
        if t0 is None:
            t0 = t
            base = round(t0 * fps)
        if pending is not None:
            last_gap = t - pending[0] if t > pending[0] else last_gap
            end = max(next_k, _ceil((t - t0) * fps))
            if end > next_k:
                yield pending[1], tuple(range(base + next_k, base + end))
            next_k = end
        pending = (t, payload)
    if pending is not None:
        duration = nominal_duration or last_gap or 1 / fps
        # the output's length is the input's duration rounded (half up) to whole output frames, so a
        # millisecond-rounded timestamp (MKV) does not add a frame: 15 frames at 30 fps -> 5 at 10 fps
        end = max(next_k, math.floor((pending[0] + duration - t0) * fps + Fraction(1, 2)))
        if end > next_k:
            yield pending[1], tuple(range(base + next_k, base + end))


def resample_pts(pts: Iterable[int], time_base: Fraction, fps: Fraction,
                 nominal_duration: Fraction | None = None) -> list[tuple[int, ...]]:
    """The pure mapping: for each input pts, the output pts (time base 1/fps) that show it (maybe none)."""
    pts = list(pts)
    shown = dict(resample(((p, i) for i, p in enumerate(pts)), time_base, fps, nominal_duration))
    return [shown.get(i, ()) for i in range(len(pts))]
