"""Write stand-in DensePose TorchScript models honouring the real exports' contracts exactly.

Two kinds, both built by the package (``densevid.pipeline.models``), seeded:

* the cheap stand-ins (default): a toy people detector with smooth part/UV logits, for exactness tests;
  writes ``standin_tuple.torchscript`` and ``standin_dict.torchscript``.
* ``--real-cost``: detectron2's DensePose R-CNN R50/R101-FPN-DL with the published files' parameter names and
  cost and designed weights (``save_standin_rcnn``): the tuple style as the hub files (traced, no resize), the
  dict style as the DensePose-TorchScript releases (scripted, resize to 800 inside, their quirks; ``--dtype
  float16`` is their ``--fp16``); writes ``rcnn_{style}_r{depth}[_fp16].torchscript`` (about 265 MB for R50).

Usage: ``python scripts/make_standin_models.py OUTDIR [--seed N] [--size S]``
       ``python scripts/make_standin_models.py OUTDIR --real-cost [--style tuple|dict] [--depth 50|101]
       [--dtype float32|float16] [--width W] [--seed N]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densevid.pipeline.models import save_standin, save_standin_rcnn


def rcnn_filename(style: str, depth: int, dtype_name: str = "float32") -> str:
    """The file name main() gives a real-cost stand-in, e.g. rcnn_dict_r101_fp16.torchscript."""
    return f"rcnn_{style}_r{depth}{'_fp16' if dtype_name == 'float16' else ''}.torchscript"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=112, help="cheap stand-ins: side S of the dense outputs")
    parser.add_argument("--real-cost", action="store_true", help="write the real-cost stand-in instead")
    parser.add_argument("--style", choices=("tuple", "dict"), default="tuple", help="real-cost: export style")
    parser.add_argument("--depth", type=int, choices=(50, 101), default=50, help="real-cost: ResNet depth")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="real-cost: weights' precision (float16: as the --fp16 releases, dict style only)")
    parser.add_argument("--width", type=float, default=1.0,
                        help="real-cost: scale every channel count (below 1: a reduced variant for quick checks)")
    args = parser.parse_args(argv)
    if args.real_cost:
        import torch

        dtype = torch.float16 if args.dtype == "float16" else torch.float32
        path = args.outdir / rcnn_filename(args.style, args.depth, args.dtype)
        print(save_standin_rcnn(path, args.style, args.depth, dtype, args.seed, width=args.width))
        return 0
    for style in ("tuple", "dict"):
        print(save_standin(args.outdir / f"standin_{style}.torchscript", style, args.seed, args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
