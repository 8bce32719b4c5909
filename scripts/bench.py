"""End-to-end benchmark: the model alone vs `densevid encode` vs a naive node loop, and the I/O floor.

One run prints two markdown tables, each measured on the same input and model:

1. **Model-bound** (the real-cost stand-in, ``densevid.pipeline.models.save_realcost``: a DensePose
   R-CNN of the real exports' architecture and cost, generated into a temp dir unless --model):
   (m) the model alone on the frames already resized and padded: one call at a time with all of
       torch's threads, then N calls at once in N threads (torch's threads split between them; on
       CUDA a stream each) for every N tried; the best is the **limit**;
   (e) `densevid encode` as a whole process, default settings (workers included), start-up
       included, timed from the process start to its exit (a child running the CLI's own ``main``,
       which also reports the stage busy times and its peak RSS);
   (w) on CUDA, or with --workers-list: ``encode_video`` in this process for each N, with the
       GPU-busy fraction (seconds in which a model call runs on the device, from CUDA events / wall);
   (n) a naive serial loop doing what the ComfyUI node does per frame.
2. **I/O-bound** (the cheap stand-in, ``densevid.pipeline.models.save_standin``), as whole
   processes: (a) the I/O floor: decode (PyAV) + resize/pad (``resize_and_pad``) + H.264 encode of
   the resized frames with the ``VideoWriter`` settings, no model; (b) `densevid encode`, start-up
   included. Then the peak RSS of (b) on the clip and on the clip looped 10x (bounded memory).

    python scripts/bench.py [--input PATH] [--frames N] [--model-frames N] [--naive-frames N]
                            [--small-frames N] [--rss-frames N] [--device cpu|cuda] [--half] [--workers-list 1,2,3,4]
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
    from densevid.pipeline.cli import main

    try:
        main(["encode", *argv], standalone_mode=False)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    result = results[0] if results else None
    print(json.dumps({"code": code, "frames": result.frames if result else 0,
                      "seconds": result.seconds if result else None,
                      "stages": result.stage_seconds if result else {}, "workers": result.workers if result else None,
                      "maxrss_kb": peak_rss_kb()}))


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
    frames, seconds = run_io_floor(Path(clip), Path(out))
    print(json.dumps({"frames": frames, "seconds": seconds}))


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

def padded_frames(clip: Path, count: int):
    from densevid.pipeline.engine import resize_and_pad

    frames, _ = decode_frames(clip, count)
    return [resize_and_pad(f, RESOLUTION)[0] for f in frames]


def model_alone(model, images, workers: int, threads: int | None, frames: int) -> float:
    """Seconds for ``frames`` model calls, ``workers`` at a time (each thread with ``threads`` intra-op
    threads on the CPU, its own stream on CUDA), on ``images`` in turn."""
    import torch

    on_cuda = model.device.type == "cuda"
    uploaded = [torch.from_numpy(image).to(model.device) for image in images]
    taken = iter(range(frames))
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
                        i = next(taken, None)
                    if i is None:
                        return
                    model.detect(uploaded[i % len(uploaded)])
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


def model_bound(args, tmp: Path, clip: Path, device, out) -> None:
    import torch

    from densevid.pipeline.engine import plan_workers
    from densevid.pipeline.models import load_model

    if args.model is not None:
        model_path = args.model
    else:
        from densevid.pipeline.models import save_standin_rcnn

        out(f"generating the real-cost stand-in (R{args.depth}, tuple style) ...")
        model_path = save_standin_rcnn(tmp / f"rcnn_r{args.depth}.torchscript", "tuple", args.depth)
    clip_e, n_frames = capped_clip(clip, args.frames, tmp / "model_bound.mp4")
    budget = torch.get_num_threads()
    on_cuda = device.type == "cuda"
    out(f"model {model_path.name}, {n_frames} frames of {clip.name}, device {device}{' fp16' if args.half else ''}, "
        f"torch {torch.__version__}, {budget} intra-op threads, {os.cpu_count()} cpus")

    model = load_model(model_path, device, half=args.half)
    images = padded_frames(clip_e, min(n_frames, 8))
    model_alone(model, images, 1, None, 2)  # warm-up outside the timer: TorchScript's profiling runs
    rows = []  # label, frames, seconds
    per = max(1, args.model_frames)
    sec = model_alone(model, images, 1, None, per)
    rows.append((f"(m) model alone, one call at a time ({budget} threads)" if not on_cuda else
                 "(m) model alone, one call at a time", per, sec))
    tried = args.workers_list or ([1, 2, 3, 4] if on_cuda else sorted({n for n in (1, 2, 3, 4) if n <= budget}))
    for n in tried:
        if n == 1 and not on_cuda:
            continue  # the row above
        threads = None if on_cuda else max(1, budget // n)
        frames = n * max(1, round(per / n))
        if on_cuda:
            model_alone(model, images, n, threads, n)  # each new stream's first call
        sec = model_alone(model, images, n, threads, frames)
        where = "streams" if on_cuda else f"threads of {threads} intra-op thread{'s' * (threads > 1)}"
        rows.append((f"(m) model alone, {n} at once ({n} {where})", frames, sec))
    limit = max(f / s for _, f, s in rows)

    default = plan_workers(device, None)
    child_args = [str(clip_e), "-o", str(tmp / "encode_e.mp4"), "--model", str(model_path), "--device", str(device),
                  "--overwrite", "-q"] + (["--half"] if args.half else [])
    out("running (e) densevid encode, whole process ...")
    e_info, e_wall = run_child("--_encode-child", json.dumps(child_args))
    encode_rows = [(f"(e) densevid encode, whole process, defaults ({e_info['workers']} workers"
                    f"{'' if on_cuda else f' x {default.threads} threads'}; start-up included)",
                    e_info["frames"], e_wall)]
    sweep = []
    if on_cuda or args.workers_list:
        from densevid import DensePoseEstimator, EncodeConfig
        from densevid.pipeline.engine import encode_video

        for n in tried:
            config = EncodeConfig(model=str(model_path), resolution=RESOLUTION, device=str(device), half=args.half,
                                  workers=n, overwrite=True)
            estimator = DensePoseEstimator.from_model(model, config)  # the model of (m): loaded and warm
            out(f"running (w) encode_video in-process, {n} workers ...")
            result = encode_video(clip_e, tmp / f"sweep{n}.mp4", estimator, config=config)
            sweep.append((n, result))
    naive_frames = args.naive_frames
    out(f"running (n) naive node loop ({naive_frames} frames) ...")
    try:
        n_frames_done, n_sec = run_naive(clip_e, tmp / "naive.mp4", model_path, device, naive_frames)
        naive = n_frames_done / n_sec
    except Exception as error:  # the other rows are still worth printing
        out(f"(n) naive node loop failed: {type(error).__name__}: {' '.join(str(error).split())[-300:]}")
        n_frames_done, n_sec, naive = 0, 0.0, None

    def vs_naive(rate: float) -> str:
        return f"{rate / naive:.2f}x" if naive else "n/a"

    def ok(flag: bool) -> str:
        return "PASS" if flag else "FAIL"

    out("")
    out("| variant | frames | seconds | frames/s | s/frame | vs model-alone limit | vs naive |")
    out("|---|---:|---:|---:|---:|---:|---:|")
    for label, frames, sec in rows:
        rate = frames / sec
        mark = " **(limit)**" if rate == limit else ""
        out(f"| {label}{mark} | {frames} | {sec:.2f} | {rate:.3f} | {sec / frames:.2f} | {rate / limit:.2f}x | "
            f"{vs_naive(rate)} |")
    for label, frames, sec in encode_rows:
        rate = frames / sec
        out(f"| {label} | {frames} | {sec:.2f} | {rate:.3f} | {sec / frames:.2f} | **{rate / limit:.2f}x** "
            f"(target >= {TARGET_VS_LIMIT}: {ok(rate / limit >= TARGET_VS_LIMIT)}) | {vs_naive(rate)} |")
    for n, result in sweep:
        rate = result.frames / result.seconds
        busy = result.stage_seconds.get("model_gpu")
        note = f"; GPU busy {busy / result.seconds:.1%}" if busy is not None else ""
        out(f"| (w) encode_video in-process, {n} workers (model loaded{note}) | {result.frames} | "
            f"{result.seconds:.2f} | {rate:.3f} | {result.seconds / result.frames:.3f} | {rate / limit:.2f}x | "
            f"{vs_naive(rate)} |")
    if naive:
        out(f"| (n) naive node loop (serial, cv2 mp4v) | {n_frames_done} | {n_sec:.2f} | {naive:.3f} | "
            f"{n_sec / n_frames_done:.2f} | {naive / limit:.2f}x | 1.00x |")
    out("")
    e_stages = e_info["stages"]
    out(f"(e) stage busy seconds (model and render summed over the workers; stages overlap; the encode's own wall "
        f"{e_info['seconds']:.2f} s, the process's {e_wall:.2f} s, so start-up and load "
        f"{e_wall - e_info['seconds']:.2f} s): {stage_text(e_stages, e_info['seconds'], e_info['frames'])}")
    out(f"(e) without start-up and model load (the encode's own wall): "
        f"{e_info['frames'] / e_info['seconds'] / limit:.2f}x the limit; peak RSS of the whole process: "
        f"{e_info['maxrss_kb'] / 1024:.0f} MiB")
    for n, result in sweep:
        stages = result.stage_seconds
        line = f"(w) {n} workers: {stage_text(stages, result.seconds, result.frames)}"
        if "model_gpu" in stages:
            line += (f"; GPU busy fraction (model_gpu / wall) {stages['model_gpu'] / result.seconds:.1%}, model calls "
                     f"overlapping x{stages.get('model_gpu_sum', 0) / max(stages['model_gpu'], 1e-9):.2f}")
        out(line)


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
    parser.add_argument("--frames", type=int, default=48, help="model-bound: frames densevid encode runs (default 48)")
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
    parser.add_argument("--half", action="store_true", help="model-bound: fp16 (CUDA)")
    parser.add_argument("--workers-list", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="model-bound: N to try, e.g. 1,2,3,4 (default: 1..min(4, threads) on the CPU, "
                             "1..4 on CUDA); "
                             "also runs encode_video in-process for each")
    parser.add_argument("--skip-model-bound", action="store_true")
    parser.add_argument("--skip-io-bound", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    parser.add_argument("--_encode-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_floor-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

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
