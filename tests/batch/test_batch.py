"""Batch jobs — many inputs, resume, isolation, report, shards, interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from densevid.pipeline.batch import build_plan, expand_inputs, parse_shard, shard_of
from densevid.pipeline.cli import main
from densevid.pipeline.config import EncodeConfig
from densevid.pipeline.core import UsageError
from support.clips import make_clip, make_image, synthetic_frames
from support.helpers import decode_all, run_cli

ROOT = Path(__file__).resolve().parents[2]
CORRUPT_REASON = "not a readable video or image file"


def leftovers(directory):
    return [p for p in Path(directory).rglob("*") if ".partial" in p.name]


def make_tree(root: Path) -> dict[str, Path]:
    """Three inputs, one of them corrupt: videos/a.mkv, videos/sub/b.mkv, videos/broken.mp4."""
    (root / "videos" / "sub").mkdir(parents=True)
    files = {
        "a": make_clip(root / "videos" / "a.mkv", synthetic_frames(4, 48, 64, seed=1)),
        "b": make_clip(root / "videos" / "sub" / "b.mkv", synthetic_frames(5, 40, 40, seed=2)),
        "broken": root / "videos" / "broken.mp4",
    }
    files["broken"].write_text("this is not a video\n" * 20)
    return files


def batch_args(standin_models, *extra):
    return ("--model", standin_models["tuple"], "--resolution", "64", "--lossless", "--device", "cpu", *extra)


def load_report(path):
    return json.loads(Path(path).read_text())


# --- a batch's promises: isolation, resume, report ----------------------------------------------


def test_corrupt_input_fails_alone_and_rerun_skips_the_rest(tmp_path, standin_models, monkeypatch):
    files = make_tree(tmp_path)
    out, report = tmp_path / "hints", tmp_path / "report.json"
    args = (tmp_path / "videos", "-o", out, "--report", report, *batch_args(standin_models))
    result = run_cli(*args)
    assert result.exit_code == 1, result.output
    # errors are printed even with --quiet: one line for the failed input, nothing else
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("densevid: error:") and "broken.mp4" in lines[0], result.output
    a_out, b_out = out / "a_densepose.mkv", out / "sub" / "b_densepose.mkv"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a_densepose.mkv", "sub/b_densepose.mkv"]
    assert decode_all(a_out)[0].shape == (4, 64, 85, 3) and decode_all(b_out)[0].shape == (5, 64, 64, 3)
    assert leftovers(tmp_path) == []

    data = load_report(report)
    assert data["counts"] == {"done": 2, "skipped": 0, "failed": 1, "pending": 0}
    assert data["interrupted"] is False and data["error"] is None
    entries = {Path(e["input"]).name: e for e in data["inputs"]}
    assert [Path(e["input"]).name for e in data["inputs"]] == ["a.mkv", "broken.mp4", "b.mkv"]  # by rel name
    assert entries["a.mkv"]["status"] == "done" and entries["a.mkv"]["frames"] == 4
    assert entries["a.mkv"]["output"] == str(a_out) and entries["a.mkv"]["error"] is None
    assert entries["b.mkv"]["status"] == "done" and entries["b.mkv"]["frames"] == 5
    broken = entries["broken.mp4"]
    assert broken["status"] == "failed" and broken["frames"] is None
    assert CORRUPT_REASON in broken["error"] and str(files["broken"]) in broken["error"]
    assert "\n" not in broken["error"]
    assert all(isinstance(e["seconds"], float) for e in data["inputs"])

    # the same command again: both outputs skipped without decoding them, no model load
    import densevid.pipeline.engine as api
    import densevid.pipeline.io as decode

    probed, loads = [], []
    real_probe, real_from_config = decode.probe_video, api.DensePoseEstimator.from_config
    monkeypatch.setattr(decode, "probe_video", lambda path, *a, **k: probed.append(Path(path).name)
                        or real_probe(path, *a, **k))
    monkeypatch.setattr(api.DensePoseEstimator, "from_config",
                        classmethod(lambda cls, *a, **k: loads.append(1) or real_from_config(*a, **k)))
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (a_out, b_out)}
    again = run_cli(*args)
    assert again.exit_code == 1, again.output
    assert probed == ["broken.mp4"] and loads == []
    assert {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in (a_out, b_out)} == before
    data = load_report(report)
    assert data["counts"] == {"done": 0, "skipped": 2, "failed": 1, "pending": 0}
    assert [e["status"] for e in data["inputs"]] == ["skipped", "failed", "skipped"]
    skipped = data["inputs"][0]
    assert skipped["output"] == str(a_out) and skipped["frames"] is None and skipped["seconds"] is None

    # --overwrite redoes them, and the outputs are the same pixels
    first_pixels = decode_all(a_out)[0]
    assert run_cli(*args, "--overwrite").exit_code == 1
    assert load_report(report)["counts"] == {"done": 2, "skipped": 0, "failed": 1, "pending": 0}
    np.testing.assert_array_equal(decode_all(a_out)[0], first_pixels)


def test_all_done_or_skipped_exits_0_and_prints_a_summary(tmp_path, standin_models):
    make_tree(tmp_path)
    (tmp_path / "videos" / "broken.mp4").unlink()
    out = tmp_path / "hints"
    result = CliRunner().invoke(main, ["encode", str(tmp_path / "videos"), "-o", str(out),
                                       *map(str, batch_args(standin_models))])
    assert result.exit_code == 0, result.output
    assert "densevid: 2 inputs: 2 done, 0 skipped, 0 failed" in result.output
    result = CliRunner().invoke(main, ["encode", str(tmp_path / "videos"), "-o", str(out),
                                       *map(str, batch_args(standin_models))])
    assert result.exit_code == 0
    assert "densevid: 2 inputs: 0 done, 2 skipped, 0 failed" in result.output


def test_model_is_loaded_once_per_process(tmp_path, standin_models, monkeypatch):
    import densevid.pipeline.engine._estimator as api

    make_tree(tmp_path)
    loads = []
    real = api.DensePoseEstimator.from_config
    monkeypatch.setattr(api.DensePoseEstimator, "from_config",
                        classmethod(lambda cls, *a, **k: loads.append(1) or real(*a, **k)))
    result = run_cli(tmp_path / "videos" / "a.mkv", tmp_path / "videos" / "sub" / "b.mkv", "-o", tmp_path / "o",
                     *batch_args(standin_models))
    assert result.exit_code == 0, result.output
    assert loads == [1]
    # files named one by one mirror their paths below the deepest common directory
    assert (tmp_path / "o" / "a_densepose.mkv").is_file() and (tmp_path / "o" / "sub" / "b_densepose.mkv").is_file()


def test_outputs_equal_single_runs_pixel_for_pixel(tmp_path, standin_models):
    files = make_tree(tmp_path)
    assert run_cli(tmp_path / "videos", "-o", tmp_path / "batch", *batch_args(standin_models)).exit_code == 1
    single = tmp_path / "single.mkv"
    assert run_cli(files["b"], "-o", single, *batch_args(standin_models)).exit_code == 0
    np.testing.assert_array_equal(decode_all(tmp_path / "batch" / "sub" / "b_densepose.mkv")[0],
                                  decode_all(single)[0])


def test_shards_cover_every_input_exactly_once(tmp_path, standin_models):
    make_tree(tmp_path)
    for i in range(3):  # more inputs, images too (fast), so both shards get some
        make_image(tmp_path / "videos" / f"img{i}.png", synthetic_frames(2, 40, 48, seed=i)[1])
    out = tmp_path / "hints"
    reports = []
    for k in (0, 1):
        report = tmp_path / f"report{k}.json"
        result = run_cli(tmp_path / "videos", "-o", out, "--shard", f"{k}/2", "--report", report,
                         *batch_args(standin_models))
        assert result.exit_code in (0, 1), result.output
        reports.append(load_report(report))
    inputs = [[e["input"] for e in r["inputs"]] for r in reports]
    assert inputs[0] and inputs[1] and not set(inputs[0]) & set(inputs[1])
    everything = sorted(str(p) for p in (tmp_path / "videos").rglob("*") if p.is_file())
    assert sorted(inputs[0] + inputs[1]) == everything
    assert [r["shard"] for r in reports] == ["0/2", "1/2"]
    produced = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert produced == ["a_densepose.mkv", "b_densepose.mkv", "img0_densepose.png", "img1_densepose.png",
                        "img2_densepose.png"]


def test_shard_assignment_is_stable_under_reordering(tmp_path):
    names = [f"clips/{c}/take{i}.mp4" for c in "abc" for i in range(7)]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    forward, backward = tmp_path / "forward.txt", tmp_path / "backward.txt"
    forward.write_text("\n".join(str(tmp_path / n) for n in names) + "\n")
    backward.write_text("# reversed\n\n" + "\n".join(str(tmp_path / n) for n in reversed(names)) + "\n")
    for n in (1, 2, 3, 5):
        shards = []
        for k in range(n):
            a = build_plan([], [str(forward)], tmp_path / "out", shard=(k, n))
            b = build_plan([], [str(backward)], tmp_path / "out", shard=(k, n))
            assert a.jobs == b.jobs and a.total == len(names)
            shards.append({job.rel for job in a.jobs})
        assert sum(len(s) for s in shards) == len(names) and set().union(*shards) == {n[6:] for n in names}
    # the hash is sha1 of the rel name: the same in every process and on every machine
    assert shard_of("a/take0.mp4", 1000) == int.from_bytes(
        __import__("hashlib").sha1(b"a/take0.mp4").digest()[:8], "big") % 1000


@pytest.mark.parametrize("text,message", [("1", "K/N"), ("2/2", "0 <= K < N"), ("-1/2", "0 <= K < N"),
                                          ("a/b", "K/N"), ("0/0", "0 <= K < N")])
def test_bad_shard_is_usage_error(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        parse_shard(text)
    result = CliRunner().invoke(main, ["encode", str(tmp_path), "--shard", text])
    assert result.exit_code == 2 and result.output.startswith("densevid: error: --shard"), result.output


# --- input expansion and naming -------------------------------------------------------------------


def test_expansion_recursive_sorted_deduplicated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("v/b.mp4", "v/a.MKV", "v/deep/er/c.webm", "v/pic.jpg", "v/notes.txt", "v/.hidden.mp4",
                 "v/.cache/x.mp4", "v/a_densepose.mp4", "v/.a.1234abcd.partial.mp4", "other/z.mov"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = expand_inputs(["v", "v/b.mp4", "other/z.mov"])
    # v/b.mp4 is also under v/: one job, with the smallest rel; the files named one by one are relative
    # to their common directory (here tmp_path)
    assert [rel for _, rel in found] == ["a.MKV", "b.mp4", "deep/er/c.webm", "other/z.mov", "pic.jpg"]
    assert all(p.is_absolute() for p, _ in found)
    # a glob: named relative to its leading directory without wildcards; ** recurses
    assert [rel for _, rel in expand_inputs(["v/**/*.webm", "v/*.mp4"])] == ["b.mp4", "deep/er/c.webm"]
    # files one by one: relative to their deepest common directory
    assert [rel for _, rel in expand_inputs(["v/deep/er/c.webm", "v/b.mp4"])] == ["b.mp4", "deep/er/c.webm"]
    with pytest.raises(UsageError, match="no video or image file matches v/\\*.avi"):
        expand_inputs(["v/*.avi"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="directory empty holds no video or image files"):
        expand_inputs(["empty"])


def test_output_names_mirror_inputs_and_collisions_fail_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("v/x.mp4", "v/x.mkv", "v/s/y.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    plan = build_plan(["v"], output=tmp_path / "o", config=EncodeConfig(lossless=False))
    outputs = [(job.rel, job.output_path(False), job.error) for job in plan.jobs]
    assert outputs[0] == ("s/y.png", tmp_path / "o" / "s" / "y_densepose.png", None)
    assert outputs[1] == ("x.mkv", tmp_path / "o" / "x_densepose.mp4", None)
    assert outputs[2][1] == tmp_path / "o" / "x_densepose.mp4"
    assert "is also the output of" in outputs[2][2] and "x.mkv" in outputs[2][2]
    assert (tmp_path / "o").is_dir()
    # without -o: beside each input
    plan = build_plan(["v"], config=EncodeConfig(lossless=True))
    assert [job.output_path(True) for job in plan.jobs][:2] == [tmp_path / "v" / "s" / "y_densepose.png",
                                                                tmp_path / "v" / "x_densepose.mkv"]


def test_from_list_reads_paths_comments_and_stdin(tmp_path, standin_models):
    files = make_tree(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# inputs\n{files['a']}\n\n  {files['b']}  \n")
    out = tmp_path / "o"
    result = run_cli("--from-list", listing, "-o", out, *batch_args(standin_models))
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mkv")) == ["a_densepose.mkv",
                                                                                "sub/b_densepose.mkv"]
    from densevid.pipeline.cli import main as cli_main

    result = CliRunner().invoke(cli_main, ["encode", "--from-list", "-", "-o", str(out), "--quiet",
                                           *map(str, batch_args(standin_models))], input=f"{files['a']}\n")
    assert result.exit_code == 0 and result.output == ""  # skipped: already done


@pytest.mark.parametrize("args,message", [
    ([], "no INPUT given"),
    (["--from-list", "missing.txt"], "cannot read the input list missing.txt"),
    (["nothing/*.mp4"], "no video or image file matches nothing/*.mp4"),
])
def test_usage_errors_exit_2_in_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["encode", *args])
    assert result.exit_code == 2
    assert result.output == f"densevid: error: {message}\n" or (
        result.output.startswith(f"densevid: error: {message}") and result.output.count("\n") == 1), result.output


def test_output_file_with_several_inputs_is_usage_error(tmp_path, standin_models):
    files = make_tree(tmp_path)
    (tmp_path / "out.mkv").write_bytes(b"x")
    result = run_cli(files["a"], files["b"], "-o", tmp_path / "out.mkv", *batch_args(standin_models))
    assert result.exit_code == 2
    assert result.output.strip() == (f"densevid: error: -o {tmp_path / 'out.mkv'} is a file; "
                                     "with several inputs -o names a directory")


def test_single_input_into_an_existing_directory(tmp_path, standin_models):
    files = make_tree(tmp_path)
    (tmp_path / "o").mkdir()
    assert run_cli(files["a"], "-o", tmp_path / "o", *batch_args(standin_models)).exit_code == 0
    assert (tmp_path / "o" / "a_densepose.mkv").is_file()


def test_ray_missing_is_a_one_line_error(tmp_path, standin_models, monkeypatch):
    files = make_tree(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = run_cli(files["a"], "-o", tmp_path / "o.mkv", "--ray", *batch_args(standin_models))
    assert result.exit_code == 1
    assert result.output == 'densevid: error: --ray needs Ray, which is not installed: pip install "densevid[ray]"\n'
    assert not (tmp_path / "o.mkv").exists()


def test_ray_word_that_is_not_an_address_is_an_input(tmp_path, standin_models, monkeypatch):
    files = make_tree(tmp_path)
    seen = {}

    def fake_run_on_ray(jobs, config, address, num_actors, on_result):
        seen.update(inputs=[j.input_path for j in jobs], address=address)
        from densevid.pipeline.batch import run_batch
        return run_batch(jobs, config, on_result=on_result)

    import densevid.pipeline.batch as batch
    monkeypatch.setattr(batch, "run_on_ray", fake_run_on_ray)
    result = run_cli("--ray", files["a"], files["b"], "-o", tmp_path / "o", *batch_args(standin_models))
    assert result.exit_code == 0, result.output
    assert seen == {"inputs": [files["a"], files["b"]], "address": "local"}
    result = run_cli(files["a"], "--ray", "auto", "-o", tmp_path / "o2.mkv", *batch_args(standin_models))
    assert seen["address"] == "auto" and seen["inputs"] == [files["a"]]


def test_model_that_cannot_load_stops_the_batch_in_one_line(tmp_path, monkeypatch):
    make_tree(tmp_path)
    report = tmp_path / "r.json"
    result = run_cli(tmp_path / "videos", "-o", tmp_path / "o", "--model", "r50", "--report", report)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    # a.mkv comes first and needs the model: the batch stops there, in one line
    assert len(lines) == 1, result.output
    assert lines[0].startswith("densevid: error: model file densepose_r50_fpn_dl.torchscript not found")
    data = load_report(report)
    assert data["error"].startswith("model file densepose_r50_fpn_dl.torchscript not found")
    assert [e["status"] for e in data["inputs"]] == ["pending", "pending", "pending"]
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").rglob("*.mkv")) == []


# --- interruption (real processes) ------------------------------------------------------------------


def _spawn(args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("DENSEVID_MODEL_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "densevid.pipeline.cli", "encode", *map(str, args), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))


@pytest.mark.slow
def test_sigterm_mid_batch_leaves_no_partial_output_and_rerun_completes(tmp_path, standin_models):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_clip(videos / "a_short.mkv", synthetic_frames(3, 48, 48, seed=1))
    # long enough that the signal lands mid-video however fast the render gets (40 frames raced it)
    n_long = 200
    make_clip(videos / "b_long.mkv", synthetic_frames(n_long, 128, 128, black_every=0))
    make_clip(videos / "c_short.mkv", synthetic_frames(3, 48, 48, seed=3))
    out, report = tmp_path / "o", tmp_path / "report.json"
    args = [videos, "-o", out, "--report", report, "--model", standin_models["tuple"], "--resolution", "128",
            "--lossless", "--batch-size", "1", "--device", "cpu"]
    proc = _spawn(args)
    deadline = time.monotonic() + 60
    while not list(out.glob(".b_long_densepose.*.partial.mkv")):  # the long video is being written
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the long video never started"
        time.sleep(0.02)
    time.sleep(0.3)
    assert proc.poll() is None, "finished before the signal: make the clip longer"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip() == ("densevid: error: interrupted; 1 done, 0 skipped, 0 failed, 2 not finished: "
                              "rerun the same command to finish them"), stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_short_densepose.mkv"]  # nothing partial, no temp file
    assert leftovers(tmp_path) == []
    data = load_report(report)
    assert data["interrupted"] is True
    assert [(Path(e["input"]).name, e["status"]) for e in data["inputs"]] == [
        ("a_short.mkv", "done"), ("b_long.mkv", "pending"), ("c_short.mkv", "pending")]

    proc = _spawn(args)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    data = load_report(report)
    assert [e["status"] for e in data["inputs"]] == ["skipped", "done", "done"]
    assert len(decode_all(out / "b_long_densepose.mkv")[0]) == n_long
    assert leftovers(tmp_path) == []


def test_help_documents_the_batch_options_and_exit_codes():
    result = CliRunner().invoke(main, ["encode", "--help"])
    assert result.exit_code == 0
    for text in ("--from-list", "--report", "--shard", "--ray", "--ray-actors", "directory", "glob",
                 "skipped", "Exit code: 0 all done or skipped, 1 some failed, 2 usage error, 130"):
        assert text in " ".join(result.output.split()), text
    result = CliRunner().invoke(main, ["models", "--help"])
    assert result.exit_code == 0 and "download" in result.output and "list" in result.output


def test_frames_preview_iuv_with_several_inputs_mirror_the_inputs(tmp_path, standin_models):
    """With several inputs, --frames/--preview/--iuv name directories mirroring the inputs' rel names;
    a rerun skips an input only when all of its outputs exist."""
    make_tree(tmp_path)
    (tmp_path / "videos" / "broken.mp4").unlink()
    out, frames, iuv = tmp_path / "hints", tmp_path / "png", tmp_path / "iuv"
    args = (tmp_path / "videos", "-o", out, "--frames", frames, "--iuv", iuv, *batch_args(standin_models))
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    for rel, n in (("a", 4), ("sub/b", 5)):
        hints, _ = decode_all(out / f"{rel}_densepose.mkv")
        pngs = sorted((frames / rel).glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(n)]
        arrays = np.load(iuv / f"{rel}_iuv.npz")
        assert arrays["I"].shape == hints.shape[:3]
    assert leftovers(tmp_path) == []

    # one sidecar missing: that input is not complete, so it is not skipped (and refuses to clobber)
    np_path = iuv / "sub" / "b_iuv.npz"
    np_path.unlink()
    result = run_cli(*args, "--report", tmp_path / "r.json")
    statuses = {Path(e["input"]).name: e["status"] for e in load_report(tmp_path / "r.json")["inputs"]}
    assert statuses == {"a.mkv": "skipped", "b.mkv": "failed"} and result.exit_code == 1
    result = run_cli(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert np_path.is_file()


def test_run_batch_raises_when_the_model_cannot_load_and_honours_the_environment(tmp_path, standin_models,
                                                                                  monkeypatch, capsys):
    import densevid
    from densevid.pipeline.models import MODEL_FILES

    make_tree(tmp_path)
    config = densevid.EncodeConfig(model="r50", resolution=64, lossless=True, device="cpu")
    plan = densevid.build_plan([str(tmp_path / "videos")], output=tmp_path / "o", config=config)
    # no weights anywhere (offline, empty hub cache): the failure is raised, not a report of "pending"s
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(densevid.BatchStopped, match=r"^model file densepose_r50_fpn_dl.torchscript not found") \
            as caught:
        densevid.run_batch(plan.jobs, config)
    assert isinstance(caught.value, densevid.ModelError) and "\n" not in str(caught.value)
    assert caught.value.report.fatal == str(caught.value)
    assert caught.value.report.counts == {"done": 0, "skipped": 0, "failed": 0, "pending": 3}
    assert capsys.readouterr() == ("", "")  # the API prints nothing; the caller decides
    # the same call finds the model through DENSEVID_MODEL_DIR, as the command line does
    models = tmp_path / "models"
    models.mkdir()
    (models / MODEL_FILES["r50"]).write_bytes(Path(standin_models["tuple"]).read_bytes())
    monkeypatch.setenv("DENSEVID_MODEL_DIR", str(models))
    report = densevid.run_batch(plan.jobs, config)
    assert report.counts == {"done": 2, "skipped": 0, "failed": 1, "pending": 0}
