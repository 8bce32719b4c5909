"""Render test cases: (boxes_xyxy, coarse_segm, fine_segm, height, width) tuples, seeded.

One module builds them for every test of the render kernels (reference, CPU, Triton, IUV).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_logits(gen, c, s, low=6, amp=3.0, sh=None):
    """float32 [c, sh or s, s]: bicubic upsampling of low x low Gaussian noise (person-like blobs)."""
    z = torch.randn(1, c, low, low, generator=gen) * amp
    return F.interpolate(z, size=(sh or s, s), mode="bicubic", align_corners=False)[0]


def make_case(seed, n, s, height, width, smooth=True, boxes=None):
    """``n`` random boxes over (and a little past) the canvas with S x S logits: smooth (person-like
    blobs, coarse mostly foreground) or noise."""
    gen = torch.Generator().manual_seed(seed)
    if boxes is None:
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([width, height]) * 1.1 - 0.1 * torch.tensor([width, height])
        wh = (torch.rand(n, 2, generator=gen) * 0.8 + 0.1) * torch.tensor([width, height])
        boxes = torch.cat([xy, xy + wh], 1)
    if smooth:
        coarse = torch.stack([smooth_logits(gen, 2, s) + torch.tensor([0.0, 1.0])[:, None, None] for _ in range(n)]) \
            if n else torch.zeros(0, 2, s, s)
        fine = torch.stack([smooth_logits(gen, 25, s) for _ in range(n)]) if n else torch.zeros(0, 25, s, s)
    else:
        coarse = torch.randn(n, 2, s, s, generator=gen)
        fine = torch.randn(n, 25, s, s, generator=gen)
    return boxes.float(), coarse, fine, height, width


def near_tie_case():
    """Logits equal up to a few ulps: (boxes, coarse, fine, height, width)."""
    gen = torch.Generator().manual_seed(11)
    n, s = 3, 32
    base = torch.randn(n, 1, s, s, generator=gen)
    fine = base.repeat(1, 25, 1, 1) + torch.randint(-2, 3, (n, 25, s, s), generator=gen) * 1e-7
    coarse = torch.cat([base, base + torch.randint(-1, 2, (n, 1, s, s), generator=gen) * 1e-7], 1)
    boxes = torch.tensor([[0.0, 0.0, 200.0, 150.0], [30.0, 20.0, 180.0, 140.0], [5.0, 50.0, 120.0, 149.0]])
    return boxes, coarse, fine, 150, 200


def undecided_coarse_case(seed=0, n=3, s=28, height=120, width=170):
    """Clear fine logits (one part leads by a wide margin everywhere) under a coarse fg/bg
    difference that crosses 0 in every cell: every cell is mixed with a decided fine channel
    (the branch that once read an uninitialised candidate)."""
    gen = torch.Generator().manual_seed(seed)
    fine = torch.randn(n, 25, s, s, generator=gen) * 0.1
    for i in range(n):
        part = 1 + i * 7 % 24
        fine[i, part] += 10.0  # leads by ~10 at every sample: the fine channel is decided
    wave = torch.arange(s, dtype=torch.float32)
    sign = torch.where((wave[:, None] + wave[None, :]) % 2 == 0, 1.0, -1.0)  # checkerboard
    coarse = torch.stack([torch.zeros(n, s, s), sign.expand(n, s, s) * 0.5], 1)
    boxes = torch.tensor([[0.0, 0.0, width * 0.8, height * 0.9], [width * 0.3, 5.0, width * 1.2, height * 0.7],
                          [-7.5, height * 0.4, width * 0.5, height + 9.0]])[:n]
    return boxes, coarse.contiguous(), fine.contiguous(), height, width


def _sweep_logits(gen, kind, sh, sw):
    """coarse [2, sh, sw], fine [25, sh, sw] of one instance, in one of the sweep's logit kinds."""
    if kind == "smooth":
        low = int(torch.randint(2, 13, (1,), generator=gen))
        amp = float(torch.empty(1).uniform_(0.5, 6.0, generator=gen))
        coarse = smooth_logits(gen, 2, sw, low, amp, sh) + torch.tensor([0.0, 1.0])[:, None, None]
        fine = smooth_logits(gen, 25, sw, low, amp, sh)
    elif kind == "noisy":
        coarse = torch.randn(2, sh, sw, generator=gen)
        fine = torch.randn(25, sh, sw, generator=gen)
    elif kind == "undecided_coarse":  # decided fine, coarse crossing 0 (mixed cells, fine_safe)
        fine = torch.randn(25, sh, sw, generator=gen) * 0.1
        fine[int(torch.randint(0, 25, (1,), generator=gen))] += 8.0
        coarse = torch.stack([torch.zeros(sh, sw), torch.randn(sh, sw, generator=gen) * 0.3])
    elif kind == "ties":  # duplicated channels and constant planes: argmax ties go to the lowest index
        fine = smooth_logits(gen, 25, sw, 4, 3.0, sh)
        for _ in range(3):
            a, b = (int(v) for v in torch.randint(0, 25, (2,), generator=gen))
            fine[b] = fine[a]
        coarse = torch.stack([torch.zeros(sh, sw), torch.where(torch.rand(sh, sw, generator=gen) < 0.3, 0.0, 1.0)])
    elif kind == "near_tie":  # values a few ulps apart: the exact path decides
        base = torch.randn(1, sh, sw, generator=gen)
        fine = base.repeat(25, 1, 1) + torch.randint(-2, 3, (25, sh, sw), generator=gen) * 1e-7
        coarse = torch.cat([base, base + torch.randint(-1, 2, (1, sh, sw), generator=gen) * 1e-7])
    elif kind == "constant":
        fine = torch.full((25, sh, sw), float(torch.randn(1, generator=gen)))
        coarse = torch.full((2, sh, sw), float(torch.randn(1, generator=gen)))
    elif kind == "huge_magnitude":  # margins scale with max|logit|
        scale = 10.0 ** float(torch.randint(-30, 31, (1,), generator=gen))
        fine = smooth_logits(gen, 25, sw, 5, 3.0, sh) * scale
        coarse = (smooth_logits(gen, 2, sw, 5, 3.0, sh) + torch.tensor([0.0, 0.5])[:, None, None]) * scale
    else:
        raise ValueError(f"unknown logit kind {kind!r}")
    return coarse, fine


