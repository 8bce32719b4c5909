"""Drive a running ComfyUI (with densevid in custom_nodes) over HTTP and its websocket, and measure the node.

Run with ComfyUI's python (it has aiohttp, psutil and Pillow), densevid importable (PYTHONPATH = the folder
above the checkout). Steps (each prints one JSON line):

  info       the node's inputs as /object_info reports them
  missing    a run without weights: seconds until ComfyUI reports the error, and its message
  parity     LoadImage x2 -> ImageBatch -> RepeatImageBatch -> the node -> SaveImage: every saved PNG equals
             the Python API's hint of its frame; the per-frame progress messages
  interrupt  a 64-frame batch, POST /interrupt after AFTER progress messages: how many frames and seconds later
             it stopped
  free       RSS of the ComfyUI process (--pid) with a model loaded, then after POST /free (with glibc, start
             ComfyUI with MALLOC_MMAP_THRESHOLD_=131072 so freed weights go back to the system); when a
             harness node DensevidE2EProbe is installed, also what it counts of the TorchScript modules alive

The VIDEO node (DensevidDensePoseVideo):

  clip       write a synthetic clip into ComfyUI's input/ (--clip NAME, --seconds, --size WxH, --fps): a
             moving figure on a textured background with a sine-tone AAC track (H.264 in MP4)
  video      LoadVideo -> the VIDEO node (lossless): its hint video (in ComfyUI's temp/) equals `densevid encode
             --lossless` of the same file with the same settings, frame for frame and timestamp for timestamp,
             and carries the source's audio; the per-frame progress messages and the previews (binary
             websocket messages) seen
  save       LoadVideo -> the VIDEO node (H.264) -> SaveVideo: the saved file's frames against `densevid encode`
             (same settings, H.264), its audio, and the example workflow's node types present in /object_info
  workflows  every example_workflows/*.json, converted to an API prompt as the frontend does (LoadVideo reading
             --clip), queued: how each ended and what it output
  vinterrupt POST /interrupt after AFTER progress messages of the VIDEO node: frames and seconds until it ended,
             and no hint file left in temp/
  rss        peak RSS of the ComfyUI process (--pid; sampled every 20 ms) while LoadVideo -> the VIDEO node ->
             SaveVideo runs on --clip (--path video), or LoadVideo -> GetVideoComponents -> the IMAGE node ->
             CreateVideo -> SaveVideo (--path image)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path

import aiohttp
import numpy as np

NODE = "Inference_Core_DensePosePreprocessor"
VIDEO_NODE = "DensevidDensePoseVideo"
IMAGES = ("densevid_dance_010.png", "densevid_dance_060.png")
PROBE = "DensevidE2EProbe"


def workflow(model: str, frames: int, resolution: int, prefix: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": IMAGES[0]}},
        "2": {"class_type": "LoadImage", "inputs": {"image": IMAGES[1]}},
        "3": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}},
        "4": {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0], "amount": frames // 2}},
        "5": {"class_type": NODE, "inputs": {"image": ["4", 0], "model": model, "cmap": "Viridis (MagicAnimate)",
                                             "resolution": resolution}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": prefix}},
    }


class Client:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex

    async def __aenter__(self):
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(f"{self.url}/ws?clientId={self.client_id}".replace("http", "ws", 1))
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()
        await self.session.close()

    async def post(self, path: str, payload: dict) -> dict:
        async with self.session.post(self.url + path, json=payload) as response:
            text = await response.text()
            if response.status != 200:
                raise RuntimeError(f"POST {path}: HTTP {response.status}: {text}")
            return json.loads(text) if text else {}

    async def get(self, path: str) -> dict:
        async with self.session.get(self.url + path) as response:
            return await response.json()

    async def history(self, prompt_id: str) -> dict:
        """The prompt's history entry: ComfyUI writes it just after it sends execution_success."""
        for _ in range(100):
            entry = (await self.get(f"/history/{prompt_id}")).get(prompt_id)
            if entry is not None:
                return entry
            await asyncio.sleep(0.1)
        raise RuntimeError(f"no history for prompt {prompt_id}")

    async def queue(self, prompt: dict) -> str:
        return (await self.post("/prompt", {"prompt": prompt, "client_id": self.client_id}))["prompt_id"]

    async def events(self, prompt_id: str, on_progress=None):
        """(seconds since call, message) of the prompt until it ends (success, error or interrupted)."""
        started = time.perf_counter()
        seen = []
        while True:
            message = await self.ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY:  # a preview image (ComfyUI sends them unlabelled)
                seen.append((time.perf_counter() - started, {"type": "binary", "data": {}}))
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            data = event.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            seen.append((time.perf_counter() - started, event))
            if event["type"] == "progress" and on_progress is not None:
                await on_progress(data)
            if event["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                return seen


def progress_of(events, node="5"):
    return [(round(t, 3), e["data"]["value"], e["data"]["max"]) for t, e in events
            if e["type"] == "progress" and e["data"].get("node") == node]


def ending(events):
    t, event = events[-1]
    return round(t, 3), event["type"], event["data"].get("exception_message")


async def step_info(client, args):
    info = await client.get(f"/object_info/{NODE}")
    print(json.dumps({"step": "info", "input": info[NODE]["input"]}))


async def step_missing(client, args):
    started = time.perf_counter()
    prompt_id = await client.queue(workflow(args.model, 2, args.resolution, "densevid_e2e/missing"))
    events = await client.events(prompt_id)
    seconds, kind, message = ending(events)
    print(json.dumps({"step": "missing", "seconds_from_post": round(time.perf_counter() - started, 3),
                      "ended": kind, "message": message}))


async def step_parity(client, args):
    from PIL import Image

    from densevid import DensePoseEstimator

    prompt_id = await client.queue(workflow(args.model, args.frames, args.resolution, "densevid_e2e/parity"))
    events = await client.events(prompt_id)
    history = await client.history(prompt_id)
    saved = history["outputs"]["6"]["images"]
    out_dir = Path(args.comfyui) / "output"
    model_path = Path(args.model_file or Path(args.comfyui) / "models" / "densepose" / args.model)
    estimator = DensePoseEstimator(str(model_path), cmap="viridis", resolution=args.resolution, device="cpu")
    inputs = [np.array(Image.open(Path(args.comfyui) / "input" / name).convert("RGB")) for name in IMAGES]
    expected = [estimator.hint(frame).cpu().numpy() for frame in inputs]
    mismatches = []
    for index, entry in enumerate(saved):
        png = np.array(Image.open(out_dir / entry["subfolder"] / entry["filename"]))
        if png.shape != expected[index % 2].shape or not np.array_equal(png, expected[index % 2]):
            mismatches.append(index)
    print(json.dumps({"step": "parity", "ended": ending(events)[1], "saved": len(saved),
                      "hint_shape": list(expected[0].shape), "mismatching_frames": mismatches,
                      "people_pixels": int((expected[0] != expected[0][0, 0]).any(-1).sum()),
                      "progress": progress_of(events)}))


async def step_interrupt(client, args):
    sent = {}

    async def on_progress(data):
        if data.get("node") == "5" and data["value"] == args.after and not sent:
            sent["at"] = time.perf_counter()
            await client.post("/interrupt", {})

    started = time.perf_counter()
    prompt_id = await client.queue(workflow(args.model, 64, args.resolution, "densevid_e2e/interrupt"))
    events = await client.events(prompt_id, on_progress)
    ended = time.perf_counter()
    progress = progress_of(events)
    after = [p for p in progress if p[1] > args.after]
    frame_seconds = np.diff([p[0] for p in progress]).tolist()
    print(json.dumps({"step": "interrupt", "ended": ending(events)[1], "interrupt_after_frames": args.after,
                      "progress_messages_after_interrupt": len(after),
                      "seconds_from_interrupt_to_end": round(ended - sent["at"], 3) if sent else None,
                      "seconds_per_frame_before": [round(s, 3) for s in frame_seconds],
                      "seconds_total": round(ended - started, 3)}))


async def probe(client, tag: str) -> str | None:
    """What the harness node DensevidE2EProbe (when installed in custom_nodes) says about the TorchScript
    modules alive in ComfyUI's process."""
    if PROBE not in await client.get("/object_info"):
        return None
    prompt_id = await client.queue({"1": {"class_type": PROBE, "inputs": {"tag": tag}}})
    await client.events(prompt_id)
    return (await client.history(prompt_id))["outputs"]["1"]["text"][0]


async def step_free(client, args):
    import psutil

    process = psutil.Process(args.pid)
    mib = 1 << 20
    report = {"step": "free", "rss_mib_before_run": round(process.memory_info().rss / mib),
              "probe_before_run": await probe(client, "before the run")}
    prompt_id = await client.queue(workflow(args.model, 2, args.resolution, "densevid_e2e/free"))
    report["ended"] = ending(await client.events(prompt_id))[1]
    report["rss_mib_with_model"] = round(process.memory_info().rss / mib)
    report["probe_with_model"] = await probe(client, "after the run")
    await client.post("/free", {"unload_models": True, "free_memory": True})
    time.sleep(3)
    report["rss_mib_after_free"] = round(process.memory_info().rss / mib)
    report["probe_after_free"] = await probe(client, "after POST /free")
    print(json.dumps(report))

def api_prompt(workflow: dict, object_info: dict, clip: str) -> dict:
    """A saved (UI) workflow as the API prompt ComfyUI's frontend would queue: each node's widget values go to
    its widget inputs in /object_info's order (required, then optional; inputs fed by a link have no value
    there), an upload button's extra value is dropped; LoadVideo reads ``clip``."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        info = object_info[node["type"]]["input"]
        linked = {slot["name"]: slot["link"] for slot in node.get("inputs", []) if slot.get("link") is not None}
        inputs = {}
        values = iter(node.get("widgets_values", []))
        for name, spec in {**info.get("required", {}), **info.get("optional", {})}.items():
            if name in linked:
                link = links[linked[name]]
                inputs[name] = [str(link[1]), link[2]]
            elif isinstance(spec[0], list) or spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                inputs[name] = next(values)
        if node["type"] == "LoadVideo":
            inputs["file"] = clip
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


async def step_workflows(client, args):
    object_info = await client.get("/object_info")
    for path in sorted((Path(__file__).parents[1] / "example_workflows").glob("*.json")):
        prompt = api_prompt(json.loads(path.read_text()), object_info, args.clip)
        prompt_id = await client.queue(prompt)
        events = await client.events(prompt_id)
        history = await client.history(prompt_id)
        outputs = {node: sorted(entry) for node, entry in history.get("outputs", {}).items()}
        print(json.dumps({"step": "workflows", "workflow": path.name, "ended": ending(events)[1],
                          "message": ending(events)[2], "outputs": outputs}))


# --- the VIDEO node ------------------------------------------------------------------------------------

def video_prompt(clip: str, model: str, resolution: int, lossless: bool, save_prefix: str | None = None,
                 **settings) -> dict:
    inputs = {"video": ["1", 0], "model": model, "resolution": resolution, "lossless": lossless, **settings}
    prompt = {"1": {"class_type": "LoadVideo", "inputs": {"file": clip}},
              "2": {"class_type": VIDEO_NODE, "inputs": inputs}}
    if save_prefix is not None:
        prompt["3"] = {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": save_prefix,
                                                             "format": "auto", "codec": "auto"}}
    return prompt


def image_path_prompt(clip: str, model: str, resolution: int, save_prefix: str) -> dict:
    """The same job the way ComfyUI does it without the VIDEO node: every frame as one IMAGE batch."""
    return {"1": {"class_type": "LoadVideo", "inputs": {"file": clip}},
            "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
            "3": {"class_type": NODE, "inputs": {"image": ["2", 0], "model": model,
                                                 "cmap": "Viridis (MagicAnimate)", "resolution": resolution}},
            "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "audio": ["2", 1], "fps": ["2", 2]}},
            "5": {"class_type": "SaveVideo", "inputs": {"video": ["4", 0], "filename_prefix": save_prefix,
                                                        "format": "auto", "codec": "auto"}}}


def decode(path) -> tuple[np.ndarray, list[float], int]:
    """(frames uint8 [N,H,W,3], frame times in seconds, audio samples decoded (0 without audio))."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, seconds = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            seconds.append(round(float(frame.pts * stream.time_base), 4))
        samples = 0
        if container.streams.audio:
            container.seek(0)
            samples = sum(f.samples for f in container.decode(container.streams.audio[0]))
    return np.stack(frames), seconds, samples


def cli_encode(source: Path, out: Path, model_file: str, resolution: int, lossless: bool) -> None:
    """`densevid encode` of the same file with the node's settings (the node runs on ComfyUI's CPU)."""
    args = [sys.executable, "-m", "densevid.pipeline.cli", "encode", str(source), "-o", str(out), "--model",
            model_file, "--resolution", str(resolution), "--device", "cpu", "--quiet", "--overwrite"]
    subprocess.run(args + (["--lossless"] if lossless else []), check=True)


def node_output(history: dict, node: str = "2") -> Path:
    entry = history["outputs"][node]["images"][0]
    return Path(entry["type"]), Path(entry["subfolder"]) / entry["filename"]


def step_clip(args) -> None:
    """A synthetic clip: a textured background and a figure (head, torso, swinging limbs) walking across."""
    import av
    import cv2

    width, height = (int(v) for v in args.size.split("x"))
    frames = int(args.seconds * args.fps)
    out = Path(args.comfyui) / "input" / args.clip
    if out.exists():  # made by an earlier run with these settings (the name says the length)
        print(json.dumps({"step": "clip", "path": str(out), "reused": True}))
        return
    rng = np.random.default_rng(1)
    background = cv2.resize(rng.integers(40, 200, (height // 16, width // 16, 3), dtype=np.uint8), (width, height))
    rate = 48000
    with av.open(str(out), "w") as container:
        video = container.add_stream("libx264", rate=args.fps, options={"preset": "ultrafast", "crf": "23"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono")
        audio.codec_context.time_base = Fraction(1, rate)
        per_frame = rate // args.fps
        for i in range(frames):
            img = background.copy()
            cx, s = int((0.2 + 0.6 * (i / max(frames - 1, 1))) * width), height / 1080
            swing = int(80 * s * np.sin(i / 5))
            cv2.circle(img, (cx, int(260 * s)), int(60 * s), (230, 190, 160), -1)
            cv2.rectangle(img, (cx - int(80 * s), int(330 * s)), (cx + int(80 * s), int(650 * s)), (40, 60, 170), -1)
            for dx, sign in ((-1, 1), (1, -1)):
                hand = (cx + dx * int(180 * s), int(560 * s) + sign * swing)
                cv2.line(img, (cx + dx * int(70 * s), int(350 * s)), hand, (230, 190, 160), int(40 * s))
                cv2.line(img, (cx + dx * int(50 * s), int(640 * s)), (cx + dx * int(90 * s) + sign * swing,
                         int(1000 * s)), (30, 30, 60), int(50 * s))
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
            t = (np.arange(per_frame) + i * per_frame) / rate
            tone = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                              format="flt", layout="mono")
            tone.sample_rate, tone.pts, tone.time_base = rate, i * per_frame, Fraction(1, rate)
            for packet in audio.encode(tone):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    print(json.dumps({"step": "clip", "path": str(out), "frames": frames, "size": [width, height], "fps": args.fps,
                      "mib": round(out.stat().st_size / 2**20, 1)}))


async def step_video(client, args):
    comfyui = Path(args.comfyui)
    prompt_id = await client.queue(video_prompt(args.clip, args.model, args.resolution, lossless=True))
    events = await client.events(prompt_id)
    kind, relative = node_output(await client.history(prompt_id))
    hint_path = comfyui / kind / relative
    with tempfile.TemporaryDirectory() as work:
        cli_out = Path(work) / "cli.mkv"
        cli_encode(comfyui / "input" / args.clip, cli_out, args.model_file, args.resolution, lossless=True)
        node_frames, node_times, node_samples = decode(hint_path)
        cli_frames, cli_times, _ = decode(cli_out)
    _, source_times, source_samples = decode(comfyui / "input" / args.clip)
    progress = progress_of(events, node="2")
    print(json.dumps({"step": "video", "ended": ending(events)[1], "hint": str(relative), "folder": kind.name,
                      "frames": len(node_frames),
                      "equal_to_cli_lossless": bool(np.array_equal(node_frames, cli_frames)),
                      "times_equal_to_cli": node_times == cli_times,
                      "max_time_diff_to_source_s": max(abs(a - b) for a, b in zip(node_times, source_times)),
                      "audio_samples": node_samples, "source_audio_samples": source_samples,
                      "progress_messages": len(progress), "progress_first_last": [progress[0], progress[-1]],
                      "previews": sum(1 for _, e in events if e["type"] == "binary")}))


async def step_save(client, args):
    comfyui = Path(args.comfyui)
    prompt_id = await client.queue(video_prompt(args.clip, args.model, args.resolution, lossless=False,
                                                save_prefix="densevid_e2e/video"))
    events = await client.events(prompt_id)
    history = await client.history(prompt_id)
    kind, relative = node_output(history, node="3")
    saved = comfyui / kind / relative
    hint_kind, hint_relative = node_output(history, node="2")
    with tempfile.TemporaryDirectory() as work:
        cli_runs = [Path(work) / "cli_1.mp4", Path(work) / "cli_2.mp4"]
        for cli_out in cli_runs:  # twice: how far x264 itself varies from run to run here (its threads)
            cli_encode(comfyui / "input" / args.clip, cli_out, args.model_file, args.resolution, lossless=False)
        saved_frames, saved_times, saved_samples = decode(saved)
        cli_frames, cli_times, _ = decode(cli_runs[0])
        cli_again, _, _ = decode(cli_runs[1])
    same_shape = saved_frames.shape == cli_frames.shape
    error = np.abs(saved_frames.astype(int) - cli_frames.astype(int)) if same_shape else None
    within = round(float((error.max(-1) <= 3).mean()), 5) if same_shape else None  # H264_FLAT_COLOUR_ATOL
    known = await client.get("/object_info")
    workflow = json.loads((Path(__file__).parents[1] / "example_workflows" / "densepose_video.json").read_text())
    print(json.dumps({"step": "save", "ended": ending(events)[1], "saved": str(relative), "frames": len(saved_frames),
                      "video_packets_equal_to_the_nodes_hint": _packets(saved) == _packets(comfyui / hint_kind /
                                                                                           hint_relative),
                      "max_abs_diff_to_cli_h264": int(error.max()) if same_shape else None,
                      "share_of_pixels_within_3_of_cli_h264": within,
                      "cli_h264_run_to_run_max_abs_diff": int(np.abs(cli_frames.astype(int) - cli_again).max()),
                      "times_equal_to_cli": saved_times == cli_times, "audio_samples": saved_samples,
                      "example_workflow_nodes_known": all(n["type"] in known for n in workflow["nodes"])}))


def _packets(path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.dts is not None]


async def step_vinterrupt(client, args):
    sent = {}
    temp = Path(args.comfyui) / "temp"
    before = set(os.listdir(temp)) if temp.is_dir() else set()

    async def on_progress(data):
        if data.get("node") == "2" and data["value"] >= args.after and not sent:
            sent["at"], sent["value"] = time.perf_counter(), data["value"]
            await client.post("/interrupt", {})

    prompt_id = await client.queue(video_prompt(args.clip, args.model, args.resolution, lossless=False,
                                                max_frames=0, every_nth=1))
    events = await client.events(prompt_id, on_progress)
    ended = time.perf_counter()
    progress = progress_of(events, node="2")
    after = [p for p in progress if sent and p[1] > sent["value"]]
    left = sorted(set(os.listdir(temp)) - before) if temp.is_dir() else []
    print(json.dumps({"step": "vinterrupt", "ended": ending(events)[1], "interrupt_at_frame": sent.get("value"),
                      "frames_reported_after_interrupt": len(after),
                      "seconds_from_interrupt_to_end": round(ended - sent["at"], 3) if sent else None,
                      "seconds_per_frame": round(float(np.mean(np.diff([p[0] for p in progress]))), 3)
                      if len(progress) > 1 else None, "files_left_in_temp": left}))


async def step_rss(client, args):
    import psutil

    process = psutil.Process(args.pid)
    mib = 1 << 20
    prompt = video_prompt(args.clip, args.model, args.resolution, lossless=False,
                          save_prefix=f"densevid_e2e/rss_{args.path}") if args.path == "video" else \
        image_path_prompt(args.clip, args.model, args.resolution, f"densevid_e2e/rss_{args.path}")
    baseline = process.memory_info().rss
    peak = {"rss": baseline}
    done = asyncio.Event()

    async def sample():
        while not done.is_set():
            try:
                peak["rss"] = max(peak["rss"], process.memory_info().rss)
            except psutil.NoSuchProcess:  # killed (e.g. by the OOM killer)
                peak["died"] = True
                return
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    prompt_id = await client.queue(prompt)
    try:
        events = await asyncio.wait_for(client.events(prompt_id), timeout=args.timeout)
        ended = ending(events)
    except (asyncio.TimeoutError, aiohttp.ClientError) as error:
        ended = (None, f"no end seen: {type(error).__name__}", None)
    done.set()
    await sampler
    print(json.dumps({"step": "rss", "path": args.path, "clip": args.clip, "ended": ended[1],
                      "message": ended[2], "seconds": round(time.perf_counter() - started, 1),
                      "rss_mib_before": round(baseline / mib), "peak_rss_mib": round(peak["rss"] / mib),
                      "peak_minus_before_mib": round((peak["rss"] - baseline) / mib),
                      "process_died": peak.get("died", False)}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["info", "missing", "parity", "interrupt", "free", "clip", "video", "save",
                                         "vinterrupt", "rss", "workflows"])
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    parser.add_argument("--comfyui", default="ComfyUI", help="ComfyUI's folder (its input/, output/, models/)")
    parser.add_argument("--model", default="densepose_r50_fpn_dl.torchscript")
    parser.add_argument("--model-file", help="parity: the file the node uses (default: models/densepose/MODEL)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--after", type=int, default=3, help="interrupt: progress messages before POST /interrupt")
    parser.add_argument("--pid", type=int, help="free, rss: the ComfyUI process")
    parser.add_argument("--clip", default="densevid_e2e.mp4", help="VIDEO steps: the clip's name in input/")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip: its length")
    parser.add_argument("--size", default="640x360", help="clip: WxH")
    parser.add_argument("--fps", type=int, default=30, help="clip: frames per second")
    parser.add_argument("--path", choices=["video", "image"], default="video", help="rss: which nodes run it")
    parser.add_argument("--timeout", type=float, default=1800, help="rss: seconds to wait for the end")
    args = parser.parse_args()
    if args.step == "clip":
        step_clip(args)
        return
    async with Client(args.url) as client:
        await globals()[f"step_{args.step}"](client, args)


if __name__ == "__main__":
    asyncio.run(main())
