"""The compiled CPU render reads only memory it has written, and stays in bounds.

Compiled code does not check indices: a read of uninitialised memory used as an index crashes the
process (ComfyUI segfaulted) or silently paints a wrong label. These tests run the kernels in
subprocesses compiled with numba's bounds checks (NUMBA_BOUNDSCHECK=1, into a cache of their own,
shared by this module's tests: the key of numba's cache does not include the flag) and with every
fresh heap block filled with a wild pattern (glibc's MALLOC_PERTURB_), so that an uninitialised
read becomes a deterministic IndexError instead of luck.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from support.cases import undecided_coarse_case
from support.clips import make_clip, synthetic_frames
from support.helpers import REPO_ROOT, SHARED_DATA, subprocess_env

# glibc fills every block malloc hands out with 0x7F bytes when MALLOC_PERTURB_=128 (with its
# per-thread cache off, which would bypass that): an int64 read from uninitialised memory is then
# ~9e18, never a valid index, and a uint8 is 127, never a label. numba allocates arrays with malloc.
_UNINITIALISED_IS_WILD = {"MALLOC_PERTURB_": "128", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}


@pytest.fixture(scope="module")
def bounds_checked_cache(tmp_path_factory):
    """numba's cache directory for kernels compiled with bounds checks (and for nothing else)."""
    return tmp_path_factory.mktemp("numba-cache-boundscheck")


def run_bounds_checked(body: str, tmp_path, cache_dir, *args: str, timeout: int = 900) -> str:
    """Run ``body`` (Python; ``sys.argv[1:]`` = ``args``) in a subprocess whose numba kernels are
    compiled with bounds checks (cached in ``cache_dir``) and whose fresh heap memory is a wild
    pattern; returns its stdout, fails the test on a non-zero exit."""
    script = tmp_path / "bounds_checked.py"
    script.write_text(textwrap.dedent(body))
    env = subprocess_env(REPO_ROOT / "tests", **_UNINITIALISED_IS_WILD, NUMBA_BOUNDSCHECK="1",
                         NUMBA_CACHE_DIR=str(cache_dir))
    result = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_undecided_coarse_case_takes_the_decided_fine_branch():
    # every cell: the coarse difference crosses 0 (mixed) while one fine channel leads by far at
    # all 4 corners (decided): the kernel's fine_safe branch inside a mixed cell
    boxes, coarse, fine, _, _ = undecided_coarse_case()
    d = coarse[:, 1] - coarse[:, 0]
    corners = lambda t: torch.stack([t[..., :-1, :-1], t[..., :-1, 1:], t[..., 1:, :-1], t[..., 1:, 1:]])  # noqa: E731
    assert bool((corners(d).amin(0) < 0).all() and (corners(d).amax(0) > 0).all())
    top2 = fine.topk(2, dim=1).values
    assert bool(((top2[:, 0] - top2[:, 1]) > 5).all())
    assert len({int(i) for i in fine.argmax(1).flatten()}) == boxes.shape[0]


@pytest.mark.slow
def test_decided_fine_cells_read_no_uninitialised_memory(tmp_path, bounds_checked_cache):
    # a regression test: the kernel once read its candidate channel from an uninitialised array in
    # these cells; with the wild heap pattern that is an IndexError every time
    out = run_bounds_checked("""
        import torch
        from support.cases import undecided_coarse_case
        from densevid.kernels import render_cpu
        from densevid.kernels.reference import render_labels_reference

        assert render_cpu.compiled_kernels() is not None
        for seed in range(4):
            args = undecided_coarse_case(seed)
            expected = render_labels_reference(*args)
            assert (expected > 0).any()
            for mode in (torch.no_grad, torch.inference_mode):
                with mode():
                    assert torch.equal(render_cpu.render_labels_cpu(*args), expected)
        print("OK")
    """, tmp_path, bounds_checked_cache)
    assert "OK" in out


@pytest.mark.slow
def test_small_random_sweep_under_bounds_checks_equals_reference(tmp_path, bounds_checked_cache):
    # odd sizes, tiny and non-square grids, boxes over the borders, smooth / noisy / tied logits,
    # near-ties; the slow sweep below covers thousands of instance configurations
    out = run_bounds_checked("""
        import torch
        from support.cases import make_case, near_tie_case, sweep_cases
        from densevid.kernels import render_cpu
        from densevid.kernels.reference import render_labels_reference

        assert render_cpu.compiled_kernels() is not None
        gen = torch.Generator().manual_seed(11)
        cases = [near_tie_case()]
        for seed in range(40):
            n, sh, sw = (int(v) for v in torch.randint(1, 5, (1,), generator=gen).tolist() +
                         torch.randint(2, 30, (2,), generator=gen).tolist())
            h, w = (int(v) for v in torch.randint(1, 160, (2,), generator=gen))
            boxes, coarse, fine, _, _ = make_case(seed, n, 30, h, w, smooth=seed % 3 != 0)
            coarse, fine = coarse[:, :, :sh, :sw].contiguous(), fine[:, :, :sh, :sw].contiguous()
            if seed % 5 == 0:
                fine[:, 3] = fine[:, 2]  # exact ties
            cases.append((boxes, coarse, fine, h, w))
        cases += list(sweep_cases(seed=41, count=60))
        for args in cases:
            assert torch.equal(render_cpu.render_labels_cpu(*args), render_labels_reference(*args))
        print("OK")
    """, tmp_path, bounds_checked_cache)
    assert "OK" in out


