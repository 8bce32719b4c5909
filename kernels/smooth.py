"""Temporal smoothing of part-label maps: a per-pixel majority vote over a centred window.

Definition (``smooth_labels_reference``): for frame ``i`` of ``T`` and window ``K`` (odd, >= 1),
with ``r = K // 2``, the window is frames ``max(0, i - r) .. min(T - 1, i + r)`` (truncated at the
ends, so the output has the same length). Each pixel gets the label that occurs most often in its
window; ties go to the centre frame's own label if it is among the most frequent, else to the
lowest tied label. ``K = 1`` is the identity.

Properties that follow: a static clip is unchanged (every vote is unanimous); a pixel that
flickers for fewer than ``r + 1`` frames inside a stable run is replaced by the run's label.

``smooth_labels`` is the device version of the whole clip at once; ``TemporalSmoother`` is the
same computation streamed batch by batch (it holds ``2 r`` frames of context and releases a
frame once the ``r`` frames after it have arrived). Both equal the reference exactly. Labels are
uint8 in 0..24; inputs are never modified.
"""

from __future__ import annotations

from collections import Counter

import torch

from .parts import N_PART_LABELS

_CENTRE_BONUS = 32  # > any lowest-label bonus (31 - label <= 31), < one vote (64)
_VOTE = 64
MAX_K = 255  # votes are int16: 64 * 255 + 63 < 32768
_CHUNK = 2
_PAIRWISE_MAX_K = 15


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0 or k > MAX_K:
        raise ValueError(f"smoothing window must be an odd integer in 1..{MAX_K}, got {k!r}")
    return k


