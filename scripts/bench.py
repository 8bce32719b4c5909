"""End-to-end benchmark: the TorchScript file vs the native model vs `densevid encode` vs a naive node loop.

Every ratio is measured side by side in one run, on the same frames and model file. Model-bound
(the hub-like stand-in, ``save_standin_rcnn``: detectron2's DensePose R-CNN with the real files'
names, contract and cost, generated into a temp dir unless --model):

(m) the model alone on frames already resized and padded at --resolution 512: the TorchScript file
    and the native model (``--engine native``, B frames per call), float32 and half precision
    (bfloat16 on a CPU with native bfloat16, float16 on CUDA), one call at a time with all of torch's
    threads and N calls at once (threads split; on CUDA a stream each); the file's float32 best is
    the **limit** every other row is a ratio of;
(e) `densevid encode` as whole processes, timed from spawn to exit (start-up and load included):
    the defaults (``--engine auto``), ``--engine torchscript`` and ``--half``, with the share of
    pixels whose part labels agree between them, the stage busy times and the peak RSS;
(w) on CUDA: ``encode_video`` in this process per engine and B, with the GPU-busy fraction and the
    peak GPU memory;
(1) a one-frame encode as a whole process against its parts (import, load, first and warm frame);
(r) the cost per frame against --resolution 512/768/1024 (the tuple files run at the size given);
(n) a naive serial loop doing what the ComfyUI node does per frame.

I/O-bound (the cheap stand-in, ``save_standin``), as whole processes: (a) the I/O floor (decode +
resize/pad + H.264 encode, no model); (b) `densevid encode`; then the peak RSS of (b) on the clip
and on the clip looped 10x (bounded memory).

    python scripts/bench.py [--input PATH] [--frames N] [--model-frames N] [--naive-frames N]
                            [--style tuple|dict] [--depth 50|101] [--model FILE] [--device cpu|cuda]
                            [--batch-list 1,2] [--workers-list 1,2,4] [--skip-resolutions]
                            [--skip-model-bound] [--skip-io-bound] [--out FILE]

Input: ``../shared/data/dance_576x1024.mp4`` (relative to the repo root) when present, else a
generated 576x1024 portrait clip. The tables also go to --out when given.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "dance_576x1024.mp4"
RESOLUTION = 512
TARGET_VS_LIMIT = 0.85
TARGET_VS_FLOOR = 0.75
TARGET_RSS_RATIO = 1.10
LOOPS = 10


# -- children: each one whole process, timed by the parent from spawn to exit ----------------------

def encode_child(argv: list[str]) -> None:
    """`densevid encode ARGV` through the CLI's own main; prints the EncodeResult's stage times and
    this process's peak RSS as one JSON line (stderr is left to the CLI)."""
    import densevid.pipeline.engine as engine

    results = []
    real = engine.encode_job

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        results.append(result)
        return result

    engine.encode_job = spy  # the batch runner imports it from the engine package when called
    from densevid.pipeline.cli import exit_process, main

    try:
        main(["encode", *argv], standalone_mode=False)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    result = results[0] if results else None
    print(json.dumps({"code": code, "frames": result.frames if result else 0,
                      "seconds": result.seconds if result else None,
                      "stages": result.stage_seconds if result else {}, "workers": result.workers if result else None,
                      "engine": result.engine if result else None,
                      "maxrss_kb": peak_rss_kb()}))
    exit_process(0)  # as the densevid command ends (cli.run), so the parent times what a user waits for


