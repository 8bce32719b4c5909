"""Resume by fingerprint: an existing output is skipped only when it was made from the same input, with
the same settings and model; otherwise the input fails with one line saying what differs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from densevid.pipeline.batch import expected_fingerprint
from densevid.pipeline.cli import main
from densevid.pipeline.config import SETTINGS, WINDOW_SETTINGS, EncodeConfig
from densevid.pipeline.io import _fingerprint, mismatch, read_png_text, stored_fingerprint
from support.clips import make_clip, make_image, synthetic_frames
from support.helpers import decode_all, run_cli

ROOT = Path(__file__).resolve().parents[2]


def args_for(clip, standin_models, *extra, style="tuple"):
    return (clip, "--lossless", "--model", standin_models[style], "--resolution", "64", "--device", "cpu", *extra)


def snapshot(*paths):
    """(inode, mtime_ns) of files and of every file under directories: 'untouched' means equal snapshots."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f): (f.stat().st_ino, f.stat().st_mtime_ns) for f in files}


@pytest.fixture
def clip(tmp_path):
    return make_clip(tmp_path / "clip.mkv", synthetic_frames(3, 40, 56, seed=5))


# --- what a fingerprint holds, and where it is stored ------------------------------------------------


def test_every_output_carries_the_fingerprint_of_its_run(tmp_path, clip, standin_models):
    outputs = {"main": tmp_path / "hint.mkv", "frames": tmp_path / "png", "preview": tmp_path / "side.mp4",
               "iuv": tmp_path / "iuv.npz"}
    result = run_cli(*args_for(clip, standin_models, "-o", outputs["main"], "--frames", outputs["frames"],
                               "--preview", outputs["preview"], "--iuv", outputs["iuv"]))
    assert result.exit_code == 0, result.output
    config = EncodeConfig(model=str(standin_models["tuple"]), resolution=64, lossless=True, device="cpu")
    expected = expected_fingerprint(clip, config)
    stored = stored_fingerprint(outputs["main"])
    # what the run would write, plus what actually ran (recorded, not compared)
    assert json.loads(stored) == {**json.loads(expected), "ran": {"device": "cpu", "precision": "float32",
                                                                  "engine": "torchscript", "batch": 1}}
    assert mismatch(stored, expected) is None
    for name, path in outputs.items():
        assert stored_fingerprint(path) == stored, name
    frames = sorted(outputs["frames"].iterdir())
    assert len(frames) == 3 and {read_png_text(p)["densevid_fingerprint"] for p in frames} == {stored}  # every PNG

    data = json.loads(expected)
    assert data["format"] == _fingerprint.FORMAT_VERSION
    assert data["input"]["name"] == "clip.mkv" and data["input"]["size"] == clip.stat().st_size
    model_bytes = Path(standin_models["tuple"]).read_bytes()
    assert data["model"] == {"file": Path(standin_models["tuple"]).name, "size": len(model_bytes),
                             "sha256": hashlib.sha256(model_bytes).hexdigest()}
    # every setting that changes an output, with its effective value (the frame window only where it narrows)
    assert set(data["settings"]) == {s.name for s in SETTINGS if s.output} - {"model"} - set(WINDOW_SETTINGS)
    assert data["settings"] == {"cmap": "viridis", "resolution": 64, "half": False, "lossless": True, "size": None,
                                "fit": None, "crop_box": None, "fps": None, "smooth": 1}


def test_image_output_carries_it_in_a_png_text_chunk(tmp_path, standin_models):
    image = make_image(tmp_path / "person.png", synthetic_frames(2, 40, 48, seed=3)[1])
    assert run_cli(image, "--model", standin_models["tuple"], "--resolution", "64").exit_code == 0
    out = tmp_path / "person_densepose.png"
    config = EncodeConfig(model=str(standin_models["tuple"]), resolution=64)
    stored = stored_fingerprint(out)
    assert stored is not None and mismatch(stored, expected_fingerprint(image, config)) is None
    import cv2  # another PNG reader: the inserted chunk (length, CRC) is valid PNG

    pixels = decode_all(out)[0][0]
    assert pixels.shape == (64, 77, 3)
    np.testing.assert_array_equal(cv2.imread(str(out))[:, :, ::-1], pixels)


