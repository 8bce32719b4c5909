"""Micro-benchmark of the label render: reference vs the exact CPU path (and Triton on CUDA).

One 512x910 canvas, 3 people covering ~60% of it, S = 112. "smooth" logits are upsampled
low-frequency random fields (labels form blobs, like real DensePose output); "noisy" logits are
per-sample Gaussian noise (worst case for the cell shortcut). Reports the median and the best of
several runs, in ms per frame (the machine may be shared: the best is the less noisy number).
"cpu" is the exact CPU path as used (numba-compiled kernels; without numba it is the reference);
"+lut" is the hint path (labels, then the
25-entry colour table to uint8 RGB). The issue's target: cpu+lut <= 3 ms for the smooth logits.

    python scripts/bench_render.py [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


from densevid.kernels import hint_lut, render_cpu  # noqa: E402
from densevid.kernels.reference import render_labels_reference  # noqa: E402
from densevid.kernels.render import render_hint  # noqa: E402
from densevid.kernels.render_cpu import render_labels_cpu  # noqa: E402

H, W, S = 512, 910, 112
BOXES = torch.tensor([[40.0, 20.0, 330.0, 505.0], [300.0, 8.0, 600.0, 500.0], [560.0, 30.0, 880.0, 510.0]])


def logits(kind: str, gen: torch.Generator):
    n = BOXES.shape[0]
    if kind == "noisy":
        return torch.randn(n, 2, S, S, generator=gen), torch.randn(n, 25, S, S, generator=gen)

    def field(c, low, amp):
        z = torch.randn(n, c, low, low, generator=gen) * amp
        return F.interpolate(z, size=(S, S), mode="bicubic", align_corners=False)

    coarse = field(2, 8, 3.0) + torch.tensor([0.0, 1.5])[None, :, None, None]
    return coarse, field(25, 6, 3.0)


def bench(fn, args, repeats):
    fn(*args)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    if parser.parse_args().threads:
        torch.set_num_threads(parser.parse_args().threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    lut = hint_lut("viridis")

    def cpu_hint(b, c, f, h, w):
        return render_hint(b, c, f, h, w, lut, backend="cpu")

    backends = [("reference", render_labels_reference, 5)]
    if render_cpu.compiled_kernels() is not None:
        backends += [("cpu", render_labels_cpu, 50), ("cpu+lut", cpu_hint, 50)]
    else:
        print("numba kernels unavailable: the cpu path is the reference; not measured")
    cuda = torch.cuda.is_available()
    if cuda:
        try:
            from densevid.kernels.render_triton import render_labels_triton

            def triton_fn(b, c, f, h, w):
                out = render_labels_triton(b, c, f, h, w)
                torch.cuda.synchronize()
                return out

            backends.append(("triton (cuda)", triton_fn, 50))
        except ImportError:
            cuda = False
    print(f"canvas {H}x{W}, {BOXES.shape[0]} people, S={S}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'logits':<8} {'backend':<18} {'median ms':>10} {'best ms':>9} {'x faster':>9} {'coverage':>9} {'exact':>6}")
    verdicts = []
    for kind in ("smooth", "noisy"):
        coarse, fine = logits(kind, gen)
        expected = render_labels_reference(BOXES, coarse, fine, H, W)
        coverage = float((expected > 0).float().mean())
        ref_median = None
        for name, fn, repeats in backends:
            args = (BOXES, coarse, fine, H, W)
            if name.startswith("triton"):
                args = (BOXES.cuda(), coarse.cuda(), fine.cuda(), H, W)
            median, best = bench(fn, args, repeats)
            ref_median = ref_median or median
            out = fn(*args).cpu()
            want = lut[expected.long()] if "+lut" in name else expected
            exact = "yes" if torch.equal(out, want) else f"{float((out == want).float().mean()):.5%}"
            print(f"{kind:<8} {name:<18} {median:>10.2f} {best:>9.2f} {ref_median / median:>9.1f} "
                  f"{coverage:>9.1%} {exact:>6}")
            if kind == "smooth" and name == "cpu+lut":
                verdicts.append(f"target: cpu+lut <= 3 ms per frame (median): {median:.2f} ms "
                                f"{'PASS' if median <= 3.0 else 'FAIL'}")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
