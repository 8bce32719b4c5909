"""Write stand-in DensePose TorchScript models honouring the real exports' contracts exactly.

Two kinds, both built by the package (``densevid.pipeline.models``), seeded:

* the cheap stand-ins (default): a toy people detector with smooth part/UV logits, for exactness tests;
  writes ``standin_tuple.torchscript`` and ``standin_dict.torchscript``.
* ``--real-cost``: a DensePose R-CNN with the real exports' architecture and cost (ResNet-50/101-FPN,
  RPN with 1,000 proposals, box head, DeepLab DensePose head, internal resize to short side 800), random
  weights, for speed; writes ``realcost_{style}_r{depth}[_fp16].torchscript`` (about 250 MB for R50).

Usage: ``python scripts/make_standin_models.py OUTDIR [--seed N] [--size S]``
       ``python scripts/make_standin_models.py OUTDIR --real-cost [--style tuple|dict] [--depth 50|101]
       [--dtype float32|float16] [--rpn-size hw|wh] [--seed N]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densevid.pipeline.models import save_realcost, save_standin


def realcost_filename(style: str, depth: int, dtype_name: str = "float32", rpn_size: str = "hw") -> str:
    """The file name main() gives a real-cost stand-in, e.g. realcost_dict_r101_fp16.torchscript."""
    precision = "_fp16" if dtype_name == "float16" else ""
    pattern = "_rpnwh" if rpn_size == "wh" else ""
    return f"realcost_{style}_r{depth}{precision}{pattern}.torchscript"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=112, help="cheap stand-ins: side S of the dense outputs")
    parser.add_argument("--real-cost", action="store_true", help="write the real-cost stand-in instead")
    parser.add_argument("--style", choices=("tuple", "dict"), default="tuple", help="real-cost: contract style")
    parser.add_argument("--depth", type=int, choices=(50, 101), default=50, help="real-cost: ResNet depth")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="real-cost: weights' precision (float16: as the --fp16 exports)")
    parser.add_argument("--rpn-size", choices=("hw", "wh"), default="hw",
                        help="real-cost: wh reproduces the dict-style releases' RPN image size order")
    args = parser.parse_args(argv)
    if args.real_cost:
        import torch

        dtype = torch.float16 if args.dtype == "float16" else torch.float32
        path = args.outdir / realcost_filename(args.style, args.depth, args.dtype, args.rpn_size)
        print(save_realcost(path, args.style, args.depth, dtype, args.seed, rpn_size=args.rpn_size))
        return 0
    for style in ("tuple", "dict"):
        print(save_standin(args.outdir / f"standin_{style}.torchscript", style, args.seed, args.size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
