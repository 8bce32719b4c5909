"""Check the dict-style stand-in R-CNN against the DensePose-TorchScript repository's own detectron2 code.

Usage (in an environment with that repository's dependencies, not densevid's)::

    python3 -m venv /work/d2env
    /work/d2env/bin/pip install "torch==2.14.1" "torchvision==0.29.1" fvcore omegaconf opencv-python-headless
    /work/d2env/bin/python scripts/check_standin_detectron2.py PATH/TO/DensePose-TorchScript [--depth 50 101]

For each depth it builds the repository's ``DefaultPredictor`` for ``configs/densepose_rcnn_R_{50,101}_FPN_DL_s1x
.yaml`` with no checkpoint, loads the stand-in's weights into it, scripts it as ``export.py`` does (and
``.half()`` for ``--fp16``), and compares with the stand-in file: state-dict keys, shapes and dtypes in both
directions, and the outputs (boxes, scores, classes and the four DensePose maps: max abs / rel difference) on
generated images and on frames of a real video (``--video``; the dance clip of ../shared/data by default).
Both models use one score threshold, ``--min-score``: by default 0.01, low enough that the stand-in's
detections on the real frames reach both heads (its weights score them below the releases' 0.3, which
``export.py`` passes; 0 would send all 100 detections per image through the heavy DensePose head).
Exit status 1 on any mismatch, or when no image gave a detection.

The checkout is imported at run time from the path given, never copied. The stand-in module is loaded from
this repository by file path (it needs only torch and torchvision). What this cannot check: the tuple style,
whose hub files come from upstream detectron2's ``TracingAdapter`` (not this repository's code); the script
says so at the end.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
STANDIN_PATH = HERE.parent / "pipeline" / "models" / "_standin_rcnn.py"
OUTPUT_KEYS = ("pred_boxes", "scores", "pred_classes", "pred_densepose_coarse_segm", "pred_densepose_fine_segm",
               "pred_densepose_u", "pred_densepose_v")
DANCE = HERE.parent.parent / "shared" / "data" / "dance_576x1024.mp4"
REL_TOLERANCE = 1e-4  # float32 rounding through a hundred layers, relative to each tensor's magnitude


def load_standin():
    spec = importlib.util.spec_from_file_location("standin_rcnn", STANDIN_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["standin_rcnn"] = module
    spec.loader.exec_module(module)
    return module


def vendored_predictor(checkout: Path, depth: int, min_score: float):
    """The repository's DefaultPredictor, built as export.py builds it, without a checkpoint."""
    sys.path.insert(0, str(checkout))
    from densepose import add_densepose_config
    from detectron2.config import get_cfg
    from detectron2.engine.defaults import DefaultPredictor

    cfg = get_cfg()
    add_densepose_config(cfg)
    cfg.merge_from_file(str(checkout / "configs" / f"densepose_rcnn_R_{depth}_FPN_DL_s1x.yaml"))
    cfg.merge_from_list(["MODEL.ROI_HEADS.SCORE_THRESH_TEST", str(min_score), "MODEL.DEVICE", "cpu"])
    cfg.MODEL.WEIGHTS = ""  # no checkpoint: the stand-in's weights are loaded below
    cfg.freeze()
    return DefaultPredictor(cfg).eval()


def load_weights(predictor: torch.nn.Module, state: dict) -> None:
    """The stand-in's state dict into the eager predictor: persistent keys strictly, then the non-persistent
    buffers (pixel mean/std, anchors) that TorchScript files keep."""
    persistent = predictor.state_dict()
    predictor.load_state_dict({key: state[key] for key in persistent if key in state}, strict=True)
    for name, buffer in predictor.named_buffers(remove_duplicate=False):
        if name not in persistent and name in state:
            buffer.copy_(state[name])


