"""End-to-end benchmark: I/O floor vs `densevid encode` vs a naive ComfyUI-node-style loop.

One run prints one markdown table, measured on the same input and the same stand-in model
(``scripts/make_standin_models.save_standin``, tuple style, generated into a temp dir):

(a) I/O floor: decode (PyAV) + resize/pad (``pipeline._preprocess.resize_and_pad``) + H.264
    encode of the resized frames with the same ``VideoWriter`` settings; no model, no render.
    Decode runs in a thread feeding the encoder through a bounded queue, like the engine does.
(b) ``encode_video`` (lossy mp4), with its per-stage busy seconds.
(c) naive: a plain serial loop doing what the ComfyUI node does per frame (cv2 decode, cv2
    resize+pad, model call, per-instance F.interpolate of coarse/fine/u/v to the box size,
    labels, applyColorMap + paste into a BGR canvas, cvtColor, viridis fix, crop, cv2.VideoWriter
    mp4v).

Then peak RSS of (b) run in a child process on a clip and on the same clip looped 10x (each
child reports its own ``getrusage(RUSAGE_SELF).ru_maxrss``).

    python scripts/bench.py [--input PATH] [--frames N] [--naive-frames N] [--rss-frames N] [--device cpu]

Input: ``../shared/data/dance_576x1024.mp4`` (relative to the repo root) when present, else a
generated 576x1024 portrait clip of 90 frames.
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

import av
import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from densevid.pipeline._api import DensePoseEstimator  # noqa: E402
from densevid.pipeline._decode import iter_frame_batches, probe_video  # noqa: E402
from densevid.pipeline._encode import VideoWriter  # noqa: E402
from densevid.pipeline._engine import encode_video  # noqa: E402
from densevid.pipeline._preprocess import padded_size, resize_and_pad, resized_size  # noqa: E402

DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "dance_576x1024.mp4"
RESOLUTION = 512
TARGET_VS_NAIVE = 5.0
TARGET_VS_FLOOR = 0.75
TARGET_RSS_RATIO = 1.10
LOOPS = 10


# -- clips --------------------------------------------------------------------------------------

def decode_frames(path: Path, limit: int | None) -> tuple[list[np.ndarray], Fraction]:
    """The first ``limit`` frames (RGB) of ``path`` and the stream's average rate."""
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate) if stream.average_rate else Fraction(25)
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if limit is not None and len(frames) >= limit:
                break
    return frames, rate


def write_clip(path: Path, frames: list[np.ndarray], rate: Fraction, repeat: int = 1, preset: str = "fast") -> Path:
    """H.264 (crf 18) mp4 of ``frames`` played ``repeat`` times back to back (constant rate)."""
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


# -- (a) I/O floor ------------------------------------------------------------------------------

def run_io_floor(clip: Path, out: Path, batch_size: int = 8) -> tuple[int, float]:
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
        except BaseException as error:  # noqa: BLE001 - re-raised below
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


# -- (c) naive node-style loop ------------------------------------------------------------------