@pytest.mark.slow
def test_random_sweep_under_bounds_checks_equals_reference(tmp_path, bounds_checked_cache):
    # 1,500 random cases (~3,700 instance configurations, every situation of cases.sweep_cases)
    out = run_bounds_checked("""
        import torch
        from support.cases import sweep_cases
        from densevid.kernels import render_cpu
        from densevid.kernels.reference import render_labels_reference

        assert render_cpu.compiled_kernels() is not None
        cases = instances = 0
        for args in sweep_cases(seed=15, count=1500):
            expected = render_labels_reference(*args)
            with torch.inference_mode():
                actual = render_cpu.render_labels_cpu(*args)
            assert torch.equal(actual, expected), f"case {cases} differs"
            cases += 1
            instances += args[0].shape[0]
        print("CASES", cases, instances)
    """, tmp_path, bounds_checked_cache, timeout=1200)
    cases, instances = map(int, [ln for ln in out.splitlines() if ln.startswith("CASES")][0].split()[1:])
    assert cases == 1500 and instances > 3000


@pytest.mark.slow
def test_parity_suites_pass_under_bounds_checks(bounds_checked_cache):
    # the whole render parity sweep, the IUV tests and the node parity tests, compiled with bounds checks
    env = subprocess_env(NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(bounds_checked_cache))
    files = ["kernels/test_render.py", "kernels/test_render_cpu.py", "kernels/test_iuv.py",
             "engine/test_node_parity.py"]
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow", *files]
    result = subprocess.run(command, cwd=REPO_ROOT / "tests", env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


_VIDEO_CHECK = """
    import sys
    from pathlib import Path

    import numpy as np
    import torch

    from support.helpers import decode_all
    from densevid.kernels import hint_lut
    from densevid.kernels.reference import render_labels_reference
    from densevid.pipeline.models import save_standin
    from densevid import DensePoseEstimator, EncodeConfig, encode_video
    from densevid.pipeline.engine import resize_and_pad
    from densevid.pipeline.comfyui import DensePose_Preprocessor

    clip, style, work = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    model = work / f"standin_{style}.torchscript"
    save_standin(model, style=style, seed=0)
    estimator = DensePoseEstimator(str(model), resolution=512, device="cpu")
    out = work / "hint.mkv"
    encode_video(clip, out, estimator, config=EncodeConfig(model=str(model), resolution=512, device="cpu",
                                                           lossless=True))
    hints, _ = decode_all(out)
    frames, _ = decode_all(clip)
    assert len(hints) == len(frames) > 0
    lut = hint_lut("viridis")
    people = 0
    for index, (frame, hint) in enumerate(zip(frames, hints)):
        padded, (h, w) = resize_and_pad(frame, 512)
        detections = estimator.detect(torch.from_numpy(padded))
        people += len(detections)
        expected = lut[render_labels_reference(detections.boxes_xyxy, detections.coarse_segm,
                                               detections.fine_segm, h, w).long()].numpy()
        assert np.array_equal(hint, expected), f"frame {index} differs from the reference render"
    # the ComfyUI node inside torch.inference_mode (as ComfyUI runs it), on the same frames
    node = DensePose_Preprocessor()
    with torch.inference_mode():
        for start in range(0, len(frames), 16):
            batch = torch.from_numpy(frames[start:start + 16]).float() / 255.0
            (images,) = node.execute(batch, model=str(model), resolution=512)
            assert images.shape[0] == len(batch)
    print("FRAMES", len(frames), "PEOPLE", people)
"""


@pytest.mark.slow
@pytest.mark.parametrize("style", ["tuple", "dict"])
@pytest.mark.parametrize("source", ["generated", "real"])
def test_video_under_bounds_checks_equals_reference_render(tmp_path, bounds_checked_cache, source, style):
    # every frame of the lossless encode equals the reference render of the same detections, and
    # the node runs the frames inside inference_mode; "real" is the shared dance video
    if source == "real" and not (SHARED_DATA / "dance_576x1024.mp4").is_file():
        pytest.skip(f"the real dance video is not in {SHARED_DATA} (benchmark data beside the repository)")
    clip = SHARED_DATA / "dance_576x1024.mp4"
    if source == "generated":
        clip = make_clip(tmp_path / "clip.mkv", synthetic_frames(24, 180, 101, seed=15))
    out = run_bounds_checked(_VIDEO_CHECK, tmp_path, bounds_checked_cache, str(clip), style, str(tmp_path),
                             timeout=1500)
    frames, people = map(int, [ln for ln in out.splitlines() if ln.startswith("FRAMES")][0].split()[1::2])
    assert frames > 0 and people > 0