@pytest.mark.parametrize("native_bf16", [False, True])
def test_effective_values_not_spellings_decide(tmp_path, clip, standin_models, monkeypatch, native_bf16):
    import densevid.pipeline.models._precision as precision

    monkeypatch.setattr(precision, "cpu_native_bfloat16", lambda: native_bf16)
    base = EncodeConfig(model=str(standin_models["tuple"]), device="cpu")
    model = str(standin_models["tuple"])
    same = [EncodeConfig(model=model, device="cpu", resolution=512),  # the default, spelled out
            EncodeConfig(model=model, device="cpu", batch_size=3, overwrite=True)]  # no effect on the output
    for config in same:
        assert expected_fingerprint(clip, config) == expected_fingerprint(clip, base)
    # --half on the CPU: bfloat16 where the CPU has it (another output), else ignored (the same one)
    half_on_cpu = expected_fingerprint(clip, EncodeConfig(model=model, device="cpu", half=True))
    assert (half_on_cpu == expected_fingerprint(clip, base)) == (not native_bf16)
    # --half where CUDA may run it counts as asked, whatever this machine has: a Ray driver without a
    # GPU checks what its GPU workers wrote
    assert "--half off there, on now" in mismatch(expected_fingerprint(clip, base),
                                                  expected_fingerprint(clip, EncodeConfig(model=model, half=True)))
    assert expected_fingerprint(clip, EncodeConfig(model=str(standin_models["tuple"]), size=64)) == \
        expected_fingerprint(clip, EncodeConfig(model=str(standin_models["tuple"]), size=64, fit="crop"))
    # the same bytes elsewhere (moved, copied without mtime) are the same input
    copy = tmp_path / "elsewhere" / "renamed.mkv"
    copy.parent.mkdir()
    shutil.copyfile(clip, copy)
    os.utime(copy, ns=(1, 1))
    assert mismatch(expected_fingerprint(clip, base), expected_fingerprint(copy, base)) is None


# --- resume: skip, refuse, overwrite ------------------------------------------------------------------


def test_half_is_recorded_as_asked_so_a_rerun_anywhere_agrees(tmp_path, clip, standin_models):
    out = tmp_path / "hint.mkv"
    args = (clip, "-o", out, "--lossless", "--model", standin_models["tuple"], "--resolution", "64", "--half")
    assert run_cli(*args).exit_code == 0  # --device auto: fp32 on this CPU, fp16 where CUDA is
    assert json.loads(stored_fingerprint(out))["settings"]["half"] is True
    assert run_cli(*args).exit_code == 0  # skipped
    result = run_cli(*args[:-1])
    assert result.exit_code == 1 and "--half on there, off now" in result.output


def test_same_run_is_skipped_other_settings_input_or_model_are_refused(tmp_path, clip, standin_models):
    out, report = tmp_path / "hint.mkv", tmp_path / "report.json"
    assert run_cli(*args_for(clip, standin_models, "-o", out)).exit_code == 0
    before = snapshot(out)
    assert run_cli(*args_for(clip, standin_models, "-o", out)).exit_code == 0 and snapshot(out) == before

    other_settings = run_cli(*args_for(clip, standin_models, "-o", out, "--cmap", "parula", "--smooth", "3",
                                       "--report", report))
    assert other_settings.exit_code == 1
    assert other_settings.output == (f"densevid: error: {out} exists but was made with other settings (--cmap viridis "
                                     f"there, parula now; --smooth 1 there, 3 now); pass --overwrite to replace it, "
                                     f"or choose another -o\n")
    entry = json.loads(report.read_text())["inputs"][0]
    assert entry["status"] == "failed" and entry["error"] == other_settings.output[len("densevid: error: "):-1]

    other_model = run_cli(*args_for(clip, standin_models, "-o", out, style="dict"))
    assert other_model.exit_code == 1
    assert re.fullmatch(rf"densevid: error: {re.escape(str(out))} exists but was made with another model \(--model: "
                        r"standin_tuple.torchscript \(\d+ bytes, sha256 [0-9a-f]{12}\) there, standin_dict.torchscript "
                        r"\(\d+ bytes, sha256 [0-9a-f]{12}\) now\); pass --overwrite to replace it, or choose "
                        r"another -o\n",
                        other_model.output), other_model.output

    make_clip(clip, synthetic_frames(3, 40, 56, seed=6))  # another video under the same name
    other_input = run_cli(*args_for(clip, standin_models, "-o", out))
    assert other_input.exit_code == 1
    assert f"{out} exists but was made from another input (clip.mkv: " in other_input.output
    assert snapshot(out) == before  # refusals leave the output alone

    assert run_cli(*args_for(clip, standin_models, "-o", out, "--overwrite")).exit_code == 0
    assert snapshot(out) != before
    assert run_cli(*args_for(clip, standin_models, "-o", out)).exit_code == 0  # now it matches again


