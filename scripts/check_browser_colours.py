"""Play densevid's H.264 outputs in headless Chromium and compare the colours it shows with the colormap.

Needs Chromium, and installs nothing itself. On Debian/Ubuntu: ``apt-get install -y chromium`` (the
Debian package plays H.264). Pass ``--chromium PATH`` for another binary.

For each size (portrait 512x910, the default output of a 576x1024 video; square 512x512, MagicAnimate;
landscape 910x512) it writes a hint-like video of flat bands of colormap colours with densevid's own
writer (``VideoWriter``: the conversion, colour tags and fingerprint tag of every H.264 output), and, for comparison,
the same frames the way densevid wrote them before it tagged its outputs (PyAV's implicit conversion,
no tags). A tiny page served from 127.0.0.1 plays each video in a <video>, draws a frame onto a
canvas and reads the pixel at the centre of every band; the script prints measured vs expected.

    python scripts/check_browser_colours.py            # exit 0 when every tagged output is within 3

Chromium runs with a fresh profile and no network besides the local page: --headless --no-sandbox
--disable-gpu --disable-background-networking --disable-component-update --disable-sync --no-first-run.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's parent: `import densevid`
from densevid.kernels import hint_lut  # noqa: I001  (after the sys.path line above)
from densevid.pipeline.io import VideoWriter

SIZES = {"portrait": (910, 512), "square": (512, 512), "landscape": (512, 910)}  # height, width
LABELS = (0, 1, 6, 12, 18, 24)  # the background and parts across the colormap
TOLERANCE = 3  # as tests/helpers.py H264_FLAT_COLOUR_ATOL: 8-bit limited-range 4:2:0 rounding
FRAMES = 10

PAGE = """<!doctype html><meta charset="utf-8"><body><script>
const videos = %s;
async function measure(m) {
  const v = document.createElement('video');
  v.muted = true; v.preload = 'auto'; v.src = m.file;
  await new Promise((ok, bad) => { v.onloadeddata = ok;
    v.onerror = () => bad(new Error('cannot play: ' + (v.error && v.error.message))); });
  v.currentTime = 0.2;  // a frame in the middle, not just the first
  await new Promise(ok => { v.onseeked = ok; });
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0);
  return {file: m.file, width: v.videoWidth, height: v.videoHeight,
          got: m.points.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)))};
}
(async () => {
  const out = [];
  for (const m of videos) {
    try { out.push(await measure(m)); } catch (e) { out.push({file: m.file, error: String(e)}); }
  }
  await fetch('/result', {method: 'POST', body: JSON.stringify(out)});
})();
</script>"""


def bands(height: int, width: int):
    colours = hint_lut("viridis").numpy()[list(LABELS)]
    image = np.empty((height, width, 3), np.uint8)
    step = height // len(LABELS)
    for i, colour in enumerate(colours):
        image[i * step:] = colour
    points = [(width // 2, i * step + step // 2) for i in range(len(LABELS))]  # (x, y): band centres
    return image, points, colours.astype(int).tolist()


# what an encode stores in its outputs (see pipeline/_fingerprint.py): the MP4 carries it as a tag
FINGERPRINT = json.dumps({"format": 1, "input": {"name": "dance.mp4", "size": 1, "sample_sha256": "0" * 64},
                          "model": {"file": "densepose_r50_fpn_dl.torchscript", "size": 1, "sha256": "0" * 64},
                          "settings": {"cmap": "viridis"}}, sort_keys=True, separators=(",", ":"))


def write_densevid(path: Path, image: np.ndarray) -> None:
    with VideoWriter(path, image.shape[1], image.shape[0], Fraction(1, 25), Fraction(25),
                     fingerprint=FINGERPRINT) as writer:
        writer.write(np.stack([image] * FRAMES), list(range(FRAMES)))


def write_untagged(path: Path, image: np.ndarray) -> None:
    """What densevid wrote before: PyAV's implicit rgb24 -> yuv420p conversion, no colour tags."""
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18", "preset": "fast"})
        stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def tags_of(path: Path) -> str:
    with av.open(str(path)) as container:
        c = container.streams.video[0].codec_context
        return f"matrix {c.colorspace} range {c.color_range} primaries {c.color_primaries} transfer {c.color_trc}"


def run_chromium(chromium: str, directory: Path, videos: list[dict], timeout: float) -> list[dict]:
    page = (PAGE % json.dumps(videos)).encode()
    result: dict = {}
    done = threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # http.server's naming
            if self.path == "/index.html":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            super().do_GET()

        def do_POST(self):
            result["data"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()
            done.set()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="densevid-chromium-")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               f"http://127.0.0.1:{server.server_address[1]}/index.html"]
    browser = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not done.wait(timeout):
            raise SystemExit(f"Chromium sent no result within {timeout:.0f} s")
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    return result["data"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default=None, help="the browser binary (default: chromium on PATH)")
    parser.add_argument("--keep", type=Path, default=None, help="write the videos here and keep them")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("check_browser_colours: Chromium not found; on Debian: apt-get install -y chromium "
              "(or pass --chromium PATH)", file=sys.stderr)
        return 2
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip()
    directory = args.keep or Path(tempfile.mkdtemp(prefix="densevid-colours-"))
    directory.mkdir(parents=True, exist_ok=True)
    videos, kinds = [], {}
    for name, (height, width) in SIZES.items():
        image, points, colours = bands(height, width)
        for kind, write in (("densevid", write_densevid), ("untagged (before)", write_untagged)):
            file = f"{name}_{'tagged' if kind == 'densevid' else 'untagged'}.mp4"
            write(directory / file, image)
            videos.append({"file": file, "points": points, "expected": colours})
            kinds[file] = (name, kind, tags_of(directory / file))
    measured = run_chromium(chromium, directory, videos, args.timeout)
    if args.keep is None:
        shutil.rmtree(directory, ignore_errors=True)

    print(f"{version}, headless, --disable-gpu; tolerance {TOLERANCE}")
    print(f"{'size':<10} {'output':<18} {'WxH':<8} {'worst':>5}  background got/expected   "
          f"all bands got (expected)")
    failed = False
    expected_by_file = {v["file"]: v["expected"] for v in videos}
    for entry in measured:
        name, kind, tags = kinds[entry["file"]]
        if "error" in entry:
            print(f"{name:<10} {kind:<18} {entry['error']}")
            failed |= kind == "densevid"
            continue
        expected = expected_by_file[entry["file"]]
        worst = max(abs(a - b) for got, want in zip(entry["got"], expected) for a, b in zip(got, want))
        failed |= kind == "densevid" and worst > TOLERANCE
        bands_text = " ".join(f"{tuple(g)}({tuple(e)})" for g, e in zip(entry["got"], expected))
        print(f"{name:<10} {kind:<18} {entry['width']}x{entry['height']:<4} {worst:>5}  "
              f"{tuple(entry['got'][0])}/{tuple(expected[0])}   {bands_text}")
    for file, (name, kind, tags) in kinds.items():
        if name == "square":
            print(f"tags of {kind}: {tags}")
    print("densevid's outputs: " + ("FAIL (a colour is off by more than the tolerance)" if failed else
                                    f"all within {TOLERANCE}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
