"""H.264 outputs carry the colour description of the conversion they were made with, so a player that
honours it shows the colormap's colours (scripts/check_browser_colours.py checks it in Chromium)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from densevid.kernels import hint_lut
from densevid.pipeline.io import VideoWriter
from support.clips import make_clip, synthetic_frames
from support.helpers import H264_FLAT_COLOUR_ATOL, run_cli

# what the tags say, in FFmpeg's numbers (AVColorSpace, AVColorRange, AVColorPrimaries, AVColorTransferCharacteristic)
SMPTE170M_MATRIX, LIMITED_RANGE, BT709_PRIMARIES, SRGB_TRANSFER = 6, 1, 1, 13
# Kr, Kb of the YUV matrices FFmpeg can tag
MATRICES = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114)}
LABELS = (0, 1, 6, 12, 18, 24)  # background, and parts across the colormap
SIZES = {"portrait": (910, 512), "square": (512, 512), "landscape": (512, 910)}


def bands(height: int, width: int) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """A hint-like frame of flat horizontal bands of colormap colours, the centre of each band, its colour."""
    lut = hint_lut("viridis").numpy()
    colours = lut[list(LABELS)]
    image = np.empty((height, width, 3), np.uint8)
    step = height // len(LABELS)
    for i, colour in enumerate(colours):
        image[i * step:] = colour
    centres = [(i * step + step // 2, width // 2) for i in range(len(LABELS))]
    return image, centres, colours.astype(int)


def yuv_to_rgb(frame, matrix: int, color_range: int) -> np.ndarray:
    """Decode a yuv420p frame to RGB ourselves, with the matrix and range given (nearest chroma)."""
    h, w = frame.height, frame.width
    planes = [np.frombuffer(bytes(p), np.uint8).reshape(-1, p.line_size) for p in frame.planes]
    y = planes[0][:h, :w].astype(np.float64)
    u = np.repeat(np.repeat(planes[1][:(h + 1) // 2, :(w + 1) // 2], 2, 0), 2, 1)[:h, :w].astype(np.float64)
    v = np.repeat(np.repeat(planes[2][:(h + 1) // 2, :(w + 1) // 2], 2, 0), 2, 1)[:h, :w].astype(np.float64)
    if color_range == LIMITED_RANGE:
        y, u, v = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    else:
        u, v = u - 128, v - 128
    kr, kb = MATRICES[matrix]
    kg = 1 - kr - kb
    r = y + 2 * (1 - kr) * v
    b = y + 2 * (1 - kb) * u
    g = (y - kr * r - kb * b) / kg
    return np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255).astype(int)


def first_frame(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        tags = (context.colorspace, context.color_range, context.color_primaries, context.color_trc)
        frame = next(container.decode(stream))
        return tags, frame, frame.to_ndarray(format="rgb24")


@pytest.mark.parametrize("shape", SIZES.values(), ids=SIZES.keys())
def test_h264_is_tagged_and_decodes_to_the_colormap_with_its_tags(tmp_path, shape):
    height, width = shape
    image, centres, colours = bands(height, width)
    out = tmp_path / "hint.mp4"
    with VideoWriter(out, width, height, Fraction(1, 25), Fraction(25)) as writer:
        writer.write(np.stack([image, image]), [0, 1])
    tags, frame, pyav_rgb = first_frame(out)
    assert tags == (SMPTE170M_MATRIX, LIMITED_RANGE, BT709_PRIMARIES, SRGB_TRANSFER)
    assert (frame.colorspace, frame.color_range) == (SMPTE170M_MATRIX, LIMITED_RANGE)  # in the H.264 stream too
    ours = yuv_to_rgb(frame, *tags[:2])
    for decoded in (ours, pyav_rgb.astype(int)):  # PyAV's own conversion honours the tags too
        got = np.array([decoded[y, x] for y, x in centres])
        assert np.abs(got - colours).max() <= H264_FLAT_COLOUR_ATOL, (got.tolist(), colours.tolist())
    # the tags matter: read with BT.709 (what Chromium assumed for untagged 512x910) the colours are off
    wrong = np.array([yuv_to_rgb(frame, 1, LIMITED_RANGE)[y, x] for y, x in centres])
    assert np.abs(wrong - colours).max() > H264_FLAT_COLOUR_ATOL


def test_preview_and_main_output_of_the_cli_are_tagged(tmp_path, standin_models):
    clip = make_clip(tmp_path / "clip.mp4", synthetic_frames(3, 48, 64, seed=2), codec="libx264")
    result = run_cli(clip, "--model", standin_models["tuple"], "--resolution", "64", "--device", "cpu",
                     "--preview", tmp_path / "side.mp4")
    assert result.exit_code == 0, result.output
    for path in (tmp_path / "clip_densepose.mp4", tmp_path / "side.mp4"):
        tags, _, _ = first_frame(path)
        assert tags == (SMPTE170M_MATRIX, LIMITED_RANGE, BT709_PRIMARIES, SRGB_TRANSFER), path
