"""Decoding and encoding: exact round trips, timestamps, atomic output, one-line input errors."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
import torch

from densevid.pipeline.core import InputError, OutputError
from densevid.pipeline.io import VideoInfo, VideoWriter, default_output_path, iter_frame_batches, probe_video, write_png
from support.clips import make_audio_only, make_clip, make_image, synthetic_frames


def decode_all(path, batch_size=64):
    batches = list(iter_frame_batches(path, batch_size))
    frames = np.concatenate([b.frames_rgb.numpy() for b in batches]) if batches else np.zeros((0,))
    pts = [p for b in batches for p in b.pts]
    return frames, pts, batches[0].time_base if batches else None, batches


def seconds(pts, tb):
    return [Fraction(p) * tb for p in pts]


@pytest.fixture(scope="module")
def frames_odd():
    return synthetic_frames(7, 23, 37, seed=3)


# --- decoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec,pix_fmt,suffix", [("ffv1", "bgr0", ".mkv"), ("png", "rgb24", ".mov")])
def test_lossless_clip_decodes_exactly(tmp_path, frames_odd, codec, pix_fmt, suffix):
    path = make_clip(tmp_path / f"c{suffix}", frames_odd, codec=codec, pix_fmt=pix_fmt)
    frames, pts, tb, _ = decode_all(path)
    assert frames.dtype == np.uint8 and frames.shape == (7, 23, 37, 3)
    np.testing.assert_array_equal(frames, frames_odd)
    assert seconds(pts, tb) == [Fraction(i, 25) for i in range(7)]


def test_synthetic_frames_have_black_frames_and_blobs():
    f = synthetic_frames(8, 32, 48, seed=0)
    assert f.shape == (8, 32, 48, 3) and f.dtype == np.uint8
    assert f[2].max() == 0 and f[6].max() == 0
    assert f[0].max() >= 170 and (f[0] < 24).mean() > 0.3


@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_batches(tmp_path, frames_odd, batch_size):
    path = make_clip(tmp_path / "c.mkv", frames_odd)
    batches = list(iter_frame_batches(path, batch_size))
    sizes = [len(b) for b in batches]
    assert sum(sizes) == 7 and all(s == batch_size for s in sizes[:-1]) and 1 <= sizes[-1] <= batch_size
    assert [b.start_index for b in batches] == [i * batch_size for i in range(len(batches))]
    assert all(isinstance(b.frames_rgb, torch.Tensor) and b.frames_rgb.is_contiguous() for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.frames_rgb.numpy() for b in batches]), frames_odd)


def test_batch_size_must_be_positive(tmp_path, frames_odd):
    path = make_clip(tmp_path / "c.mkv", frames_odd[:2])
    with pytest.raises(ValueError):
        next(iter_frame_batches(path, 0))


@pytest.mark.parametrize("suffix,codec,tb,pts", [
    # constant rate, non-zero start
    (".mov", "png", Fraction(1, 25), [5, 6, 7, 8, 9, 10, 11]),
    # variable frame rate, 90 kHz clock, non-zero start
    (".mov", "png", Fraction(1, 90000), [1234, 4237, 10243, 11000, 20000, 20001, 45045]),
    # NTSC rate in its own time base
    (".mp4", "libx264", Fraction(1001, 30000), [0, 1, 2, 3, 5, 8, 13]),
    # Matroska: millisecond clock
    (".mkv", "ffv1", Fraction(1, 1000), [40, 73, 107, 200, 201, 500, 1000]),
])
def test_pts_preserved(tmp_path, suffix, codec, tb, pts):
    frames = synthetic_frames(len(pts), 24, 32, seed=1)
    path = make_clip(tmp_path / f"c{suffix}", frames, codec=codec, time_base=tb, pts=pts, fps=25)
    _, got, got_tb, _ = decode_all(path, batch_size=3)
    assert seconds(got, got_tb) == seconds(pts, tb)
    # whole files with odd timing must not look truncated
    warnings: list[str] = []
    assert sum(len(b.pts) for b in iter_frame_batches(path, 4, warnings_out=warnings)) == len(pts)
    assert warnings == []


def test_missing_pts_are_synthesized(tmp_path):
    """A raw H.264 elementary stream has no timestamps: pts are synthesized from the frame rate."""
    frames = synthetic_frames(6, 24, 32, seed=9)
    path = make_clip(tmp_path / "raw.h264", frames, codec="libx264")
    got, pts, tb, _ = decode_all(path, batch_size=4)
    assert got.shape == (6, 24, 32, 3)
    assert seconds(pts, tb) == [Fraction(i, 25) for i in range(6)]


@pytest.mark.parametrize("pix_fmt,codec,suffix,input_format", [
    ("yuv444p", "ffv1", ".mkv", "rgb24"),
    ("yuv420p10le", "ffv1", ".mkv", "rgb24"),
    ("gray", "ffv1", ".mkv", "rgb24"),
    ("yuva420p", "ffv1", ".mkv", "rgba"),
    ("rgba", "png", ".mov", "rgba"),
    ("yuv420p", "libx264", ".mp4", "rgb24"),
])
def test_pix_fmts_decode_to_rgb24(tmp_path, pix_fmt, codec, suffix, input_format):
    frames = synthetic_frames(3, 24, 38 if codec == "libx264" else 37, seed=2)
    if input_format == "rgba":
        frames = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 200, np.uint8)], axis=-1)
    path = make_clip(tmp_path / f"c{suffix}", frames, codec=codec, pix_fmt=pix_fmt, input_format=input_format)
    info = probe_video(path)
    assert info.pix_fmt == pix_fmt
    got, _, _, _ = decode_all(path)
    assert got.dtype == np.uint8 and got.shape == frames.shape[:3] + (3,)
    if pix_fmt == "rgba":  # lossless RGB with alpha: alpha dropped, colour exact
        np.testing.assert_array_equal(got, frames[..., :3])
    elif pix_fmt != "gray":  # YUV: close to the source colours
        assert np.abs(got.astype(int) - frames[..., :3].astype(int)).mean() < 12
    else:
        assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_applied(tmp_path, rotation):
    frames = synthetic_frames(3, 20, 30, seed=4)
    path = make_clip(tmp_path / "r.mkv", frames, rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation
    expected = np.rot90(frames, k=rotation // 90, axes=(1, 2))  # counter-clockwise, as a player shows it
    assert (info.height, info.width) == expected.shape[1:3]
    got, _, _, _ = decode_all(path)
    np.testing.assert_array_equal(got, expected)


def test_probe_video(tmp_path):
    frames = synthetic_frames(5, 24, 32, seed=5)
    info = probe_video(make_clip(tmp_path / "c.mp4", frames, codec="libx264", fps=Fraction(30000, 1001),
                                 time_base=Fraction(1001, 30000)))
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.frame_count, info.rotation) == (32, 24, 5, 0)
    assert info.fps == Fraction(30000, 1001) and info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert not info.is_image and info.time_base == Fraction(1, 30000)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_still_image_is_one_frame(tmp_path, suffix):
    img = synthetic_frames(1, 23, 37, seed=6)[0]
    path = make_image(tmp_path / f"still{suffix}", img)
    info = probe_video(path)
    assert info.is_image and info.frame_count == 1 and (info.width, info.height) == (37, 23)
    got, pts, _, batches = decode_all(path, batch_size=4)
    assert len(batches) == 1 and got.shape == (1, 23, 37, 3) and len(pts) == 1
    if suffix == ".png":
        np.testing.assert_array_equal(got[0], img)


# --- input errors ---------------------------------------------------------------------------------


def _text_as_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    return p


def _zero(tmp_path):
    p = tmp_path / "empty.mp4"
    p.touch()
    return p


@pytest.mark.parametrize("make,match", [
    (lambda d: d / "missing.mp4", "not found"),
    (lambda d: d, "directory"),
    (_zero, "empty"),
    (_text_as_mp4, "not a readable video"),
    (lambda d: make_audio_only(d / "audio.mp4", codec="aac"), "no video stream"),
    (lambda d: make_audio_only(d / "audio.mka", codec="pcm_s16le"), "no video stream"),
])
def test_probe_errors(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(InputError, match=match) as exc:
        probe_video(path)
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match=match):
        next(iter_frame_batches(path, 4))


def test_truncated_file_keeps_its_frames_or_raises_with_frame_count(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (30, 48, 64, 3), dtype=np.uint8)  # noise: big packets
    full = make_clip(tmp_path / "full.mp4", frames, codec="libx264",
                     container_options={"movflags": "+faststart"})
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    # default: the frames before the cut are kept, and one line says the file is truncated
    warnings: list[str] = []
    kept = sum(len(b) for b in iter_frame_batches(cut, 4, warnings_out=warnings))
    assert 0 < kept < 30
    assert len(warnings) == 1 and "looks truncated" in warnings[0] and f"the {kept} frames" in warnings[0]


# --- writing --------------------------------------------------------------------------------------


def test_default_output_path(tmp_path):
    src = tmp_path / "clip.final.mov"
    assert default_output_path(src, lossless=False, image=False) == tmp_path / "clip.final_densepose.mp4"
    assert default_output_path(src, lossless=True, image=False) == tmp_path / "clip.final_densepose.mkv"
    assert default_output_path(tmp_path / "a.jpg", lossless=False, image=True) == tmp_path / "a_densepose.png"


def _write(path, frames, pts, tb, lossless, fps=None, overwrite=False, batch=3):
    h, w = frames.shape[1:3]
    with VideoWriter(path, w, h, tb, fps, lossless=lossless, overwrite=overwrite) as writer:
        for i in range(0, len(frames), batch):
            chunk = frames[i:i + batch]
            writer.write(torch.from_numpy(chunk) if i % 2 else chunk, pts[i:i + batch])
    return path


def test_lossless_writer_round_trip_exact(tmp_path, frames_odd):
    tb = Fraction(1, 25)
    pts = [3, 4, 5, 6, 7, 8, 9]
    out = _write(tmp_path / "o.mkv", frames_odd, pts, tb, lossless=True, fps=Fraction(25))
    info = probe_video(out)
    assert (info.codec, info.pix_fmt, info.width, info.height) == ("ffv1", "bgr0", 37, 23)
    got, got_pts, got_tb, _ = decode_all(out)
    np.testing.assert_array_equal(got, frames_odd)
    assert seconds(got_pts, got_tb) == seconds(pts, tb)  # whole milliseconds: exact in MKV


def test_lossless_writer_vfr_rounds_to_milliseconds(tmp_path):
    frames = synthetic_frames(6, 16, 16, seed=7)
    tb = Fraction(1, 90000)
    pts = [1234, 4237, 10243, 11000, 20000, 45045]
    out = _write(tmp_path / "o.mkv", frames, pts, tb, lossless=True)
    _, got_pts, got_tb, _ = decode_all(out)
    assert got_tb == Fraction(1, 1000)  # the matroska muxer always uses a millisecond clock
    for a, b in zip(seconds(got_pts, got_tb), seconds(pts, tb)):
        assert abs(a - b) <= Fraction(1, 2000)


@pytest.mark.parametrize("tb,pts,fps", [
    (Fraction(1, 25), list(range(7)), Fraction(25)),
    (Fraction(1001, 30000), [2, 3, 4, 5, 6, 7, 8], Fraction(30000, 1001)),
    (Fraction(1, 90000), [1234, 4237, 10243, 11000, 20000, 20001, 45045], None),  # VFR, odd start
    (Fraction(1, 12800), [100, 612, 1124, 1636, 2148, 2660, 3172], Fraction(25)),  # start not whole ms
])
def test_lossy_writer_keeps_count_size_and_timestamps(tmp_path, frames_odd, tb, pts, fps):
    out = _write(tmp_path / "o.mp4", frames_odd, pts, tb, lossless=False, fps=fps)
    info = probe_video(out)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (info.width, info.height) == (38, 24)  # 37x23 padded by one replicated column/row
    assert info.frame_count == 7
    got, got_pts, got_tb, _ = decode_all(out)
    assert got.shape == (7, 24, 38, 3)
    assert seconds(got_pts, got_tb) == seconds(pts, tb)  # exact (movie_timescale = tb denominator)
    # the padding replicates the last column / row
    assert np.abs(got[:, :, 37].astype(int) - got[:, :, 36].astype(int)).mean() < 6
    assert np.abs(got[:, :23, :37].astype(int) - frames_odd.astype(int)).mean() < 6
    with open(out, "rb") as f:  # +faststart: moov before mdat
        head = f.read(4096)
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_temp_file_hidden_while_writing_and_removed_on_error(tmp_path, frames_odd):
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out, 37, 23, Fraction(1, 25), Fraction(25), lossless=False, overwrite=False) as writer:
            writer.write(frames_odd, list(range(7)))
            tmp = writer.temp_path
            assert tmp.exists() and tmp.parent == tmp_path and tmp.name.startswith(".o.")
            assert tmp.name.endswith(".partial.mp4")
            assert not out.exists()
            raise RuntimeError("boom")
    assert not out.exists() and not tmp.exists()
    assert list(tmp_path.iterdir()) == []


def test_abort_keeps_existing_output(tmp_path, frames_odd):
    out = tmp_path / "o.mkv"
    out.write_bytes(b"old")
    writer = VideoWriter(out, 37, 23, Fraction(1, 25), None, lossless=True, overwrite=True)
    writer.write(frames_odd[:2], [0, 1])
    writer.abort()
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["o.mkv"]


def test_existing_output_refused_then_overwritten(tmp_path, frames_odd):
    out = tmp_path / "o.mkv"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists"):
        VideoWriter(out, 37, 23, Fraction(1, 25), None, lossless=True, overwrite=False)
    assert out.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
    _write(out, frames_odd, list(range(7)), Fraction(1, 25), lossless=True, overwrite=True)
    got, _, _, _ = decode_all(out)
    np.testing.assert_array_equal(got, frames_odd)
    assert len(list(tmp_path.iterdir())) == 1


def test_output_appearing_during_write_is_not_clobbered(tmp_path, frames_odd):
    out = tmp_path / "o.mkv"
    writer = VideoWriter(out, 37, 23, Fraction(1, 25), None, lossless=True, overwrite=False)
    writer.write(frames_odd[:2], [0, 1])
    out.write_bytes(b"someone else")
    with pytest.raises(OutputError, match="exists"):
        writer.close()
    assert out.read_bytes() == b"someone else" and len(list(tmp_path.iterdir())) == 1


def test_suffix_must_match_mode(tmp_path):
    with pytest.raises(OutputError, match=r"\.mkv"):
        VideoWriter(tmp_path / "o.mp4", 16, 16, Fraction(1, 25), None, lossless=True, overwrite=False)
    with pytest.raises(OutputError, match=r"\.mp4"):
        VideoWriter(tmp_path / "o.mkv", 16, 16, Fraction(1, 25), None, lossless=False, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_output_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = _write(tmp_path / "o.mkv", synthetic_frames(2, 8, 8), [0, 1], Fraction(1, 25), lossless=True)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_unusable_output_directory(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        VideoWriter(tmp_path / "nope" / "o.mp4", 16, 16, Fraction(1, 25), None, lossless=False, overwrite=False)
    a_file = tmp_path / "file"
    a_file.write_bytes(b"x")
    with pytest.raises(OutputError, match="not a directory"):
        VideoWriter(a_file / "o.mp4", 16, 16, Fraction(1, 25), None, lossless=False, overwrite=False)
    with pytest.raises(OutputError, match="directory"):
        write_png(tmp_path, np.zeros((4, 4, 3), np.uint8), overwrite=True)


def test_unwritable_output_directory_simulated(tmp_path, monkeypatch):
    """Runs as root too (root may write anywhere): the access check is simulated."""
    import densevid.pipeline.io._video as enc
    monkeypatch.setattr(enc.os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError, match="not writable"):
        VideoWriter(tmp_path / "o.mp4", 16, 16, Fraction(1, 25), None, lossless=False, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_write_png_round_trip_and_rules(tmp_path):
    img = synthetic_frames(1, 23, 37, seed=8)[0]
    out = tmp_path / "x_densepose.png"
    assert write_png(out, torch.from_numpy(img), overwrite=False) == out
    got, pts, _, _ = decode_all(out)
    np.testing.assert_array_equal(got[0], img)
    with pytest.raises(OutputError, match="exists"):
        write_png(out, img, overwrite=False)
    write_png(out, np.zeros_like(img), overwrite=True)
    got, _, _, _ = decode_all(out)
    assert got.max() == 0 and len(list(tmp_path.iterdir())) == 1


def test_write_rejects_wrong_shape(tmp_path):
    with VideoWriter(tmp_path / "o.mkv", 8, 6, Fraction(1, 25), None, lossless=True, overwrite=False) as writer:
        with pytest.raises(ValueError):
            writer.write(np.zeros((1, 8, 6, 3), np.uint8), [0])
        writer.write(np.zeros((1, 6, 8, 3), np.uint8), [0])
    assert (tmp_path / "o.mkv").exists()
