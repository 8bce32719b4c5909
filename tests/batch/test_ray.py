"""`densevid encode --ray` on a local Ray instance (CPU actors) behaves exactly as the local run.

One Ray run covers: the same outputs, pixel for pixel (lossless), the same report (apart from the
seconds), a corrupt input failing alone, and the retry policy (a worker killed mid-video has the
video redone by a fresh actor; a video that kills its worker every time fails after MAX_ATTEMPTS,
and the dead workers' temporary files are removed). Ray is in the `test` extra: this runs in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from support.clips import make_clip, synthetic_frames
from support.helpers import decode_all, run_cli

pytest.importorskip("ray", reason='needs the ray extra: pip install -e ".[test]"')
pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]


def _comparable(report: dict, out_dir: Path) -> dict:
    """The report without timings, outputs relative to their output directory."""
    report = json.loads(json.dumps(report))
    report.pop("seconds")
    for entry in report["inputs"]:
        entry.pop("seconds")
        entry["output"] = Path(entry["output"]).relative_to(out_dir).as_posix()
    return report


@pytest.mark.slow
def test_ray_gives_the_local_outputs_and_report_and_retries_dead_workers(tmp_path, standin_models):
    from densevid.pipeline.batch import MAX_ATTEMPTS

    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    make_clip(videos / "a.mkv", synthetic_frames(4, 48, 64, seed=1))
    make_clip(videos / "sub" / "b.mkv", synthetic_frames(5, 40, 40, seed=2))
    (videos / "broken.mp4").write_text("not a video\n" * 20)
    common = ["--model", standin_models["tuple"], "--resolution", "64", "--lossless", "--device", "cpu"]

    # the local run is the reference
    local_out, local_report = tmp_path / "local", tmp_path / "local.json"
    assert run_cli(videos, "-o", local_out, "--report", local_report, *common).exit_code == 1

    # the Ray run, with two extra inputs that kill their worker: once, and every time
    shutil.copy(videos / "a.mkv", videos / "dies_once.mkv")
    shutil.copy(videos / "a.mkv", videos / "dies_always.mkv")
    kills = tmp_path / "kills"
    kills.mkdir()
    ray_out, ray_report = tmp_path / "ray", tmp_path / "ray.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_DEDUP_LOGS="0")
    dying = [sys.executable, str(ROOT / "tests" / "support" / "dying_ray_worker.py"), str(kills),
             "dies_once.mkv=1,dies_always.mkv=99"]
    proc = subprocess.run([*dying, "encode", str(videos), "-o", str(ray_out), "--report", str(ray_report), "--ray",
                           "--ray-actors", "2", "--quiet", *map(str, common)],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=240)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("densevid: error:")]
    assert len(errors) == 2 and "broken.mp4" in errors[0], proc.stderr
    assert errors[1] == (f"densevid: error: {videos / 'dies_always.mkv'}: "
                         f"the Ray worker encoding it died {MAX_ATTEMPTS} times")

    data = json.loads(ray_report.read_text())
    by_name = {Path(e["input"]).name: e for e in data["inputs"]}
    # retried on a fresh actor after its worker died mid-video: done, same pixels as a.mkv
    assert by_name["dies_once.mkv"]["status"] == "done" and by_name["dies_once.mkv"]["frames"] == 4
    assert sorted(p.name for p in kills.iterdir()) == ["dies_always.mkv.0", "dies_always.mkv.1",
                                                       "dies_always.mkv.2", "dies_once.mkv.0"]
    assert by_name["dies_always.mkv"]["status"] == "failed"
    np.testing.assert_array_equal(decode_all(ray_out / "dies_once_densepose.mkv")[0],
                                  decode_all(local_out / "a_densepose.mkv")[0])
    # the dead workers' temporary files are gone; no output for the video that always failed
    assert [p for p in ray_out.rglob("*") if ".partial" in p.name] == []
    assert not (ray_out / "dies_always_densepose.mkv").exists()

    # apart from the two extra inputs: the local run's outputs and report
    local = _comparable(json.loads(local_report.read_text()), local_out)
    ray_data = _comparable(data, ray_out)
    ray_data["inputs"] = [e for e in ray_data["inputs"] if not Path(e["input"]).name.startswith("dies_")]
    ray_data["counts"] = {"done": ray_data["counts"]["done"] - 1, "skipped": 0,
                          "failed": ray_data["counts"]["failed"] - 1, "pending": 0}
    assert ray_data == local
    for rel in ("a_densepose.mkv", "sub/b_densepose.mkv"):
        np.testing.assert_array_equal(decode_all(ray_out / rel)[0], decode_all(local_out / rel)[0])

    # resume on Ray: everything finished is skipped by the driver, without starting Ray
    for name in ("dies_always.mkv", "broken.mp4"):
        (videos / name).unlink()
    env["RAY_ADDRESS"] = "127.0.0.1:1"  # nothing listens there: proves Ray is never contacted
    proc = subprocess.run([sys.executable, "-m", "densevid.pipeline.cli", "encode", str(videos), "-o", str(ray_out),
                           "--report", str(ray_report), "--ray", "auto", "--quiet", *map(str, common)],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [e["status"] for e in json.loads(ray_report.read_text())["inputs"]] == ["skipped", "skipped", "skipped"]


@pytest.mark.slow
def test_ray_sigterm_stops_cleanly(tmp_path, standin_models):
    """A pre-empted driver: exit 130, the report, no temporary file (Ray's own SIGTERM handler is not kept)."""
    import signal
    import time

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mkv", "b.mkv"):
        # long enough that the signal lands mid-video however fast the render gets
        make_clip(videos / name, synthetic_frames(150, 128, 128, black_every=0))
    out, report = tmp_path / "o", tmp_path / "report.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "densevid.pipeline.cli", "encode", str(videos), "-o", str(out),
                             "--report", str(report), "--ray", "--quiet", "--model", str(standin_models["tuple"]),
                             "--resolution", "128", "--lossless", "--batch-size", "1", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path))
    deadline = time.monotonic() + 90
    while not list(out.glob(".*.partial.mkv")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no video started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().startswith("densevid: error: interrupted;") and stderr.strip().count("\n") == 0, stderr
    assert [p for p in out.iterdir() if ".partial" in p.name] == []
    data = json.loads(report.read_text())
    assert data["interrupted"] is True
    statuses = [e["status"] for e in data["inputs"]]
    assert "pending" in statuses and set(statuses) <= {"pending", "done"}
    # what the report calls done exists, complete; nothing else does
    done = {Path(e["output"]).name for e in data["inputs"] if e["status"] == "done"}
    assert {p.name for p in out.iterdir()} == done
