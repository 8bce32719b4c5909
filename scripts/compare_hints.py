"""Label agreement of two hint videos of the same frames (e.g. fp32 and --half), both lossless.

    python scripts/compare_hints.py A.mkv B.mkv [--cmap viridis]

Prints one line: frames, the fraction of pixels whose part label (read back through the inverse
colormap) is the same in both, and the fraction of frames that are identical. Exit code 1 when the
videos differ in frame count or size, or a pixel is not a colormap colour (not an exact hint).
"""

from __future__ import annotations

import argparse
import sys

import av
import numpy as np


def labels_of(path: str, lut: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W] labels of a lossless hint video (255 where a pixel is no colormap colour)."""
    lut = lut.astype(np.int64)
    codes = lut[:, 0] << 16 | lut[:, 1] << 8 | lut[:, 2]
    order = np.argsort(codes)
    frames = []
    with av.open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            rgb = frame.to_ndarray(format="rgb24").astype(np.int64)
            key = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
            where = np.minimum(np.searchsorted(codes[order], key), len(codes) - 1)
            labels = order[where].astype(np.uint8)
            labels[codes[order][where] != key] = 255
            frames.append(labels)
    return np.stack(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--cmap", default="viridis")
    args = parser.parse_args(argv)
    from densevid.kernels import hint_lut

    lut = hint_lut(args.cmap).numpy()
    a, b = labels_of(args.a, lut), labels_of(args.b, lut)
    if a.shape != b.shape:
        print(f"compare_hints: {args.a} is {list(a.shape)} but {args.b} is {list(b.shape)}")
        return 1
    if (a == 255).any() or (b == 255).any():
        print("compare_hints: a pixel is not a colormap colour (not a lossless hint?)")
        return 1
    agree = float((a == b).mean())
    same = float(np.mean([np.array_equal(x, y) for x, y in zip(a, b)]))
    print(f"{len(a)} frames {a.shape[2]}x{a.shape[1]}: labels agree on {agree:.6%} of pixels; "
          f"{same:.1%} of frames identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
