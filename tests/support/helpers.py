"""Shared test helpers: the one tolerance policy, and paths."""

from __future__ import annotations

import os
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"  # on sys.path (pytest puts conftest.py's folder there): `import support`
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


# --- The one tolerance policy -------------------------------------------------------------------
# Rendered hints are integers defined exactly by the node's semantics, so they are compared exactly
# everywhere we can: the CPU renders, lossless files, PNG frames. The only allowed slack is for the
# GPU renders (Triton, and the torch-on-device render), whose bilinear float rounding may differ from
# PyTorch's CPU kernel in the last bit and flip a near-tie between two parts: there we require
# >= 99.999% of pixels to agree. Lossy H.264 outputs are never compared pixel for pixel, only the
# colour of flat regions (a whole frame of one label, decoded with the file's colour tags): within
# 3 of the colormap per channel (8-bit limited-range YUV 4:2:0 rounding; what a browser shows too).
GPU_MIN_AGREEMENT = 0.99999
# The native model on a batch of frames: batched convolutions and matrix products round differently in the
# last bits from one frame at a time (measured: boxes within 3e-5 px), which may flip a near-tie between
# two parts; the labels must agree on >= 99.99% of pixels (one frame at a time is compared exactly).
BATCH_MIN_AGREEMENT = 0.9999
H264_FLAT_COLOUR_ATOL = 3
# IUV: the part index I is a label map and compared exactly. U and V are floats: the fast path's
# 4-tap bilinear may round differently from F.interpolate in the last float32 bits (measured
# < 1e-6), and the .npz stores them as float16 (half an ulp is <= 2**-12 ~ 2.4e-4 in [0.5, 1]).
IUV_UV_ATOL_FLOAT32 = 1e-5
IUV_UV_ATOL_FLOAT16 = 5e-4


def assert_exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Bit-exact equality with a readable failure message."""
    assert actual.shape == expected.shape, f"shape {list(actual.shape)} != {list(expected.shape)}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    mismatch = actual.cpu() != expected.cpu()
    if mismatch.ndim == 3 and mismatch.shape[-1] == 3:  # HWC image: count pixels, not channels
        mismatch = mismatch.any(-1)
    n_bad = int(mismatch.sum())
    if n_bad:
        where = mismatch.nonzero()[0].tolist()
        raise AssertionError(f"{n_bad} of {mismatch.numel()} pixels differ, first at {where}")


def assert_cpu_render_exact(boxes_xyxy, coarse_segm, fine_segm, height: int, width: int) -> torch.Tensor:
    """The fast CPU render (directly and as the "cpu" backend) equals the reference render exactly, with
    the compiled kernels in use, and leaves its inputs as they were. Returns the reference labels."""
    from densevid.kernels import render_labels, render_labels_reference
    from densevid.kernels.render_cpu import compiled_kernels, render_labels_cpu

    args = (boxes_xyxy, coarse_segm, fine_segm, height, width)
    before = [t.clone() for t in args[:3]]
    assert compiled_kernels() is not None, "the numba kernels are not usable (numba is a dependency)"
    expected = render_labels_reference(*args)
    assert_exact(render_labels_cpu(*args), expected)
    assert_exact(render_labels(*args, backend="cpu"), expected)
    for t, b in zip(args[:3], before):  # bit for bit, NaN included
        torch.testing.assert_close(t, b, rtol=0, atol=0, equal_nan=True, msg="inputs were modified")
    return expected


def assert_labels_agree(actual: torch.Tensor, expected: torch.Tensor, exact: bool,
                        min_agreement: float = GPU_MIN_AGREEMENT) -> float:
    """Label maps must be equal (exact=True) or agree on >= ``min_agreement`` of pixels (default: a GPU render;
    ``BATCH_MIN_AGREEMENT`` for a batched native model).

    Returns the measured agreement so tests can report it.
    """
    assert actual.shape == expected.shape, f"shape {list(actual.shape)} != {list(expected.shape)}"
    if exact or actual.numel() == 0:
        assert_exact(actual, expected)
        return 1.0
    agreement = float((actual.cpu() == expected.cpu()).float().mean())
    assert agreement >= min_agreement, f"only {agreement:.6%} of pixels agree"
    return agreement


def assert_uv_close(actual, expected, atol: float) -> float:
    """U or V maps agree within ``atol`` everywhere; returns the largest difference."""
    actual, expected = torch.as_tensor(actual).float().cpu(), torch.as_tensor(expected).float().cpu()
    assert actual.shape == expected.shape, f"shape {list(actual.shape)} != {list(expected.shape)}"
    worst = float((actual - expected).abs().max()) if actual.numel() else 0.0
    assert worst <= atol, f"U/V differ by up to {worst:.3g} > {atol:.3g}"
    return worst


def labels_from_hint(hint_rgb, cmap: str = "viridis"):
    """uint8 label map from an exactly coloured hint (lossless or PNG), through the inverse colormap."""
    import numpy as np

    from densevid.kernels import hint_lut

    lut = hint_lut(cmap).numpy().astype(np.int64)
    codes = {int(r) << 16 | int(g) << 8 | int(b): i for i, (r, g, b) in enumerate(lut)}
    assert len(codes) == 25, "colormap colours must be distinct"
    arr = np.asarray(hint_rgb).astype(np.int64)
    key = arr[..., 0] << 16 | arr[..., 1] << 8 | arr[..., 2]
    out = np.full(key.shape, 255, np.uint8)
    for code, label in codes.items():
        out[key == code] = label
    assert (out != 255).all(), "hint has pixels that are not colormap colours"
    return out


def subprocess_env(*paths, **variables) -> dict:
    """The environment for a Python subprocess: ours, with ``paths`` put in front of PYTHONPATH
    (kept, so a checkout put on PYTHONPATH is the densevid the subprocess imports too)."""
    python_path = [str(p) for p in paths] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, **variables, "PYTHONPATH": os.pathsep.join(python_path)}


def cuda_available() -> bool:
    return torch.cuda.is_available() and os.environ.get("DENSEVID_TEST_NO_CUDA") != "1"


def run_cli(*args, catch: bool = False):
    """`densevid encode ARGS --quiet` in-process; exceptions propagate unless ``catch``."""
    from click.testing import CliRunner

    from densevid.pipeline.cli import main

    return CliRunner().invoke(main, ["encode", *map(str, args), "--quiet"], catch_exceptions=catch)


def decode_all(path):
    """(frames uint8 [N,H,W,3], pts in seconds) of a video, straight through PyAV."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, seconds = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            seconds.append(float(frame.pts * stream.time_base))
    return np.stack(frames), seconds


# --- a private Hugging Face home -----------------------------------------------------------------

def use_private_hf_home(monkeypatch, tmp_path) -> Path:
    """HF_HOME in tmp_path, with no cache override that would bypass it; returns the HF_HOME."""
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    return home


def populate_hub_cache(home, filename, payload=b"weights") -> None:
    """The real huggingface_hub cache layout for MODEL_REPO, with one file at the fake hub's commit."""
    from densevid.pipeline.models import MODEL_REPO
    from support.fake_hub import COMMIT as commit

    repo_dir = home / "hub" / ("models--" + MODEL_REPO.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    blob = repo_dir / "blobs" / "fakeblobsha"
    blob.parent.mkdir()
    blob.write_bytes(payload)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / filename).symlink_to(blob)