def peak_rss_kb() -> int:
    """This process's peak RSS since it started (VmHWM: getrusage's ru_maxrss keeps the parent's across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


def floor_child(clip: str, out: str) -> None:
    """The I/O floor as a whole process: decode + resize/pad + x264 with densevid's own decoder and
    writer (so torch is imported, as the decoder's batches are tensors), no model, no render."""
    from densevid.pipeline.cli import exit_process

    frames, seconds = run_io_floor(Path(clip), Path(out))
    print(json.dumps({"frames": frames, "seconds": seconds}))
    exit_process(0)  # ended as the densevid command ends, so both sides of the ratio skip the same teardown


def run_child(*args: str) -> tuple[dict, float]:
    """(the child's JSON line, wall seconds from spawn to exit)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"child {args[:2]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


# -- clips --------------------------------------------------------------------------------------

def decode_frames(path: Path, limit: int | None):
    """The first ``limit`` frames (RGB) of ``path`` and the stream's average rate."""
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(25)
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(frames) >= limit:
                break
    return frames, rate


def write_clip(path: Path, frames, rate: Fraction, repeat: int = 1, preset: str = "fast") -> Path:
    """H.264 (crf 18) mp4 of ``frames`` played ``repeat`` times back to back (constant rate)."""
    import av

    rate = Fraction(rate).limit_denominator(100000)
    tb = 1 / rate
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "18", "preset": preset})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = tb
        stream.codec_context.time_base = tb
        stream.thread_type = "AUTO"
        pts = 0
        for _ in range(repeat):
            for img in frames:
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = pts
                frame.time_base = tb
                pts += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def source_clip(args, tmp: Path) -> tuple[Path, str]:
    if args.input is not None:
        return args.input, ""
    if DEFAULT_INPUT.exists():
        return DEFAULT_INPUT, ""
    sys.path.insert(0, str(ROOT / "tests"))  # the tests' clip generator (support.clips)
    from support.clips import make_clip, synthetic_frames

    clip = make_clip(tmp / "generated_576x1024.mp4", synthetic_frames(180, 1024, 576), fps=25, codec="libx264",
                     options={"crf": "18", "preset": "fast"})
    return clip, " (generated: synthetic_frames, 180 frames, x264)"


def capped_clip(clip: Path, frames: int | None, path: Path) -> tuple[Path, int]:
    """The first ``frames`` frames of ``clip`` re-encoded, so every variant reads the same frames."""
    decoded, rate = decode_frames(clip, frames)
    return write_clip(path, decoded, rate), len(decoded)


# -- the I/O floor ------------------------------------------------------------------------------

def run_io_floor(clip: Path, out: Path, batch_size: int = 8) -> tuple[int, float]:
    import numpy as np

    from densevid.pipeline.engine import resize_and_pad, resized_size
    from densevid.pipeline.io import VideoWriter, iter_frame_batches, probe_video

    info = probe_video(clip)
    hint_h, hint_w = resized_size(info.height, info.width, RESOLUTION)
    q: queue.Queue = queue.Queue(maxsize=2)
    end = object()
    errors: list[BaseException] = []

    def decode() -> None:
        try:
            for batch in iter_frame_batches(clip, batch_size=batch_size):
                resized = [resize_and_pad(f, RESOLUTION)[0][:hint_h, :hint_w] for f in batch.frames_rgb.numpy()]
                q.put((np.stack(resized), batch.pts))
        except BaseException as error:  # re-raised below
            errors.append(error)
        finally:
            q.put(end)

    t0 = time.perf_counter()
    frames = 0
    thread = threading.Thread(target=decode, daemon=True)
    with VideoWriter(out, width=hint_w, height=hint_h, time_base=info.time_base, fps_hint=info.fps,
                     lossless=False, overwrite=True) as writer:
        thread.start()
        while (item := q.get()) is not end:
            writer.write(item[0], item[1])
            frames += len(item[1])
    thread.join()
    if errors:
        raise errors[0]
    return frames, time.perf_counter() - t0


# -- the model alone ----------------------------------------------------------------------------

def padded_frames(clip: Path, count: int, resolution: int = RESOLUTION):
    from densevid.pipeline.engine import resize_and_pad

    frames, _ = decode_frames(clip, count)
    return [resize_and_pad(f, resolution)[0] for f in frames]


