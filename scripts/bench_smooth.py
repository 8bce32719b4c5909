"""Temporal stability benchmark: how often a pixel's part label changes between consecutive frames,
without and with ``--smooth K``.

    python scripts/bench_smooth.py [--input PATH] [--ks 3,5,7] [--resolution 512] [--device cpu]

Runs ``encode_video`` (lossless, so the hint decodes to exact labels) once without smoothing and
once with ``--smooth`` = the largest K, on ``../shared/data/dance_576x1024.mp4`` when present
(else a generated clip), with the stand-in model (the real weights are not downloadable here).
The other Ks are computed from the unsmoothed labels with ``kernels.smooth.smooth_labels``, which
the tests prove identical to the engine's streamed smoothing; the script checks that once more
for the engine's K. Prints one markdown table: K, label-change fraction (all pixels; pixels that
are person in either frame), relative to K = 1, and the encode's wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' clip generator (support.clips)

from dataclasses import replace  # noqa: I001  (after the sys.path lines above)

from densevid import DensePoseEstimator, EncodeConfig, encode_video
from densevid.kernels.smooth import smooth_labels

DANCE = ROOT.parent / "shared" / "data" / "dance_576x1024.mp4"


def labels_of(path: Path, cmap: str) -> np.ndarray:
    from support.helpers import decode_all, labels_from_hint

    frames, _ = decode_all(path)
    return labels_from_hint(frames, cmap)


def change_fractions(labels: np.ndarray) -> tuple[float, float]:
    changed = labels[1:] != labels[:-1]
    person = (labels[1:] > 0) | (labels[:-1] > 0)
    return float(changed.mean()), float(changed.sum() / max(1, person.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DANCE if DANCE.exists() else None)
    parser.add_argument("--ks", default="3,5,7")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    warnings.simplefilter("ignore", FutureWarning)
    from densevid.pipeline.models import save_standin

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = args.input
        if source is None:
            from support.clips import make_clip, synthetic_frames

            source = make_clip(tmp / "generated.mkv", synthetic_frames(90, 1024, 576, seed=0, black_every=0))
        model = tmp / "standin.torchscript"
        save_standin(model, style="tuple", seed=0)
        base = EncodeConfig(model=str(model), resolution=args.resolution, device=args.device, lossless=True,
                            progress=False)
        estimator = DensePoseEstimator.from_config(base)
        runs = {}
        for k in (1, max(ks)):
            config = replace(base, smooth=k)
            out = tmp / f"k{k}.mkv"
            t0 = time.perf_counter()
            result = encode_video(source, out, DensePoseEstimator.from_model(estimator.model, config))
            runs[k] = (labels_of(out, config.cmap), time.perf_counter() - t0, result)
        raw = runs[1][0]
        engine_k = max(ks)
        assert np.array_equal(runs[engine_k][0], smooth_labels(torch.from_numpy(raw), engine_k).numpy()), \
            "engine smoothing differs from kernels.smooth.smooth_labels"
        base_all, base_person = change_fractions(raw)
        print(f"input: {source} ({raw.shape[0]} frames, labels {raw.shape[2]}x{raw.shape[1]}), stand-in model, "
              f"device {args.device}")
        print()
        print("| --smooth K | label changes / pixel / frame | among person pixels | vs K=1 | encode wall s |")
        print("|---|---|---|---|---|")
        for k in [1] + ks:
            labels = raw if k == 1 else (runs[k][0] if k in runs else smooth_labels(torch.from_numpy(raw), k).numpy())
            frac, person = change_fractions(labels)
            wall = f"{runs[k][1]:.1f}" if k in runs else "-"
            print(f"| {k} | {frac:.5f} | {person:.4f} | {frac / base_all if base_all else 0:.3f} | {wall} |")


if __name__ == "__main__":
    main()