def test_output_of_another_densevid_format_or_another_tool_is_refused(tmp_path, clip, standin_models, monkeypatch):
    out = tmp_path / "hint.mkv"
    assert run_cli(*args_for(clip, standin_models, "-o", out)).exit_code == 0
    monkeypatch.setattr(_fingerprint, "FORMAT_VERSION", _fingerprint.FORMAT_VERSION + 1)
    result = run_cli(*args_for(clip, standin_models, "-o", out))
    assert result.exit_code == 1
    assert (f"{out} exists but was made by a densevid with output format {_fingerprint.FORMAT_VERSION - 1} "
            f"(this one writes {_fingerprint.FORMAT_VERSION})") in result.output
    monkeypatch.undo()

    foreign = tmp_path / "foreign.mkv"
    make_clip(foreign, synthetic_frames(2, 64, 89))  # a valid video without a fingerprint
    result = run_cli(*args_for(clip, standin_models, "-o", foreign))
    assert result.exit_code == 1
    assert result.output == (f"densevid: error: {foreign} exists but has no densevid fingerprint (made by an older "
                             f"densevid or another tool), so it cannot be checked against this run; pass --overwrite "
                             f"to replace it, or choose another -o\n")


def test_sidecars_are_checked_too_and_a_partial_set_is_refused(tmp_path, clip, standin_models):
    out, iuv = tmp_path / "hint.mkv", tmp_path / "iuv.npz"
    assert run_cli(*args_for(clip, standin_models, "-o", out, "--iuv", iuv)).exit_code == 0
    assert run_cli(*args_for(clip, standin_models, "-o", out, "--iuv", iuv)).exit_code == 0  # skipped
    iuv.unlink()
    result = run_cli(*args_for(clip, standin_models, "-o", out, "--iuv", iuv))
    assert result.exit_code == 1 and result.output == (
        f"densevid: error: {iuv} does not exist but {out} does (made from this input with these settings): pass "
        f"--overwrite to write all outputs of this input again\n")
    # an --iuv file from another run is named, with the flag to change
    assert run_cli(*args_for(clip, standin_models, "-o", tmp_path / "b.mkv", "--iuv", iuv)).exit_code == 0
    result = run_cli(*args_for(clip, standin_models, "-o", tmp_path / "c.mkv", "--iuv", iuv, "--cmap", "parula"))
    assert result.exit_code == 1
    assert f"{iuv} exists but was made with other settings (--cmap viridis there, parula now)" in result.output
    assert result.output.endswith("or choose another --iuv\n")


def test_resume_in_a_batch_reads_no_frames_and_loads_no_model(tmp_path, standin_models, monkeypatch):
    import densevid.pipeline.engine._estimator as api
    import densevid.pipeline.io._decode as decode

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        make_clip(videos / f"v{i}.mkv", synthetic_frames(2, 40, 40, seed=i))
    args = (videos, "-o", tmp_path / "out", "--model", standin_models["tuple"], "--resolution", "64", "--lossless")
    assert run_cli(*args).exit_code == 0
    calls = []
    monkeypatch.setattr(decode, "probe_video", lambda *a, **k: calls.append("probe"))
    monkeypatch.setattr(api.DensePoseEstimator, "from_config", classmethod(lambda *a, **k: calls.append("load")))
    result = CliRunner().invoke(main, ["encode", *map(str, args)])
    assert result.exit_code == 0, result.output
    assert "densevid: 2 inputs: 0 done, 2 skipped, 0 failed" in result.output
    assert calls == []