def model_alone(model, images, workers: int, threads: int | None, frames: int, batch: int = 1) -> float:
    """Seconds for ``frames`` frames through the model, ``batch`` per call (``detect_batch``), ``workers`` calls at
    a time (each thread with ``threads`` intra-op threads on the CPU, its own stream on CUDA), on ``images`` in
    turn. The model's precision (autocast) applies inside each call, in its thread."""
    import torch

    on_cuda = model.device.type == "cuda"
    uploaded = [torch.from_numpy(image).to(model.device) for image in images]
    calls = iter(range(-(-frames // batch)))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            if threads is not None:
                torch.set_num_threads(threads)
            stream = torch.cuda.Stream(model.device) if on_cuda else None
            with torch.cuda.stream(stream) if stream is not None else _null():
                while True:
                    with lock:
                        i = next(calls, None)
                    if i is None:
                        return
                    chosen = [uploaded[(i * batch + k) % len(uploaded)] for k in range(batch)]
                    if batch == 1:
                        model.detect(chosen[0])
                    else:
                        model.detect_batch(torch.stack(chosen))
                    if stream is not None:
                        stream.synchronize()
        except BaseException as error:  # re-raised below
            errors.append(error)

    previous = torch.get_num_threads()
    pool = [threading.Thread(target=work) for _ in range(workers)]
    t0 = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - t0
    torch.set_num_threads(previous)
    if errors:
        raise errors[0]
    return seconds


def _null():
    import contextlib

    return contextlib.nullcontext()


# -- the naive node-style loop ------------------------------------------------------------------

def run_naive(clip: Path, out: Path, model_path: Path, device, limit: int | None) -> tuple[int, float]:
    """A plain serial loop doing what the ComfyUI node does per frame (cv2 decode, cv2 resize+pad, model
    call, per-instance F.interpolate of coarse/fine/u/v to the box size, labels, applyColorMap + paste
    into a BGR canvas, cvtColor, viridis fix, crop, cv2.VideoWriter mp4v)."""
    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision  # noqa: F401  (the models call torchvision::nms)

    from densevid.pipeline.engine import padded_size, resized_size
    from densevid.pipeline.io import probe_video

    with warnings.catch_warnings():  # torch.jit.load's deprecation notice; the node loads TorchScript this way
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(model_path), map_location=device).eval()
    info = probe_video(clip)
    warm_hw = padded_size(*resized_size(info.height, info.width, RESOLUTION))
    with torch.inference_mode():  # warm-up outside the timer: TorchScript's profiling runs
        for _ in range(2):
            model(torch.zeros((3, *warm_hw), dtype=torch.uint8, device=device))
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    frames = 0
    try:
        while limit is None or frames < limit:
            ok, frame_bgr = cap.read()
            if not ok:
                break
            image = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            h_raw, w_raw = image.shape[:2]
            k = float(RESOLUTION) / float(min(h_raw, w_raw))
            h_t, w_t = int(np.round(h_raw * k)), int(np.round(w_raw * k))
            image = cv2.resize(image, (w_t, h_t), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
            pad_h, pad_w = int(np.ceil(h_t / 64.0) * 64) - h_t, int(np.ceil(w_t / 64.0) * 64) - w_t
            padded = np.pad(image, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge")
            height, width = padded.shape[:2]
            canvas = np.zeros((height, width, 3), np.uint8)
            with torch.inference_mode():  # as ComfyUI runs every node
                chw = torch.from_numpy(padded).permute(2, 0, 1).contiguous().to(device)
                boxes, coarse, fine, u, v = model(chw)
                for i in range(len(boxes)):
                    box = boxes[i].clone()
                    box[2] -= box[0]
                    box[3] -= box[1]
                    x, y, bw, bh = [int(t) for t in box.tolist()]
                    bw, bh = max(bw, 1), max(bh, 1)
                    c = F.interpolate(coarse[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)
                    f = F.interpolate(fine[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)
                    F.interpolate(u[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)
                    F.interpolate(v[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)
                    labels = (f.argmax(dim=1) * (c.argmax(dim=1) > 0).long()).squeeze(0).cpu().numpy().astype(np.uint8)
                    target = canvas[y:y + bh, x:x + bw]
                    th, tw = target.shape[:2]
                    if th == 0 or tw == 0:
                        continue
                    labels = labels[:th, :tw]
                    vis = cv2.applyColorMap((labels.astype(np.float32) * (255.0 / 24)).clip(0, 255).astype(np.uint8),
                                            cv2.COLORMAP_VIRIDIS)
                    bg = labels == 0
                    vis[bg] = target[bg]
                    canvas[y:y + th, x:x + tw] = (target * 0.0 + vis * 1.0).astype(np.uint8)
            hint = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
            hint[:, :, 0][hint[:, :, 0] == 0] = 68
            hint[:, :, 1][hint[:, :, 1] == 0] = 1
            hint[:, :, 2][hint[:, :, 2] == 0] = 84
            hint = hint[:h_t, :w_t]
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w_t, h_t))
            writer.write(cv2.cvtColor(hint, cv2.COLOR_RGB2BGR))
            frames += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    return frames, time.perf_counter() - t0


# -- the two parts ------------------------------------------------------------------------------

def stage_text(stages: dict, wall: float, frames: int) -> str:
    return ", ".join(f"{k} {v:.2f} s ({v / wall:.0%} of wall, {v / max(frames, 1) * 1e3:.1f} ms/frame)"
                     for k, v in stages.items())


def _rate_rows(model, images, device, budget: int, per: int, batches: list[int], workers: list[int], label: str):
    """(label, frames, seconds) rows of one loaded model: one call at a time, then N calls at once, for each B."""
    on_cuda = device.type == "cuda"
    rows = []
    for batch in batches:
        model_alone(model, images, 1, None, 2 * batch, batch)  # warm-up: first calls, TorchScript's profiling
        for n in workers:
            threads = None if on_cuda else max(1, budget // n)
            frames = n * batch * max(1, round(per / (n * batch)))
            if on_cuda and n > 1:
                model_alone(model, images, n, threads, n * batch, batch)  # each new stream's first call
            sec = model_alone(model, images, n, threads, frames, batch)
            if on_cuda:
                where = f"{n} stream{'s' * (n > 1)}"
            else:
                where = f"{n} x {threads} thread{'s' * (threads > 1)}"
            rows.append((f"{label}, B = {batch}, {where}", frames, sec))
    return rows


def _labels_agreement(a: Path, b: Path) -> float:

    sys.path.insert(0, str(ROOT / "tests"))  # the tests' inverse colormap (support.helpers)
    from support.helpers import decode_all, labels_from_hint

    x, y = decode_all(a)[0], decode_all(b)[0]
    return float((labels_from_hint(x) == labels_from_hint(y)).mean()) if x.shape == y.shape else 0.0


def model_bound(args, tmp: Path, clip: Path, device, out) -> None:
    import torch

    from densevid.pipeline.models import cpu_native_bfloat16, dtype_name, load_model

    style = args.style
    if args.model is not None:
        model_path = args.model
    else:
        from densevid.pipeline.models import save_standin_rcnn

        out(f"generating the hub-like stand-in (R{args.depth}, {style} style) ...")
        model_path = save_standin_rcnn(tmp / f"rcnn_{style}_r{args.depth}.torchscript", style, args.depth)
    clip_e, n_frames = capped_clip(clip, args.frames, tmp / "model_bound.mp4")
    budget = torch.get_num_threads()
    on_cuda = device.type == "cuda"
    half_here = on_cuda or cpu_native_bfloat16()
    out(f"model {model_path.name}, {n_frames} frames of {clip.name}, device {device}, torch {torch.__version__}, "
        f"{budget} intra-op threads, {os.cpu_count()} cpus; half precision here: "
        f"{'float16' if on_cuda else 'bfloat16' if half_here else 'none'}")
    images = padded_frames(clip_e, min(n_frames, 8))
    per = max(1, args.model_frames)
    workers = args.workers_list or ([1, 2, 3, 4] if on_cuda else sorted({n for n in (1, 2, 4) if n <= budget}))
    native_batches = args.batch_list or ([1, 4, 8, 16] if on_cuda else [1, 2])

    # (m) the model alone, TorchScript and native, float32 and half precision, side by side
    rows = []
    precisions = [False] + ([True] if half_here else [])
    for half in precisions:
        out(f"running (m) the model alone{', half precision' if half else ', float32'} ...")
        file = load_model(model_path, device, half=half, engine="torchscript")
        if not half or file.precision.runs != torch.float32:  # the file on the CPU runs float32 whatever --half
            tag = dtype_name(file.precision.runs)
            rows += _rate_rows(file, images, device, budget, per, [1], workers, f"(m) TorchScript file {tag}")
        for batch in native_batches:
            native = load_model(model_path, device, half=half, engine="native", batch_size=batch)
            rows += _rate_rows(native, images, device, budget, per, [batch], workers if (batch == 1 or on_cuda)
                               else [1], f"(m) native {dtype_name(native.precision.runs)}")
        del file, native
    ts_limit = max(f / s for label, f, s in rows if "TorchScript file float32" in label)
    native_limit = max(f / s for label, f, s in rows if "native float32" in label)
    best_half_native = max((f / s for label, f, s in rows if "native" in label and "float32" not in label),
                           default=None)

    # (e) densevid encode as whole processes: defaults, the TorchScript file, half precision (lossless, to compare)
    common = [str(clip_e), "--model", str(model_path), "--device", str(device), "--overwrite", "-q", "--lossless"]
    variants = [("defaults (--engine auto)", []), ("--engine torchscript", ["--engine", "torchscript"])]
    if half_here:
        variants.append(("--half", ["--half"]))
    encodes = {}
    for name, flags in variants:
        out(f"running (e) densevid encode {name}, whole process ...")
        target = tmp / f"encode_{len(encodes)}.mkv"
        info, wall = run_child("--_encode-child", json.dumps(common + ["-o", str(target)] + flags))
        encodes[name] = (info, wall, target)

    # (w) on CUDA: encode_video in this process, the GPU-busy fraction and the peak GPU memory of each engine
    sweep = []
    if on_cuda:
        from densevid import DensePoseEstimator, EncodeConfig
        from densevid.pipeline.engine import encode_video

        for engine, batch in [("torchscript", 1)] + [("native", b) for b in native_batches if b > 1]:
            config = EncodeConfig(model=str(model_path), resolution=RESOLUTION, device=str(device), half=True,
                                  engine=engine, batch_size=batch, overwrite=True, lossless=True)
            estimator = DensePoseEstimator.from_config(config)
            encode_video(clip_e, tmp / "warm.mkv", estimator, config=config)  # first calls, kernels, cuDNN plans
            torch.cuda.reset_peak_memory_stats(device)
            out(f"running (w) encode_video in-process, {engine} B = {batch} ...")
            result = encode_video(clip_e, tmp / f"sweep_{engine}_{batch}.mkv", estimator, config=config)
            sweep.append((engine, batch, result, torch.cuda.max_memory_allocated(device)))
            del estimator

    # (1) one frame: the whole process against its parts
    one_clip, _ = capped_clip(clip, 1, tmp / "one_frame.mp4")
    out("running (1) a one-frame encode and its parts ...")
    parts, _ = run_child("--_parts-child", json.dumps([str(one_clip), str(model_path), str(device)]))
    one_info, one_wall = run_child("--_encode-child", json.dumps([str(one_clip), "--model", str(model_path),
                                                                 "--device", str(device), "-o",
                                                                 str(tmp / "one.mp4"), "--overwrite", "-q"]))

    # (r) the cost against --resolution (the tuple files run at the size they are given)
    resolution_rows = []
    if style == "tuple" and not args.skip_resolutions:
        file = load_model(model_path, device, engine="torchscript")
        native = load_model(model_path, device, engine="native", batch_size=1)
        for resolution in (512, 768, 1024):
            out(f"running (r) resolution {resolution} ...")
            frames = padded_frames(clip_e, 2, resolution)
            row = [resolution, frames[0].shape[0], frames[0].shape[1]]
            for model in (file, native):
                model_alone(model, frames, 1, None, 2)
                row.append(model_alone(model, frames, 1, None, 2) / 2)
            resolution_rows.append(row)

    naive = None
    if args.naive_frames:
        out(f"running (n) naive node loop ({args.naive_frames} frames) ...")
        try:
            n_done, n_sec = run_naive(clip_e, tmp / "naive.mp4", model_path, device, args.naive_frames)
            naive = (n_done, n_sec)
        except Exception as error:  # the other rows are still worth printing
            out(f"(n) naive node loop failed: {type(error).__name__}: {' '.join(str(error).split())[-300:]}")

    def ok(flag: bool) -> str:
        return "PASS" if flag else "FAIL"

    out("")
    out("| variant | frames | seconds | s/frame | frames/s | vs TorchScript float32 limit |")
    out("|---|---:|---:|---:|---:|---:|")
    for label, frames, sec in rows:
        rate = frames / sec
        mark = " **(limit)**" if rate in (ts_limit, native_limit) else ""
        out(f"| {label}{mark} | {frames} | {sec:.2f} | {sec / frames:.3f} | {rate:.3f} | {rate / ts_limit:.2f}x |")
    for name, (info, wall, _) in encodes.items():
        rate = info["frames"] / wall
        target = f" (target >= {TARGET_VS_LIMIT}: {ok(rate / ts_limit >= TARGET_VS_LIMIT)})" if "auto" in name else ""
        out(f"| (e) densevid encode {name}, whole process ({info['workers']} workers, {info['engine']}; start-up "
            f"included) | {info['frames']} | {wall:.2f} | {wall / info['frames']:.3f} | {rate:.3f} | "
            f"**{rate / ts_limit:.2f}x**{target} |")
    if naive:
        n_done, n_sec = naive
        out(f"| (n) naive node loop (serial, cv2 mp4v) | {n_done} | {n_sec:.2f} | {n_sec / n_done:.3f} | "
            f"{n_done / n_sec:.3f} | {n_done / n_sec / ts_limit:.2f}x |")
    out("")
    out(f"limits: the TorchScript file {ts_limit:.3f} frames/s, the native model (float32) {native_limit:.3f} "
        f"frames/s = {native_limit / ts_limit:.2f}x the file's (target >= 1.0: {ok(native_limit / ts_limit >= 1.0)})"
        + (f"; the native model in half precision {best_half_native:.3f} frames/s = "
           f"{best_half_native / ts_limit:.2f}x the file's float32 (target >= 1.3: "
           f"{ok(best_half_native / ts_limit >= 1.3)})" if best_half_native else ""))
    auto_info, auto_wall, auto_out = encodes["defaults (--engine auto)"]
    out(f"(e) defaults: {auto_info['frames'] / auto_wall / native_limit:.2f}x the native limit; without start-up and "
        f"load (the encode's own wall {auto_info['seconds']:.2f} s of the process's {auto_wall:.2f} s) "
        f"{auto_info['frames'] / auto_info['seconds'] / ts_limit:.2f}x the file's limit; stage busy: "
        f"{stage_text(auto_info['stages'], auto_info['seconds'], auto_info['frames'])}; peak RSS "
        f"{auto_info['maxrss_kb'] / 1024:.0f} MiB")
    ts_out = encodes["--engine torchscript"][2]
    out(f"(e) labels of the defaults against --engine torchscript: {_labels_agreement(auto_out, ts_out):.6%} agree")
    if "--half" in encodes:
        agree = _labels_agreement(encodes["--half"][2], ts_out)
        out(f"(e) labels of --half against --engine torchscript (float32): {agree:.4%} agree"
            + (f" (target >= 99.5%: {ok(agree >= 0.995)})" if on_cuda else ""))
    for engine, batch, result, peak in sweep:
        rate = result.frames / result.seconds
        busy = result.stage_seconds.get("model_gpu")
        out(f"(w) encode_video in-process, --half, {engine} B = {batch}, {result.workers} workers: {rate:.1f} frames/s "
            f"= {rate / ts_limit:.2f}x the file's float32 limit; GPU busy "
            f"{busy / result.seconds if busy else float('nan'):.1%}; peak GPU memory {peak / 2**30:.2f} GiB")
    if sweep:
        ts_rate = next(r.frames / r.seconds for e, _, r, _ in sweep if e == "torchscript")
        best = max((r.frames / r.seconds for e, _, r, _ in sweep if e == "native"), default=None)
        if best:
            out(f"(w) the native model's best {best:.1f} frames/s = {best / ts_rate:.2f}x the TorchScript file's "
                f"{ts_rate:.1f} (target >= 3: {ok(best / ts_rate >= 3)})")
    if "--half" in encodes:
        half_info, half_wall, half_out = encodes["--half"]
        speed = (half_info["frames"] / half_wall) / (auto_info["frames"] / auto_wall)
        agree = _labels_agreement(half_out, auto_out)
        out(f"(e) --half: {speed:.2f}x the float32 whole-process throughput (target >= 1.3: {ok(speed >= 1.3)}); "
            f"labels equal to float32's on {agree:.2%} of pixels (target >= 95%: {ok(agree >= 0.95)})")
    budget_one = parts["import"] + parts["load"] + 1.3 * parts["frame"]
    out(f"(1) one-frame encode, whole process: {one_wall:.2f} s; its parts: import {parts['import']:.2f} s, load "
        f"(model, render kernels) {parts['load']:.2f} s, the first frame {parts['first']:.2f} s, one frame warm "
        f"{parts['frame']:.2f} s: import + load + 1.3 x frame = {budget_one:.2f} s (target: the whole process within "
        f"it: {ok(one_wall <= budget_one)})")
    if resolution_rows:
        out("")
        out("| --resolution | model input (padded) | TorchScript file s/frame | native s/frame |")
        out("|---:|---|---:|---:|")
        for resolution, h, w, file_s, native_s in resolution_rows:
            out(f"| {resolution} | {w}x{h} | {file_s:.2f} | {native_s:.2f} |")


def parts_child(clip: str, model: str, device: str) -> None:
    """The parts of a one-frame encode, in a fresh process: import, load (model + render kernels), the first
    model call on the frame and a warm one."""
    t0 = time.perf_counter()
    import torch

    from densevid import DensePoseEstimator, EncodeConfig  # noqa: F401  (what encode imports)
    from densevid.pipeline.engine import resize_and_pad
    from densevid.pipeline.io import iter_frame_batches
    t1 = time.perf_counter()
    estimator = DensePoseEstimator(model, resolution=RESOLUTION, device=device)
    t2 = time.perf_counter()
    frame = next(iter(iter_frame_batches(clip, 1))).frames_rgb[0].numpy()
    padded = torch.from_numpy(resize_and_pad(frame, RESOLUTION)[0])
    t3 = time.perf_counter()
    estimator.detect(padded)
    t4 = time.perf_counter()
    estimator.detect(padded)
    t5 = time.perf_counter()
    print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first": t4 - t3, "frame": t5 - t4}))


def io_bound(args, tmp: Path, clip: Path, device, out) -> None:
    from densevid.pipeline.models import save_standin

    model_path = save_standin(tmp / "standin_tuple.torchscript", style="tuple", seed=0)
    clip_s, n_frames = capped_clip(clip, args.small_frames, tmp / "io_bound.mp4")
    out(f"I/O-bound: cheap stand-in, {n_frames} frames of {clip.name}")
    a_runs, b_runs = [], []
    for r in range(args.repeats):  # interleaved, best of --repeats: the machine may be shared
        out(f"running (a) I/O floor and (b) densevid encode, whole processes, round {r + 1} ...")
        a_info, a_wall = run_child("--_floor-child", str(clip_s), str(tmp / f"floor{r}.mp4"))
        a_runs.append((a_wall, a_info))
        b_info, b_wall = run_child("--_encode-child", json.dumps(
            [str(clip_s), "-o", str(tmp / f"encode_b{r}.mp4"), "--model", str(model_path), "--device", str(device),
             "--overwrite", "-q"]))
        b_runs.append((b_wall, b_info))
    a_wall, a_info = min(a_runs, key=lambda t: t[0])
    b_wall, b_info = min(b_runs, key=lambda t: t[0])
    a_rate, b_rate = a_info["frames"] / a_wall, b_info["frames"] / b_wall
    ratio = b_rate / a_rate

    out(f"running the RSS children ({args.rss_frames} frames and {LOOPS}x) ...")
    frames, rate = decode_frames(clip_s, args.rss_frames)
    rss_args = ["--model", str(model_path), "--device", str(device), "--overwrite", "-q"]
    rss = {}
    for name, repeat in (("short", 1), ("long", LOOPS)):
        looped = write_clip(tmp / f"rss_{name}.mp4", frames, rate, repeat=repeat, preset="veryfast")
        rss[name], _ = run_child("--_encode-child", json.dumps([str(looped), "-o", str(tmp / f"rss_{name}_out.mp4")]
                                                               + rss_args))
    del frames
    rss_ratio = rss["long"]["maxrss_kb"] / rss["short"]["maxrss_kb"]

    def ok(flag: bool) -> str:
        return "PASS" if flag else "FAIL"

    out("")
    out("| variant (whole processes, start-up included) | frames | seconds | frames/s | vs I/O floor |")
    out("|---|---:|---:|---:|---:|")
    out(f"| (a) I/O floor: decode + resize/pad + x264 (best of {args.repeats}; in-process part "
        f"{a_info['seconds']:.2f} s) | {a_info['frames']} | {a_wall:.2f} | {a_rate:.1f} | 1.00x |")
    out(f"| (b) densevid encode, defaults ({b_info['workers']} workers; best of {args.repeats}; encode's own wall "
        f"{b_info['seconds']:.2f} s) | {b_info['frames']} | {b_wall:.2f} | {b_rate:.1f} | **{ratio:.2f}x** (target >= "
        f"{TARGET_VS_FLOOR}: {ok(ratio >= TARGET_VS_FLOOR)}) |")
    spread = ", ".join(f"(a) {a[1]['frames'] / a[0]:.1f} / (b) {b[1]['frames'] / b[0]:.1f}"
                       for a, b in zip(a_runs, b_runs))
    out(f"\nall rounds, frames/s: {spread}")
    out(f"(b) stage busy seconds: {stage_text(b_info['stages'], b_info['seconds'], b_info['frames'])}")
    out(f"peak RSS of (b): {n_frames} frames {b_info['maxrss_kb'] / 1024:.0f} MiB; of the same on "
        f"{rss['short']['frames']} frames {rss['short']['maxrss_kb'] / 1024:.0f} MiB and "
        f"{rss['long']['frames']} frames "
        f"({LOOPS}x loop) {rss['long']['maxrss_kb'] / 1024:.0f} MiB; long/short = **{rss_ratio:.3f}** "
        f"(target <= {TARGET_RSS_RATIO:.2f}: {ok(rss_ratio <= TARGET_RSS_RATIO)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=None,
                        help="input video (default: the dance clip or a generated one)")
    parser.add_argument("--frames", type=int, default=8, help="model-bound: frames densevid encode runs (default 8)")
    parser.add_argument("--model-frames", type=int, default=4,
                        help="model-bound: model calls per model-alone variant (default 4)")
    parser.add_argument("--naive-frames", type=int, default=3, help="model-bound: frames of the naive loop (default 3)")
    parser.add_argument("--small-frames", type=int, default=180, help="I/O-bound: frames of the clip (default 180)")
    parser.add_argument("--rss-frames", type=int, default=120,
                        help="I/O-bound: frames of the short RSS clip (the long one loops it 10x; default 120)")
    parser.add_argument("--repeats", type=int, default=2, help="I/O-bound: rounds of (a) and (b); the best is reported")
    parser.add_argument("--model", type=Path, default=None, help="model-bound: a TorchScript model to use instead of "
                                                                 "generating the real-cost stand-in")
    parser.add_argument("--depth", type=int, choices=(50, 101), default=50, help="real-cost stand-in: ResNet depth")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--style", choices=("tuple", "dict"), default="tuple",
                        help="model-bound: the stand-in's export style (tuple: the hub files; dict: the releases)")
    parser.add_argument("--batch-list", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="model-bound: native B to try (default 1,2 on the CPU, 1,4,8,16 on CUDA)")
    parser.add_argument("--skip-resolutions", action="store_true", help="model-bound: no cost-vs-resolution table")
    parser.add_argument("--workers-list", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="model-bound: N to try, e.g. 1,2,3,4 (default: 1..min(4, threads) on the CPU, "
                             "1..4 on CUDA); "
                             "also runs encode_video in-process for each")
    parser.add_argument("--skip-model-bound", action="store_true")
    parser.add_argument("--skip-io-bound", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    parser.add_argument("--_encode-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_floor-child", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_parts-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._parts_child is not None:
        parts_child(*json.loads(args._parts_child))
        return 0

    if args._encode_child is not None:
        encode_child(json.loads(args._encode_child))
        return 0
    if args._floor_child:
        floor_child(*args._floor_child)
        return 0

    import torch

    from densevid.pipeline.config import resolve_device

    device = resolve_device(args.device)
    lines: list[str] = []

    def out(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="densevid-bench-") as tmp_str:
        tmp = Path(tmp_str)
        clip, note = source_clip(args, tmp)
        out(f"input {clip}{note}; device {device}, resolution {RESOLUTION}, torch {torch.__version__}")
        if not args.skip_model_bound:
            model_bound(args, tmp, clip, device, out)
            out("")
        if not args.skip_io_bound:
            io_bound(args, tmp, clip, device, out)
    out(f"\nbench: {time.perf_counter() - started:.0f} s; load average at the end (1/5/15 min): "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes on this {os.cpu_count()}-cpu machine "
        f"skew every number)")
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
