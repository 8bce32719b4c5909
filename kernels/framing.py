"""Framing of per-pixel maps (labels, U, V): nearest-neighbour resize and centred padding.

Both work on tensors shaped [..., H, W] of any dtype, on any device, and return new tensors
(inputs are never modified). Nearest-neighbour keeps every label a label (so every hint pixel
stays one of the colormap's 25 colours) and moves U/V values without mixing parts.

Nearest convention ("nearest-exact", pixel centres): output index ``o`` of ``out`` reads input
index ``floor((o + 0.5) * in / out)``, computed in integers as ``((2 o + 1) in) // (2 out)``;
this equals ``F.interpolate(mode="nearest-exact")`` and is symmetric (no half-pixel drift).

Padding centres the map: ``top = (H_out - H) // 2``, ``left = (W_out - W) // 2``; the rest is
``fill`` (label 0, the colormap's background; U = V = 0).
"""

from __future__ import annotations

import torch


def nearest_source_indices(in_size: int, out_size: int) -> list[int]:
    """Plain: the input index each output index reads."""
    return [((2 * o + 1) * in_size) // (2 * out_size) for o in range(out_size)]


def resize_nearest_reference(maps: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Plain reference: pixel by pixel."""
    h, w = maps.shape[-2:]
    oh, ow = out_hw
    rows, cols = nearest_source_indices(h, oh), nearest_source_indices(w, ow)
    out = torch.empty((*maps.shape[:-2], oh, ow), dtype=maps.dtype, device=maps.device)
    for i in range(oh):
        for j in range(ow):
            out[..., i, j] = maps[..., rows[i], cols[j]]
    return out


def _indices(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    o = torch.arange(out_size, device=device, dtype=torch.int64)
    return ((2 * o + 1) * in_size) // (2 * out_size)


def resize_nearest(maps: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """[..., H, W] -> [..., out_h, out_w] by nearest-exact, with two index_selects on the device."""
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"output size must be >= 1x1, got {oh}x{ow}")
    h, w = maps.shape[-2:]
    if (h, w) == (oh, ow):
        return maps.clone()
    if h < 1 or w < 1:
        raise ValueError(f"cannot resize an empty {h}x{w} map")
    rows = _indices(h, oh, maps.device)
    cols = _indices(w, ow, maps.device)
    return maps.index_select(-2, rows).index_select(-1, cols)


def pad_center_reference(maps: torch.Tensor, out_hw: tuple[int, int], fill=0) -> torch.Tensor:
    h, w = maps.shape[-2:]
    oh, ow = out_hw
    top, left = (oh - h) // 2, (ow - w) // 2
    out = torch.full((*maps.shape[:-2], oh, ow), fill, dtype=maps.dtype, device=maps.device)
    for i in range(h):
        for j in range(w):
            out[..., top + i, left + j] = maps[..., i, j]
    return out


def pad_center(maps: torch.Tensor, out_hw: tuple[int, int], fill=0) -> torch.Tensor:
    """[..., H, W] -> [..., out_h, out_w] with the map centred and ``fill`` around it."""
    h, w = maps.shape[-2:]
    oh, ow = int(out_hw[0]), int(out_hw[1])
    if oh < h or ow < w:
        raise ValueError(f"cannot pad a {h}x{w} map to the smaller {oh}x{ow}")
    top, left = (oh - h) // 2, (ow - w) // 2
    out = torch.full((*maps.shape[:-2], oh, ow), fill, dtype=maps.dtype, device=maps.device)
    out[..., top:top + h, left:left + w] = maps
    return out


def frame_maps(maps: torch.Tensor, content_hw: tuple[int, int], out_hw: tuple[int, int], fill=0) -> torch.Tensor:
    """Nearest-resize to ``content_hw`` (skipped when already that size), then centre in ``out_hw``."""
    if tuple(maps.shape[-2:]) != tuple(content_hw):
        maps = resize_nearest(maps, content_hw)
    if tuple(content_hw) != tuple(out_hw):
        maps = pad_center(maps, out_hw, fill)
    return maps
