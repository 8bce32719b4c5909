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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

import aiohttp
import numpy as np

NODE = "Inference_Core_DensePosePreprocessor"
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["info", "missing", "parity", "interrupt", "free"])
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    parser.add_argument("--comfyui", default="ComfyUI", help="ComfyUI's folder (its input/, output/, models/)")
    parser.add_argument("--model", default="densepose_r50_fpn_dl.torchscript")
    parser.add_argument("--model-file", help="parity: the file the node uses (default: models/densepose/MODEL)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--after", type=int, default=3, help="interrupt: progress messages before POST /interrupt")
    parser.add_argument("--pid", type=int, help="free: the ComfyUI process")
    args = parser.parse_args()
    async with Client(args.url) as client:
        await globals()[f"step_{args.step}"](client, args)


if __name__ == "__main__":
    asyncio.run(main())
