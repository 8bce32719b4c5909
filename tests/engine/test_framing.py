"""--size/--fit/--crop-box framing, --fps resampling, --frames PNGs and --preview, end to end and as pure functions."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densevid import ConfigError, EncodeConfig
from densevid.kernels import hint_lut
from densevid.kernels.framing import pad_center, pad_center_reference, resize_nearest, resize_nearest_reference
from densevid.pipeline.config import parse_fps
from densevid.pipeline.engine import plan_framing, resample_pts
from support.clips import make_clip, synthetic_frames
from support.helpers import assert_exact, decode_all, labels_from_hint, run_cli
from support.node_reference import node_hint

# --- kernels -----------------------------------------------------------------------------------

@pytest.mark.parametrize("in_hw,out_hw", [((7, 11), (3, 5)), ((7, 11), (14, 22)), ((5, 5), (5, 5)), ((1, 1), (4, 3)),
                                          ((9, 4), (16, 16)), ((3, 13), (1, 1))])
def test_resize_nearest_equals_reference_and_torch(in_hw, out_hw):
    maps = torch.randint(0, 25, (2, *in_hw), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    before = maps.clone()
    out = resize_nearest(maps, out_hw)
    assert_exact(out, resize_nearest_reference(maps, out_hw))
    expected = F.interpolate(maps[None].float(), size=out_hw, mode="nearest-exact")[0].to(torch.uint8)
    assert_exact(out, expected)
    assert torch.equal(maps, before)
    uv = torch.rand(2, *in_hw)
    assert torch.equal(resize_nearest(uv, out_hw), resize_nearest_reference(uv, out_hw))


@pytest.mark.parametrize("in_hw,out_hw", [((3, 5), (3, 5)), ((3, 5), (8, 8)), ((4, 7), (9, 7)), ((0, 0), (2, 2))])
def test_pad_center_equals_reference(in_hw, out_hw):
    maps = torch.randint(1, 25, in_hw, dtype=torch.uint8)
    assert_exact(pad_center(maps, out_hw), pad_center_reference(maps, out_hw))
    with pytest.raises(ValueError, match="smaller"):
        pad_center(torch.zeros(5, 5), (4, 6))


# --- the plan ----------------------------------------------------------------------------------

def test_plan_portrait_phone_video():
    kw = dict(size=512, crop_box=None, resolution=None)
    crop = plan_framing(1024, 576, fit="crop", **kw)
    assert crop.crop == (0, 224, 576, 576) and crop.resolution == 512 and crop.hint_hw == (512, 512)
    assert not crop.needs_label_stage  # the model sees the crop at 512x512: nothing to resample
    pad = plan_framing(1024, 576, fit="pad", **kw)
    assert pad.crop is None and pad.hint_hw == pad.content_hw == (512, 288) and pad.out_hw == (512, 512)
    stretch = plan_framing(1024, 576, fit="stretch", **kw)
    assert stretch.hint_hw == (910, 512) and stretch.content_hw == (512, 512)
    # an explicit resolution: the model sees that, the map is nearest-resized to the framed size
    explicit = plan_framing(1024, 576, fit="crop", size=512, crop_box=None, resolution=256)
    assert explicit.hint_hw == (256, 256) and explicit.out_hw == (512, 512) and explicit.needs_label_stage


def test_plan_rejects_bad_crop_boxes():
    kw = dict(size=None, fit=None, resolution=64)
    with pytest.raises(ConfigError, match=r"does not fit in the 64x48"):
        plan_framing(48, 64, crop_box=(10, 0, 60, 40), **kw)
    with pytest.raises(ConfigError, match="crop_box: '1,2,3' is not a crop box: four integers"):
        EncodeConfig(crop_box="1,2,3")
    with pytest.raises(ConfigError, match="square crop box"):
        plan_framing(48, 64, crop_box=(0, 0, 30, 40), size=64, fit="crop", resolution=None)


# --- end to end ----------------------------------------------------------------------------------

@pytest.fixture
def portrait(tmp_path):
    frames = synthetic_frames(5, 90, 50, seed=7)  # portrait, 5 frames
    return frames, make_clip(tmp_path / "portrait.mkv", frames)


def _run(tmp_path, clip, model, *args):
    out = tmp_path / "out.mkv"
    result = run_cli(clip, "-o", out, "--lossless", "--overwrite", "--model", model, "--device", "cpu", *args)
    assert result.exit_code == 0, result.output
    return decode_all(out)


def test_crop_is_the_node_on_the_centred_square(tmp_path, standin_models, tuple_model, portrait):
    frames, clip = portrait
    hints, _ = _run(tmp_path, clip, standin_models["tuple"], "--size", "64")
    assert hints.shape == (5, 64, 64, 3)
    for frame, hint in zip(frames, hints):
        square = frame[20:70, 0:50]  # centred 50x50 of 90x50
        assert_exact(torch.from_numpy(hint), torch.from_numpy(node_hint(square, tuple_model, resolution=64)))
    # an explicit crop box
    hints, _ = _run(tmp_path, clip, standin_models["tuple"], "--size", "64", "--crop-box", "0,40,50,50")
    expected = node_hint(frames[1][40:90, 0:50], tuple_model, resolution=64)
    assert_exact(torch.from_numpy(hints[1]), torch.from_numpy(expected))


def test_pad_and_stretch_reframe_the_label_map(tmp_path, standin_models, tuple_model, portrait):
    frames, clip = portrait
    background = hint_lut("viridis")[0].numpy()
    hints, _ = _run(tmp_path, clip, standin_models["tuple"], "--size", "64", "--fit", "pad")
    assert hints.shape == (5, 64, 64, 3)
    # long side 90 -> 64: content 64x36 (35.56 rounds to 36); no short side gives exactly 64x36
    # (36 -> 65x36), so the model sees short side 36 and the 65x36 map is nearest-resized to 64x36
    plan = plan_framing(90, 50, size=64, fit="pad", crop_box=None, resolution=None)
    assert (plan.resolution, plan.hint_hw, plan.content_hw) == (36, (65, 36), (64, 36))
    for frame, hint in zip(frames, hints):
        inner = torch.from_numpy(labels_from_hint(node_hint(frame, tuple_model, resolution=36)))
        expected = pad_center_reference(resize_nearest_reference(inner, (64, 36)), (64, 64))
        assert_exact(torch.from_numpy(labels_from_hint(hint)), expected)
        assert (hint[:, :14] == background).all() and (hint[:, 50:] == background).all()
    hints, _ = _run(tmp_path, clip, standin_models["tuple"], "--size", "64", "--fit", "stretch")
    for frame, hint in zip(frames, hints):
        full = torch.from_numpy(labels_from_hint(node_hint(frame, tuple_model, resolution=64)))  # 115x64
        expected = resize_nearest_reference(full, (64, 64))
        assert_exact(torch.from_numpy(labels_from_hint(hint)), expected)


def test_size_must_be_even_and_crop_box_must_fit(tmp_path, standin_models, portrait):
    _, clip = portrait
    result = run_cli(clip, "--size", "65", "--model", standin_models["tuple"])
    assert result.exit_code == 2 and "odd" in result.output
    result = run_cli(clip, "--crop-box", "0,0,60,60", "--model", standin_models["tuple"], "-o", tmp_path / "o.mp4")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "does not fit in the 50x90" in lines[0]
    assert not (tmp_path / "o.mp4").exists()
    result = run_cli(clip, "--fit", "pad", "--model", standin_models["tuple"], "-o", tmp_path / "o.mp4")
    assert result.exit_code == 1 and "needs a size" in result.output


# --- frame rate ----------------------------------------------------------------------------------

def test_resample_pts_drops_and_repeats_on_the_grid():
    tb = Fraction(1, 30)
    # 30 fps -> 25: output k at k/25 shows the latest input at or before it; 1 s in, 1 s out
    shown = resample_pts(range(30), tb, Fraction(25), nominal_duration=Fraction(1, 30))
    assert sum(len(s) for s in shown) == 25
    assert [p for s in shown for p in s] == list(range(25))
    assert sum(1 for s in shown if not s) == 5  # 5 dropped
    # 10 fps -> 25: every frame shown 2 or 3 times
    shown = resample_pts(range(10), Fraction(1, 10), Fraction(25))
    assert [len(s) for s in shown] == [3, 2, 3, 2, 3, 2, 3, 2, 3, 2]
    # variable rate with a start at 0.5 s: output pts start at round(0.5 * 25) = 12 (0.48 s)
    shown = resample_pts([500, 520, 900], Fraction(1, 1000), Fraction(25), nominal_duration=Fraction(1, 10))
    assert shown == [(12,), tuple(range(13, 22)), (22, 23, 24)]  # frame 2 at 0.9 s lasts 0.1 s
    assert resample_pts([], tb, Fraction(25)) == []
    assert parse_fps("30000/1001") == Fraction(30000, 1001) and parse_fps("29.97") == Fraction(2997, 100)
    for bad in ("0", "-5", "abc", "1/0", "2000"):
        with pytest.raises(ConfigError, match="frame rate"):
            parse_fps(bad)


def test_cli_fps_output_counts_and_timestamps(tmp_path, standin_models):
    frames = synthetic_frames(15, 40, 48, seed=2)
    clip = make_clip(tmp_path / "c25.mkv", frames, fps=25)  # 0.6 s, timestamps on whole milliseconds
    hints, seconds = _run(tmp_path, clip, standin_models["tuple"], "--resolution", "64", "--fps", "10")
    assert len(hints) == 6 and seconds == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    # each output frame is the hint of the latest input frame at or before its time
    full, _ = _run(tmp_path, clip, standin_models["tuple"], "--resolution", "64")
    assert np.array_equal(hints, full[[0, 2, 5, 7, 10, 12]])
    up, seconds = _run(tmp_path, clip, standin_models["tuple"], "--resolution", "64", "--fps", "50")
    assert len(up) == 30 and np.array_equal(up[::2], full) and np.array_equal(up[1::2], full)
    assert seconds == pytest.approx([k / 50 for k in range(30)])
    with av.open(str(tmp_path / "out.mkv")) as container:
        assert container.streams.video[0].average_rate == 50


# --- frames and preview ----------------------------------------------------------------------------

def test_png_frames_equal_the_lossless_video(tmp_path, standin_models, portrait):
    _, clip = portrait
    frames_dir = tmp_path / "frames"
    hints, _ = _run(tmp_path, clip, standin_models["tuple"], "--size", "64", "--fit", "pad", "--frames", frames_dir,
                    "--preview", tmp_path / "preview.mp4", "--fps", "50")
    names = sorted(p.name for p in frames_dir.iterdir())
    assert names == [f"{i:06d}.png" for i in range(len(hints))] and len(hints) == 10
    for name, hint in zip(names, hints):
        png, _ = decode_all(frames_dir / name)
        assert np.array_equal(png[0], hint)
    preview, seconds = decode_all(tmp_path / "preview.mp4")
    assert preview.shape == (10, 64, 128, 3) and len(seconds) == 10
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    # an existing frames directory made with other settings is refused, saying what differs
    result = run_cli(clip, "-o", tmp_path / "again.mkv", "--lossless", "--model", standin_models["tuple"],
                     "--frames", frames_dir)
    assert result.exit_code == 1 and "--fit pad there, not set now" in result.output
    assert "pass --overwrite to replace it, or choose another --frames" in result.output
    assert not (tmp_path / "again.mkv").exists()


def test_image_input_is_framed_too(tmp_path, standin_models, tuple_model):
    from support.clips import make_image

    image = synthetic_frames(2, 50, 90, seed=4)[1]  # landscape
    path = make_image(tmp_path / "person.png", image)
    result = run_cli(path, "--model", standin_models["tuple"], "--size", "64")
    assert result.exit_code == 0, result.output
    hint, _ = decode_all(tmp_path / "person_densepose.png")
    assert_exact(torch.from_numpy(hint[0]), torch.from_numpy(node_hint(image[:, 20:70], tuple_model, resolution=64)))
    result = run_cli(path, "--model", standin_models["tuple"], "--fps", "25", "-o", tmp_path / "x.png")
    assert result.exit_code == 1 and "need a video input" in result.output


def test_help_lists_the_new_options():
    from click.testing import CliRunner

    from densevid.pipeline.cli import main

    result = CliRunner().invoke(main, ["encode", "--help"])
    for flag in ("--preset", "--config", "--size", "--fit", "--crop-box", "--fps", "--smooth", "--frames", "--preview",
                 "--iuv"):
        assert flag in result.output