SWEEP_LOGIT_KINDS = ("smooth", "noisy", "undecided_coarse", "ties", "near_tie", "constant", "huge_magnitude")


def _sweep_box(gen, height, width):
    kind = int(torch.randint(0, 10, (1,), generator=gen))
    u = torch.rand(4, generator=gen)
    if kind <= 3:  # inside or overlapping the border a little
        x0, y0 = float(u[0]) * width * 1.2 - 0.1 * width, float(u[1]) * height * 1.2 - 0.1 * height
        return [x0, y0, x0 + (0.05 + float(u[2])) * width, y0 + (0.05 + float(u[3])) * height]
    if kind == 4:  # degenerate: under a pixel wide or high, or reversed
        x0, y0 = float(u[0]) * width, float(u[1]) * height
        return [x0, y0, x0 + float(u[2]) * 0.99, y0 + float(u[3]) * 3 - 1.0]
    if kind == 5:  # tiny: 1..3 pixels
        x0, y0 = float(u[0]) * width, float(u[1]) * height
        return [x0, y0, x0 + 1 + float(u[2]) * 2, y0 + 1 + float(u[3]) * 2]
    if kind == 6:  # huge on one axis, far past the canvas
        x0 = -float(u[0]) * 700
        return [x0, float(u[1]) * height * 0.5, x0 + 900 + float(u[2]) * 600, height * (0.6 + float(u[3]))]
    if kind == 7:  # fully outside
        return [width + 5.0, -40.0, width + 50.0, -1.0]
    if kind == 8:  # the whole canvas and a little more
        return [-float(u[0]), -float(u[1]), width + float(u[2]), height + float(u[3])]
    x0, y0 = float(u[0]) * width * 0.5, float(u[1]) * height * 0.5  # sub-pixel offsets, near-integer edges
    return [round(x0) + 1e-3, round(y0) - 1e-3,
            round(x0) + 1 + round(float(u[2]) * width), round(y0) + 1 + round(float(u[3]) * height)]


def sweep_cases(seed: int, count: int):
    """``count`` random render cases covering the kernel's situations: canvas sizes 1..200 (odd,
    tiny, wide, tall), 0-5 instances each, square and non-square grids S = 1..112, boxes inside,
    overlapping, over the borders, degenerate, tiny, huge, outside; logits of every
    ``SWEEP_LOGIT_KINDS`` (mixed per case), float32 and (1 in 8) float16."""
    gen = torch.Generator().manual_seed(seed)
    grids = (1, 2, 3, 5, 7, 13, 16, 28, 37, 56, 112)
    for _ in range(count):
        height, width = (int(v) for v in torch.randint(1, 201, (2,), generator=gen))
        n = int(torch.randint(0, 6, (1,), generator=gen))
        sh = grids[int(torch.randint(0, len(grids), (1,), generator=gen))]
        square = float(torch.rand(1, generator=gen)) < 0.7
        sw = sh if square else grids[int(torch.randint(0, len(grids), (1,), generator=gen))]
        boxes = torch.tensor([_sweep_box(gen, height, width) for _ in range(n)], dtype=torch.float32).reshape(n, 4)
        coarse, fine = torch.zeros(n, 2, sh, sw), torch.zeros(n, 25, sh, sw)
        for i in range(n):
            kind = SWEEP_LOGIT_KINDS[int(torch.randint(0, len(SWEEP_LOGIT_KINDS), (1,), generator=gen))]
            coarse[i], fine[i] = _sweep_logits(gen, kind, sh, sw)
        if float(torch.rand(1, generator=gen)) < 0.125:
            coarse, fine = coarse.half(), fine.half()
        yield boxes, coarse.contiguous(), fine.contiguous(), height, width


# --- images of "people" for the stand-in models: bright rectangles on a dark background ------------

H, W = 256, 448


def scene(blobs, background=20, h=H, w=W) -> torch.Tensor:
    """uint8 HWC RGB image: a dark background with bright rectangles (y0, x0, y1, x1, rgb)."""
    image = torch.full((h, w, 3), background, dtype=torch.uint8)
    for y0, x0, y1, x1, rgb in blobs:
        image[y0:y1, x0:x1] = torch.tensor(rgb, dtype=torch.uint8)
    return image


ONE = scene([(60, 150, 200, 230, (200, 180, 160))])
# two people side by side: their boxes overlap
TWO = scene([(40, 120, 220, 180, (220, 200, 180)), (50, 240, 230, 300, (190, 210, 230))])
# three people, one cut by the right and bottom borders
THREE = scene([(20, 20, 140, 90, (220, 200, 180)), (80, 190, 250, 260, (200, 220, 200)),
                (100, 370, 256, 448, (250, 250, 250))])
