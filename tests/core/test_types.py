"""The value types: FrameBatch as a checked sequence of Frames, Detections' one shape check."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from densevid import Detections, Frame, FrameBatch

TB = Fraction(1, 25)


def _batch(n: int = 4, start: int = 10) -> FrameBatch:
    frames = torch.arange(n * 2 * 3 * 3, dtype=torch.uint8).reshape(n, 2, 3, 3)
    return FrameBatch(frames, tuple(100 + 2 * i for i in range(n)), TB, start)


def test_indexing_gives_frames_with_their_pts_and_source_index():
    batch = _batch()
    frame = batch[1]
    assert isinstance(frame, Frame)
    assert torch.equal(frame.frame_rgb, batch.frames_rgb[1]) and frame.pts == 102 and frame.index == 11
    last = batch[-1]
    assert last.pts == 106 and last.index == 13
    with pytest.raises(IndexError):
        batch[4]


def test_slicing_keeps_consecutive_frames_and_their_start_index():
    batch = _batch()
    part = batch[1:3]
    assert isinstance(part, FrameBatch) and len(part) == 2
    assert part.pts == (102, 104) and part.start_index == 11 and part.time_base == TB
    assert torch.equal(part.frames_rgb, batch.frames_rgb[1:3])
    assert len(batch[4:]) == 0 and batch[4:].start_index == 14
    with pytest.raises(ValueError, match="without a step"):
        batch[::2]


def test_iteration_and_rebuilding_from_frames_round_trip():
    batch = _batch()
    frames = list(batch)
    assert [f.index for f in frames] == [10, 11, 12, 13]
    again = FrameBatch.of(frames, TB)
    assert torch.equal(again.frames_rgb, batch.frames_rgb) and again.pts == batch.pts
    assert again.start_index == 10
    with pytest.raises(ValueError, match="at least one frame"):
        FrameBatch.of([], TB)


@pytest.mark.parametrize("frames,pts,time_base,error,match", [
    (torch.zeros(2, 4, 4, 3), (0, 1), TB, TypeError, "uint8"),
    (torch.zeros(2, 4, 4, dtype=torch.uint8), (0, 1), TB, ValueError, r"\[B, H, W, 3\]"),
    (torch.zeros(2, 4, 4, 3, dtype=torch.uint8), (0,), TB, ValueError, "1 pts for 2 frames"),
    (torch.zeros(1, 4, 4, 3, dtype=torch.uint8), (0,), 0.04, ValueError, "positive Fraction"),
])
def test_a_batch_is_checked_on_construction(frames, pts, time_base, error, match):
    with pytest.raises(error, match=match):
        FrameBatch(frames, pts, time_base)


def test_detections_check_their_shapes_once():
    n, s = 2, 7
    ok = Detections(torch.zeros(n, 4), torch.zeros(n, 2, s, s), torch.zeros(n, 25, s, s), torch.zeros(n, 25, s, s),
                    torch.zeros(n, 25, s, s))
    assert len(ok) == 2
    with pytest.raises(ValueError, match=r"fine_segm must have shape \[2, 25, S, S\] for 2 boxes, got \[2, 24, 7, 7\]"):
        Detections(torch.zeros(n, 4), torch.zeros(n, 2, s, s), torch.zeros(n, 24, s, s), torch.zeros(n, 25, s, s),
                   torch.zeros(n, 25, s, s))
    with pytest.raises(ValueError, match=r"v has spatial size \[7, 6\]"):
        Detections(torch.zeros(n, 4), torch.zeros(n, 2, s, s), torch.zeros(n, 25, s, s), torch.zeros(n, 25, s, s),
                   torch.zeros(n, 25, s, s - 1))
    # nobody found: bare empties of other sizes are allowed
    Detections(torch.zeros(0, 4), torch.zeros(0, 2, 1, 1), torch.zeros(0, 25, 112, 112), torch.zeros(0, 25, 1, 1),
               torch.zeros(0, 25, 1, 1))