def smooth_labels_reference(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Plain reference: pixel by pixel, frame by frame, with ``collections.Counter``."""
    _check_k(k)
    r = k // 2
    t_count = labels.shape[0]
    src = labels.cpu().tolist()
    out = torch.empty_like(labels.cpu())
    for i in range(t_count):
        lo, hi = max(0, i - r), min(t_count - 1, i + r)
        for y in range(labels.shape[1]):
            for x in range(labels.shape[2]):
                votes = Counter(src[t][y][x] for t in range(lo, hi + 1))
                best = max(votes.values())
                tied = [label for label, n in votes.items() if n == best]
                centre = src[i][y][x]
                out[i, y, x] = centre if centre in tied else min(tied)
    return out.to(labels.device)


def _vote(window: torch.Tensor, first: int, count: int, total: int, r: int) -> torch.Tensor:
    """Smoothed frames ``first .. first + count - 1`` of ``window`` ([T, H, W] uint8, frames 0..total-1 valid).

    Small windows (K <= ``_PAIRWISE_MAX_K``) compare the window's frames pairwise: the winner is
    one of the labels present, and its votes are the number of frames equal to it (K^2 uint8
    comparisons per frame: while K is small, far less work than counting all 25 labels). Larger
    windows count votes per label in int16 [chunk, 25, H, W] (13 MB per 512x512 frame), a few frames
    at a time.
    """
    if 2 * r + 1 <= _PAIRWISE_MAX_K:
        parts = [_vote_pairwise(window, i, total, r) for i in range(first, first + count)]
        return torch.stack(parts) if parts else window[:0].clone()
    parts = [_vote_chunk(window, f, min(_CHUNK, first + count - f), total, r)
             for f in range(first, first + count, _CHUNK)]
    return torch.cat(parts) if parts else window[:0].clone()


def _vote_pairwise(window: torch.Tensor, i: int, total: int, r: int) -> torch.Tensor:
    """Frame i: each frame of its window is a candidate; its votes are the frames equal to it (uint8 adds)."""
    lo, hi = max(0, i - r), min(total - 1, i + r)
    frames = window[lo:hi + 1]
    centre = frames[i - lo]
    best_score = best_label = None
    for cand in frames:
        votes = torch.zeros_like(cand)
        for other in frames:
            votes += other == cand
        score = votes.to(torch.int16) * _VOTE + (cand == centre).to(torch.int16) * _CENTRE_BONUS \
            + (31 - cand.to(torch.int16))
        if best_score is None:
            best_score, best_label = score, cand.clone()
        else:
            better = score > best_score
            best_score = torch.where(better, score, best_score)
            best_label = torch.where(better, cand, best_label)
    return best_label


def _vote_chunk(window: torch.Tensor, first: int, count: int, total: int, r: int) -> torch.Tensor:
    h, w = window.shape[1:]
    device = window.device
    votes = torch.zeros((count, N_PART_LABELS, h, w), dtype=torch.int16, device=device)
    for d in range(-r, r + 1):
        # output rows j (frame first + j) read frame first + j + d when it exists
        j0 = max(0, -(first + d))
        j1 = min(count, total - (first + d))
        if j1 <= j0:
            continue
        src = window[first + d + j0:first + d + j1].long().unsqueeze(1)
        votes[j0:j1].scatter_add_(1, src, torch.full_like(src, _VOTE, dtype=torch.int16))
    centre = window[first:first + count].long().unsqueeze(1)
    votes.scatter_add_(1, centre, torch.full_like(centre, _CENTRE_BONUS, dtype=torch.int16))
    votes += (31 - torch.arange(N_PART_LABELS, device=device, dtype=torch.int16)).view(1, N_PART_LABELS, 1, 1)
    return votes.argmax(dim=1).to(torch.uint8)


def smooth_labels(labels: torch.Tensor, k: int) -> torch.Tensor:
    """uint8 [T, H, W] -> uint8 [T, H, W], the whole clip at once, on the labels' device."""
    _check_k(k)
    if labels.ndim != 3:
        raise ValueError(f"labels must be [T, H, W], got {list(labels.shape)}")
    t_count = labels.shape[0]
    if k == 1 or t_count == 0 or labels.numel() == 0:
        return labels.clone()
    return _vote(labels, 0, t_count, t_count, k // 2)


class TemporalSmoother:
    """Streaming ``smooth_labels``: push batches of label maps (with one metadata item per frame),
    get back the smoothed frames that are complete; ``flush`` returns the rest at the end.

    Holds at most ``2 * (K // 2)`` frames between calls (on the labels' device).
    """

    def __init__(self, k: int) -> None:
        self.k = _check_k(k)
        self.r = k // 2
        self._frames: torch.Tensor | None = None  # context: up to r released frames, then pending ones
        self._released_in_window = 0  # how many of _frames' first rows are already released (history)
        self._meta: list = []  # metadata of the pending frames

    def push(self, labels: torch.Tensor, meta: list) -> tuple[torch.Tensor, list]:
        if labels.ndim != 3 or len(meta) != labels.shape[0]:
            raise ValueError(f"labels [B, H, W] and one meta item per frame required, got {list(labels.shape)} "
                             f"and {len(meta)} items")
        if self.r == 0:
            return labels.clone(), list(meta)
        if labels.shape[0] == 0:
            return labels.clone(), []
        window = labels if self._frames is None else torch.cat([self._frames, labels])
        self._meta.extend(meta)
        return self._release(window, final=False)

    def flush(self) -> tuple[torch.Tensor | None, list]:
        if self._frames is None or not self._meta:
            return None, []
        return self._release(self._frames, final=True)

    def _release(self, window: torch.Tensor, final: bool) -> tuple[torch.Tensor, list]:
        total = window.shape[0]
        first = self._released_in_window
        pending = total - first
        ready = pending if final else max(0, pending - self.r)
        out = _vote(window, first, ready, total, self.r) if ready else window[:0].clone()
        released_meta, self._meta = self._meta[:ready], self._meta[ready:]
        # keep r frames of history before the first pending frame, and the pending frames
        keep_from = max(0, first + ready - self.r)
        self._frames = window[keep_from:].clone() if not final else None
        self._released_in_window = first + ready - keep_from
        return out, released_meta