def test_outputs_to_compare_but_no_model_stops_the_batch_in_one_line(tmp_path, clip, standin_models):
    out = tmp_path / "hint.mkv"
    assert run_cli(*args_for(clip, standin_models, "-o", out)).exit_code == 0
    result = run_cli(clip, "-o", out, "--lossless", "--model", tmp_path / "gone.torchscript")
    assert result.exit_code == 1
    assert result.output == f"densevid: error: model file not found: {tmp_path / 'gone.torchscript'}\n"


# --- the README's MagicAnimate recipe, run as written, in one directory ------------------------------


def readme_lines(heading: str) -> list[str]:
    """The lines of the README's bash block that follows ``heading``."""
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(heading) + r"\s+```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def recipe_lines() -> list[str]:
    return readme_lines("### MagicAnimate recipe")


def test_readme_magicanimate_recipe_lines_each_do_what_they_say(tmp_path, standin_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a portrait clip: line 1 crops it, line 2 pads it
    make_clip(tmp_path / "dance.mp4", synthetic_frames(3, 80, 48, seed=7, black_every=0), codec="libx264")
    main_job = readme_lines("Run the main job:")[0]  # a new user runs it first, in the same directory
    lines = recipe_lines()
    assert len(lines) == 3

    def run(line: str):
        words = shlex.split(line, comments=True)
        assert words[:2] == ["densevid", "encode"], line
        return CliRunner().invoke(main, [*words[1:], "--model", str(standin_models["tuple"]), "--device", "cpu",
                                         "--quiet"])

    written = []
    for line in [main_job, *lines]:
        result = run(line)
        assert result.exit_code == 0, (line, result.output)
        new = sorted(p.name for p in tmp_path.iterdir() if p.name not in written and p.name != "dance.mp4")
        assert new, f"{line!r} wrote nothing"
        written += new
    assert sorted(written) == sorted(["dance_densepose.mp4", "dance_crop.mp4", "dance_pad.mp4", "dance_train.mp4",
                                      "dance_png", "dance_iuv.npz", "dance_cmp.mp4"])
    crop, _ = decode_all(tmp_path / "dance_crop.mp4")
    pad, _ = decode_all(tmp_path / "dance_pad.mp4")
    assert crop.shape == pad.shape == (3, 512, 512, 3)
    # pad: the 48x80 frame's long side is 512, so columns left and right of its 307 are background
    background = np.array([68, 1, 84])
    assert np.abs(pad[:, :, :100].astype(int) - background).max() <= 3
    assert np.abs(pad[:, :, -100:].astype(int) - background).max() <= 3
    assert json.loads(stored_fingerprint(tmp_path / "dance_pad.mp4"))["settings"]["fit"] == "pad"
    assert json.loads(stored_fingerprint(tmp_path / "dance_crop.mp4"))["settings"]["fit"] == "crop"
    np.testing.assert_array_equal(decode_all(tmp_path / "dance_train.mp4")[0], crop)  # line 3 = line 1 + training data
    assert len(list((tmp_path / "dance_png").glob("*.png"))) == 3 and decode_all(tmp_path / "dance_cmp.mp4")[0].shape \
        == (3, 512, 1024, 3)

    # rerunning the recipe redoes nothing
    before = snapshot(*(tmp_path / name for name in written))
    for line in [main_job, *lines]:
        assert run(line).exit_code == 0
    assert snapshot(*(tmp_path / name for name in written)) == before
    # and line 2 into line 1's output (as the old README had it) is refused instead of leaving the crop in place
    result = run(line=re.sub(r"\s-o \S+", " -o dance_crop.mp4", lines[1]))
    assert result.exit_code == 1 and "--fit crop there, pad now" in result.output
