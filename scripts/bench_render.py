"""Micro-benchmark of the label render backends, side by side, against the reference.

One 512x910 canvas, 3 people covering ~60% of it, S = 112. "smooth" logits are upsampled
low-frequency random fields (labels form blobs, like real DensePose output); "noisy" logits are
per-sample Gaussian noise (the worst case for the kernel's cell shortcut). Rows:

* reference -- the plain definition (kernels/reference.py);
* cpu -- the exact CPU render as used (numba-compiled kernels); cpu+lut -- the hint (labels, then the
  25-entry colour table to uint8 RGB);
* device-torch -- the torch-on-device render (the GPU render without Triton), here on the CPU tensors
  (on CUDA too, where there is one);
* triton -- only on CUDA (the CPU interpreter is a test tool, not a benchmark).

Reports the median and the best of several runs in ms per frame (the machine may be shared: the
best is the less noisy number), each median's speed-up over the reference's, and whether the output
equals the reference (exact) or the share of pixels that agree.

    python scripts/bench_render.py [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from densevid.kernels import hint_lut
from densevid.kernels.reference import render_labels_reference
from densevid.kernels.render import render_hint
from densevid.kernels.render_cpu import compiled_kernels, render_labels_cpu
from densevid.kernels.render_device import render_labels_device

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


def bench(fn, args, repeats, sync):
    fn(*args)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    threads = parser.parse_args().threads
    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    lut = hint_lut("viridis")

    def cpu_hint(b, c, f, h, w):
        return render_hint(b, c, f, h, w, lut, backend="cpu")

    # name, function, repeats, device
    rows = [("reference", render_labels_reference, 5, "cpu")]
    if compiled_kernels() is not None:
        rows += [("cpu", render_labels_cpu, 50, "cpu"), ("cpu+lut", cpu_hint, 50, "cpu")]
    else:
        print("numba kernels unavailable: the cpu rows would measure the reference again; left out")
    rows.append(("device-torch (cpu)", render_labels_device, 5, "cpu"))
    if torch.cuda.is_available():
        rows.append(("device-torch (cuda)", render_labels_device, 20, "cuda"))
        try:
            import triton  # noqa: F401

            from densevid.kernels.render_triton import render_labels_triton

            rows.append(("triton (cuda)", render_labels_triton, 50, "cuda"))
        except ImportError:
            print("triton is not importable: no triton row")

    print(f"canvas {H}x{W}, {BOXES.shape[0]} people, S={S}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'logits':<8} {'backend':<20} {'median ms':>10} {'best ms':>9} {'vs reference':>13} {'coverage':>9} "
          f"{'equal to reference':>19}")
    for kind in ("smooth", "noisy"):
        coarse, fine = logits(kind, gen)
        expected = render_labels_reference(BOXES, coarse, fine, H, W)
        coverage = float((expected > 0).float().mean())
        ref_median = None
        for name, fn, repeats, device in rows:
            args = (BOXES.to(device), coarse.to(device), fine.to(device), H, W)
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            median, best = bench(fn, args, repeats, sync)
            ref_median = ref_median or median
            out = fn(*args).cpu()
            want = lut[expected.long()] if name.endswith("+lut") else expected
            same = "exact" if torch.equal(out, want) else f"{float((out == want).float().mean()):.5%}"
            print(f"{kind:<8} {name:<20} {median:>10.2f} {best:>9.2f} {ref_median / median:>12.1f}x "
                  f"{coverage:>9.1%} {same:>19}")


if __name__ == "__main__":
    main()