def run_naive(clip: Path, out: Path, model_path: Path, device: torch.device, limit: int | None) -> tuple[int, float]:
    with warnings.catch_warnings():  # torch.jit.load's deprecation notice; the node loads TorchScript this way
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(model_path), map_location=device).eval()
    info = probe_video(clip)
    warm_hw = padded_size(*resized_size(info.height, info.width, RESOLUTION))
    with torch.no_grad():  # warm-up outside the timer, as for (b): TorchScript's profiling runs
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
            # resize_image_with_pad
            h_raw, w_raw = image.shape[:2]
            k = float(RESOLUTION) / float(min(h_raw, w_raw))
            h_t, w_t = int(np.round(h_raw * k)), int(np.round(w_raw * k))
            image = cv2.resize(image, (w_t, h_t), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
            pad_h, pad_w = int(np.ceil(h_t / 64.0) * 64) - h_t, int(np.ceil(w_t / 64.0) * 64) - w_t
            padded = np.pad(image, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge")
            height, width = padded.shape[:2]
            canvas = np.zeros((height, width, 3), np.uint8)
            with torch.no_grad():
                chw = torch.from_numpy(padded).permute(2, 0, 1).contiguous().to(device)
                boxes, coarse, fine, u, v = model(chw)
                for i in range(len(boxes)):
                    box = boxes[i].clone()
                    box[2] -= box[0]
                    box[3] -= box[1]
                    x, y, bw, bh = [int(t) for t in box.tolist()]
                    bw, bh = max(bw, 1), max(bh, 1)
                    # the chart result resamples all four outputs to the box
                    c = F.interpolate(coarse[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)
                    f = F.interpolate(fine[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)
                    _u = F.interpolate(u[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)
                    _v = F.interpolate(v[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)
                    labels = (f.argmax(dim=1) * (c.argmax(dim=1) > 0).long()).squeeze(0).cpu().numpy().astype(np.uint8)
                    # MatrixVisualizer(inplace, val_scale=255/24, alpha=1)
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


# -- (b) encode + RSS child ---------------------------------------------------------------------

def rss_child(clip: str, model: str, out: str, device: str) -> None:
    estimator = DensePoseEstimator(model, cmap="viridis", resolution=RESOLUTION, device=device)
    loaded_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # imports + model, before any frame
    result = encode_video(clip, out, estimator)
    print(json.dumps({"frames": result.frames, "seconds": result.seconds, "loaded_kb": loaded_kb,
                      "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def run_rss(clip: Path, model: Path, out: Path, device: str) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_rss-child", str(clip), str(model), str(out),
                           "--device", device], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, default=None, help="input video (default: the dance clip or a generated one)")
    parser.add_argument("--frames", type=int, default=None, help="cap frames for (a) and (b) (default: all)")
    parser.add_argument("--naive-frames", type=int, default=120, help="cap for the naive loop (default 120; 0 = all)")
    parser.add_argument("--rss-frames", type=int, default=120,
                        help="frames of the short RSS clip (long = 10x; default 120; 0 = all)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (a) and (b), interleaved; the best is reported")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--_rss-child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._rss_child:
        rss_child(*args._rss_child, device=args.device)
        return 0

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    from make_standin_models import save_standin

    with tempfile.TemporaryDirectory(prefix="densevid-bench-") as tmp_str:
        tmp = Path(tmp_str)
        model_path = save_standin(tmp / "standin_tuple.torchscript", style="tuple", seed=0)

        source_note = ""
        if args.input is not None:
            clip = args.input
        elif DEFAULT_INPUT.exists():
            clip = DEFAULT_INPUT
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from clips import make_clip, synthetic_frames
            clip = make_clip(tmp / "generated_576x1024.mp4", synthetic_frames(90, 1024, 576), fps=25, codec="libx264",
                             options={"crf": "18", "preset": "fast"})
            source_note = " (generated: synthetic_frames, 90 frames, x264)"
        info = probe_video(clip)

        if args.frames:  # a truncated copy, so (a) and (b) read the same frames
            frames, rate = decode_frames(clip, args.frames)
            clip_ab = write_clip(tmp / "capped.mp4", frames, rate)
            del frames
        else:
            clip_ab = clip

        print(f"input {clip}{source_note}: {info.width}x{info.height}, {info.frame_count} frames, {info.codec}; "
              f"device {device}, resolution {RESOLUTION}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{os.cpu_count()} cpus", flush=True)

        estimator = DensePoseEstimator(str(model_path), cmap="viridis", resolution=RESOLUTION, device=str(device))
        for _ in range(2):  # warm-up outside the timer (TorchScript profiling runs)
            estimator.hint(np.zeros((info.height, info.width, 3), np.uint8))

        # (a) and (b) interleaved, best of --repeats: the machine may be shared, the best is the less noisy
        a_runs, b_runs = [], []
        for r in range(args.repeats):
            print(f"running (a) I/O floor, round {r + 1} ...", flush=True)
            cpu0 = cpu_seconds()
            frames_a, sec_a = run_io_floor(clip_ab, tmp / f"floor{r}.mp4")
            a_runs.append((sec_a, frames_a, cpu_seconds() - cpu0))
            print(f"running (b) encode_video, round {r + 1} ...", flush=True)
            cpu0 = cpu_seconds()
            res = encode_video(clip_ab, tmp / f"encode{r}.mp4", estimator)
            b_runs.append((res.seconds, res.frames, cpu_seconds() - cpu0, res))
        a_sec, a_frames, a_cpu = min(a_runs, key=lambda t: t[0])
        b_sec, b_frames, b_cpu, result = min(b_runs, key=lambda t: t[0])
        naive_limit = args.naive_frames or None
        print(f"running (c) naive loop ({naive_limit or 'all'} frames) ...", flush=True)
        cpu0 = cpu_seconds()
        c_frames, c_sec = run_naive(clip_ab, tmp / "naive.mp4", model_path, device, naive_limit)
        c_cpu = cpu_seconds() - cpu0

        rss_limit = args.rss_frames or None
        print(f"running RSS children ({rss_limit or 'all'} frames and {LOOPS}x) ...", flush=True)
        frames, rate = decode_frames(clip, rss_limit)
        n_short = len(frames)
        short_clip = write_clip(tmp / "rss_short.mp4", frames, rate, repeat=1, preset="veryfast")
        long_clip = write_clip(tmp / "rss_long.mp4", frames, rate, repeat=LOOPS, preset="veryfast")
        del frames
        rss_short = run_rss(short_clip, model_path, tmp / "rss_short_out.mp4", str(device))
        rss_long = run_rss(long_clip, model_path, tmp / "rss_long_out.mp4", str(device))

    fps = {"a": a_frames / a_sec, "b": b_frames / b_sec, "c": c_frames / c_sec}
    vs_naive = fps["b"] / fps["c"]
    vs_floor = fps["b"] / fps["a"]
    rss_ratio = rss_long["maxrss_kb"] / rss_short["maxrss_kb"]

    def ok(flag: bool) -> str:
        return "PASS" if flag else "FAIL"

    print()
    print("| variant | frames | seconds | frames/s | ratio vs naive | ratio vs I/O floor | CPU s (user+sys) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| (a) I/O floor: decode + resize/pad + x264 encode (best of {args.repeats}) | {a_frames} | {a_sec:.2f} | "
          f"{fps['a']:.1f} | {fps['a'] / fps['c']:.2f}x | 1.00x | {a_cpu:.1f} |")
    print(f"| (b) densevid encode (encode_video, mp4; best of {args.repeats}) | {b_frames} | {b_sec:.2f} | {fps['b']:.1f} | "
          f"**{vs_naive:.2f}x** (target >= {TARGET_VS_NAIVE:.0f}x: {ok(vs_naive >= TARGET_VS_NAIVE)}) | "
          f"**{vs_floor:.2f}x** (target >= {TARGET_VS_FLOOR}x: {ok(vs_floor >= TARGET_VS_FLOOR)}) | {b_cpu:.1f} |")
    print(f"| (c) naive node loop (serial, cv2 mp4v){' — first %d frames' % c_frames if naive_limit else ''} | "
          f"{c_frames} | {c_sec:.2f} | {fps['c']:.1f} | 1.00x | {fps['c'] / fps['a']:.2f}x | {c_cpu:.1f} |")
    spread = ", ".join(f"(a) {f / t:.1f} / (b) {g / u:.1f}" for (t, f, _), (u, g, _, _) in zip(a_runs, b_runs))
    print(f"\nall rounds, frames/s: {spread}")
    print()
    stages = result.stage_seconds
    stage_text = ", ".join(f"{k} {v:.2f} s ({v / b_sec:.0%} of wall, {v / max(b_frames, 1) * 1e3:.1f} ms/frame)"
                           for k, v in stages.items())
    print(f"(b) stage busy seconds (stages overlap; wall {b_sec:.2f} s): {stage_text}")
    if "model_gpu" in stages:
        print(f"(b) GPU busy fraction (model_gpu / wall): {stages['model_gpu'] / b_sec:.1%}")
    print()
    print(f"peak RSS of (b) in a child process: {n_short} frames {rss_short['maxrss_kb'] / 1024:.0f} MiB "
          f"({rss_short['seconds']:.1f} s), {rss_long['frames']} frames ({LOOPS}x loop) "
          f"{rss_long['maxrss_kb'] / 1024:.0f} MiB ({rss_long['seconds']:.1f} s); long/short = **{rss_ratio:.3f}** "
          f"(target <= {TARGET_RSS_RATIO:.2f}: {ok(rss_ratio <= TARGET_RSS_RATIO)}); growth over the loaded process "
          f"(imports + model, before the first frame): {(rss_short['maxrss_kb'] - rss_short['loaded_kb']) / 1024:.0f} MiB "
          f"short, {(rss_long['maxrss_kb'] - rss_long['loaded_kb']) / 1024:.0f} MiB long")
    print(f"load average at the end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(other processes on this {os.cpu_count()}-cpu machine skew every number)")
    notes = []
    if naive_limit and c_frames < b_frames:
        notes.append(f"naive loop capped at {c_frames} frames (--naive-frames) to keep the run short; ratios are per-frame rates")
    if rss_limit:
        notes.append(f"RSS clips: first {n_short} frames re-encoded (x264 veryfast), long = {LOOPS}x loop (--rss-frames)")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