def compare_layouts(reference: dict, standin: dict) -> list[str]:
    problems = []
    for key in sorted(set(reference) - set(standin)):
        problems.append(f"only in the repository's export: {key} {tuple(reference[key].shape)}")
    for key in sorted(set(standin) - set(reference)):
        problems.append(f"only in the stand-in: {key} {tuple(standin[key].shape)}")
    for key in sorted(set(reference) & set(standin)):
        a, b = reference[key], standin[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{key}: repository {tuple(a.shape)} {a.dtype}, stand-in {tuple(b.shape)} {b.dtype}")
        elif not torch.equal(a, b):
            problems.append(f"{key}: values differ after loading")
    return problems


def test_images() -> dict[str, torch.Tensor]:
    """HWC uint8 BGR images: bright rectangles on a dark ground (landscape, portrait), and black."""
    def scene(h, w, blobs, background=20):
        image = torch.full((h, w, 3), background, dtype=torch.uint8)
        for y0, x0, y1, x1, bgr in blobs:
            image[y0:y1, x0:x1] = torch.tensor(bgr, dtype=torch.uint8)
        return image

    return {
        "two people 256x448": scene(256, 448, [(40, 120, 220, 180, (180, 200, 220)),
                                               (50, 240, 230, 300, (230, 210, 190))]),
        "portrait 448x256": scene(448, 256, [(60, 70, 400, 170, (160, 180, 200)),
                                             (250, 10, 440, 60, (240, 240, 240))]),
        "black 96x128": torch.zeros(96, 128, 3, dtype=torch.uint8),
    }


def video_frames(video: Path, count: int = 2) -> dict[str, torch.Tensor]:
    """``count`` frames spread over a real video, HWC uint8 BGR as the releases take them (PyAV decodes them)."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        step = max(1, (stream.frames or 300) // (count + 1))
        frames = [frame.to_ndarray(format="bgr24") for i, frame in enumerate(container.decode(stream))
                  if i % step == step // 2][:count]
    return {f"{video.name} frame {i} {f.shape[1]}x{f.shape[0]}": torch.from_numpy(f) for i, f in enumerate(frames)}


def difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    if a.numel() == 0:
        return 0.0, 0.0
    a, b = a.double(), b.double()
    absolute = float((a - b).abs().max())
    scale = float(torch.maximum(a.abs().max(), b.abs().max()))
    return absolute, absolute / scale if scale > 0 else 0.0


def compare_outputs(name: str, reference: dict, standin: dict, rows: list) -> bool:
    """Every output of one image within the tolerance (rows for the table); the instance counts must agree."""
    ok = True
    n_ref, n_standin = int(reference["pred_boxes"].shape[0]), int(standin["pred_boxes"].shape[0])
    if n_ref != n_standin:
        rows.append((name, "instances", f"{n_ref} vs {n_standin}", "", "MISMATCH"))
        return False
    for key in OUTPUT_KEYS:
        a, b = reference[key], standin[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            rows.append((name, key, f"{tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}", "", "MISMATCH"))
            ok = False
            continue
        absolute, relative = difference(a, b)
        good = relative <= REL_TOLERANCE if a.is_floating_point() else absolute == 0
        ok &= good
        rows.append((name, key, f"{tuple(a.shape)}", f"abs {absolute:.3g} rel {relative:.3g}",
                     "ok" if good else "MISMATCH"))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a checkout of DensePose-TorchScript")
    parser.add_argument("--depth", type=int, nargs="+", default=[50, 101], choices=[50, 101])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-score", type=float, default=0.01,
                        help="score threshold of both models (default 0.01, so that detections reach the heads; "
                             "the releases' export.py passes 0.3)")
    parser.add_argument("--video", type=Path, default=DANCE if DANCE.is_file() else None,
                        help=f"a real video whose frames are compared too (default: {DANCE} when it exists)")
    args = parser.parse_args()
    if not (args.checkout / "detectron2" / "engine" / "defaults.py").is_file():
        raise SystemExit(f"{args.checkout} is not a DensePose-TorchScript checkout (no detectron2/engine/defaults.py)")
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # the checkpointer's "no checkpoint" notice
    torch.set_grad_enabled(False)
    standin = load_standin()
    min_score = args.min_score
    all_ok = True
    for depth in args.depth:
        print(f"\n=== R_{depth}_FPN_DL, dict style (DefaultPredictor scripted; --min_score {min_score}) ===")
        start = time.perf_counter()
        standin_file = standin.build_standin_rcnn("dict", depth, seed=args.seed, score_threshold=min_score)
        predictor = vendored_predictor(args.checkout, depth, min_score)
        load_weights(predictor, standin_file.state_dict())
        reference = torch.jit.script(predictor)  # as export.py does (.half() for --fp16: on a copy, it shares)
        print(f"built both in {time.perf_counter() - start:.1f} s")
        for label, ref, mine in (("float32", reference, standin_file),
                                 ("float16 (--fp16: .half())", torch.jit.script(copy.deepcopy(predictor)).half(),
                                  standin.build_standin_rcnn("dict", depth, torch.float16, seed=args.seed,
                                                             score_threshold=min_score))):
            problems = compare_layouts(ref.state_dict(), mine.state_dict())
            status = "ok" if not problems else f"{len(problems)} MISMATCHES"
            print(f"state dict {label}: {len(ref.state_dict())} keys in the repository's export, "
                  f"{len(mine.state_dict())} in the stand-in: {status}")
            for problem in problems[:40]:
                print(f"  {problem}")
            all_ok &= not problems
        rows: list = []
        images = test_images()
        if args.video is not None:
            images.update(video_frames(args.video))
        instances = 0
        for name, image in images.items():
            start = time.perf_counter()
            expected = reference(image, True)
            got = standin_file(image, True)
            seconds = time.perf_counter() - start
            all_ok &= compare_outputs(f"{name} ({seconds:.1f} s)", expected, got, rows)
            instances += int(expected["pred_boxes"].shape[0])
        widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
        for row in rows:
            print("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        if instances == 0:  # equal empty outputs say nothing of the heads: that is no check of them
            print("  no image gave a detection: the heads' outputs were not compared (pass --video with people)")
            all_ok = False
        else:
            print(f"  {instances} detections compared")
    print("\nNot checked here: the tuple style. The hub files (LayerNorm/DensePose-TorchScript-with-hint-image) are "
          "upstream detectron2's TracingAdapter around GeneralizedRCNN, traced; this repository vendors a scripted "
          "DefaultPredictor, so the tuple style's upstream behaviour (no resize, RPN and box clips to the image's "
          "(h, w), nonempty '>' filters, clip-then-filter postprocess, coordinate-trick NMS baked by tracing, boxes "
          "moved to the CPU, no module aliases) is reproduced from upstream detectron2's code and the published "
          "tracebacks, and checked by densevid's own tests, not against reference code.")
    print("\nRESULT:", "all equal within float32 rounding" if all_ok else "MISMATCH")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
