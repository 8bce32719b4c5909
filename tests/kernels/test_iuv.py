"""--iuv: the IUV kernel against its reference, and the .npz against the hint and the model's output."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from densevid.kernels import render_labels, render_labels_reference
from densevid.kernels.iuv import render_iuv, render_iuv_reference
from densevid.pipeline.engine import resize_and_pad
from densevid.pipeline.io import stored_fingerprint
from support.cases import make_case
from support.clips import make_clip, synthetic_frames
from support.helpers import (
    IUV_UV_ATOL_FLOAT16,
    IUV_UV_ATOL_FLOAT32,
    assert_exact,
    assert_uv_close,
    decode_all,
    labels_from_hint,
    run_cli,
)


def _uv(n, s, seed):
    g = torch.Generator().manual_seed(seed)
    # a little outside [0, 1], as the real regressors produce: exercises the clamp
    return torch.rand(n, 25, s, s, generator=g) * 1.2 - 0.1, torch.rand(n, 25, s, s, generator=g) * 1.2 - 0.1


@pytest.mark.parametrize("seed,n,s,h,w", [(0, 3, 28, 61, 97), (1, 2, 112, 131, 75), (2, 1, 7, 16, 16),
                                          (3, 4, 14, 9, 200), (4, 0, 14, 30, 40), (5, 2, 1, 33, 21)])
def test_render_iuv_equals_reference(seed, n, s, h, w):
    boxes, coarse, fine, h, w = make_case(seed, n, s, h, w)
    u, v = _uv(n, s, seed)
    before = [t.clone() for t in (boxes, coarse, fine, u, v)]
    labels, uu, vv = render_iuv(boxes, coarse, fine, u, v, h, w)
    ref_labels, ref_u, ref_v = render_iuv_reference(boxes, coarse, fine, u, v, h, w)
    assert_exact(labels, ref_labels)
    assert_exact(labels, render_labels_reference(boxes, coarse, fine, h, w))  # I is the hint's label map
    assert_uv_close(uu, ref_u, IUV_UV_ATOL_FLOAT32)
    assert_uv_close(vv, ref_v, IUV_UV_ATOL_FLOAT32)
    assert float(uu.min()) >= 0 and float(uu.max()) <= 1
    assert (uu[labels == 0] == 0).all() and (vv[labels == 0] == 0).all()
    for t, b in zip((boxes, coarse, fine, u, v), before):
        assert torch.equal(t, b), "input modified"


def test_cli_iuv_matches_hint_and_model(tmp_path, standin_models, tuple_model):
    frames = synthetic_frames(6, 45, 61, seed=9)
    pts = [0, 40, 80, 160, 200, 240]
    clip = make_clip(tmp_path / "c.mkv", frames, pts=pts, time_base=Fraction(1, 1000))
    out, iuv = tmp_path / "hint.mkv", tmp_path / "train.npz"
    result = run_cli(clip, "-o", out, "--lossless", "--iuv", iuv, "--model", standin_models["dict"],
                     "--resolution", "64", "--device", "cpu", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    hints, seconds = decode_all(out)
    with np.load(iuv) as data:  # allow_pickle=False: every entry is a plain array
        assert sorted(data.files) == ["I", "U", "V", "densevid_fingerprint", "pts_seconds"]
        labels, u, v, pts_seconds = data["I"], data["U"], data["V"], data["pts_seconds"]
        assert str(data["densevid_fingerprint"]) == stored_fingerprint(out)  # the run's, as in the video
    assert labels.dtype == np.uint8 and u.dtype == v.dtype == np.float16 and pts_seconds.dtype == np.float64
    assert labels.shape == u.shape == v.shape == hints.shape[:3]
    assert pts_seconds.tolist() == seconds == [p / 1000 for p in pts]
    assert np.array_equal(labels, labels_from_hint(hints))  # I equals the hint's labels exactly
    people = 0
    for frame, i_map, u_map, v_map in zip(frames, labels, u, v):
        padded, (h, w) = resize_and_pad(frame, 64)
        boxes, coarse, fine, uu, vv = tuple_model(torch.from_numpy(padded).permute(2, 0, 1).contiguous())
        people += len(boxes)
        ref_labels, ref_u, ref_v = render_iuv_reference(boxes, coarse, fine, uu, vv, h, w)
        assert_exact(torch.from_numpy(i_map), ref_labels)
        assert_uv_close(torch.from_numpy(u_map), ref_u, IUV_UV_ATOL_FLOAT16)
        assert_uv_close(torch.from_numpy(v_map), ref_v, IUV_UV_ATOL_FLOAT16)
    assert people >= 3 and (labels > 0).any()


def test_iuv_follows_framing_and_fps(tmp_path, standin_models):
    clip = make_clip(tmp_path / "c.mkv", synthetic_frames(5, 70, 40, seed=2))
    out, iuv = tmp_path / "hint.mkv", tmp_path / "train.npz"
    result = run_cli(clip, "-o", out, "--lossless", "--iuv", iuv, "--model", standin_models["tuple"], "--size", "64",
                     "--fit", "pad", "--fps", "50", "--device", "cpu")
    assert result.exit_code == 0, result.output
    hints, seconds = decode_all(out)
    with np.load(iuv) as data:
        assert data["I"].shape == (10, 64, 64)
        assert np.array_equal(data["I"], labels_from_hint(hints))
        assert data["pts_seconds"].tolist() == pytest.approx(seconds)
        assert (data["U"][data["I"] == 0] == 0).all()


def test_iuv_errors(tmp_path, standin_models):
    clip = make_clip(tmp_path / "c.mkv", synthetic_frames(2, 32, 32))
    result = run_cli(clip, "--iuv", tmp_path / "x.npz", "--smooth", "3", "--model", standin_models["tuple"])
    assert result.exit_code == 1 and "cannot be combined with --smooth" in result.output
    result = run_cli(clip, "--iuv", tmp_path / "x.npy", "--model", standin_models["tuple"])
    assert result.exit_code == 1 and "must end in .npz" in result.output
    assert not list(tmp_path.glob("c_densepose*"))


def test_render_labels_and_iuv_agree_on_every_backend_available():
    boxes, coarse, fine, h, w = make_case(7, 3, 28, 50, 70)
    u, v = _uv(3, 28, 7)
    labels, _, _ = render_iuv(boxes, coarse, fine, u, v, h, w, backend="cpu")
    assert_exact(labels, render_labels(boxes, coarse, fine, h, w, backend="cpu"))


def test_writers_leave_nothing_behind_on_error(tmp_path):
    from densevid.pipeline.io import FramesDirWriter, IuvWriter

    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with FramesDirWriter(tmp_path / "frames", overwrite=True) as frames, \
                IuvWriter(tmp_path / "t.npz", 4, 6) as iuv:
            frames.write(np.zeros((2, 4, 6, 3), np.uint8))
            iuv.write(np.zeros((2, 4, 6), np.uint8), np.zeros((2, 4, 6), np.float16), np.zeros((2, 4, 6), np.float16),
                      [0.0, 0.04])
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # no temporaries, no .npz
    assert [p.name for p in (tmp_path / "frames").iterdir()] == ["keep.txt"]  # the old directory is untouched
    with FramesDirWriter(tmp_path / "frames", overwrite=True) as frames:
        frames.write(np.zeros((1, 4, 6, 3), np.uint8))
    assert [p.name for p in (tmp_path / "frames").iterdir()] == ["000000.png"]
    with IuvWriter(tmp_path / "empty.npz", 4, 6):
        pass
    with np.load(tmp_path / "empty.npz") as data:
        assert data["I"].shape == (0, 4, 6) and data["pts_seconds"].shape == (0,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npz", "frames"]
