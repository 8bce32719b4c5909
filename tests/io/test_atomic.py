"""Outputs appear whole, durably, and nothing is left behind: fsync -> rename -> fsync of the directory for every
writer; a SIGKILLed run's partial files are removed by the next run; a live run's partial never is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from densevid.pipeline.batch import BatchReport, InputResult
from densevid.pipeline.io import (
    FramesDirWriter,
    IuvWriter,
    Partial,
    VideoWriter,
    _atomic,
    remove_stale_partials,
    write_png,
)
from support.clips import make_clip, synthetic_frames
from support.helpers import run_cli

FRAMES = np.zeros((2, 8, 10, 3), np.uint8)


def _partials(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial" in p.name)


@pytest.fixture
def disk_events(monkeypatch):
    """Every fsync (of a path) and every rename/link into place, in order."""
    events = []
    real_fsync = _atomic.fsync_path
    monkeypatch.setattr(_atomic, "fsync_path", lambda path: events.append(("fsync", Path(path))) or real_fsync(path))
    for name in ("link", "replace", "rename"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda src, dst, _real=real, _name=name, **kw:
                            events.append((_name, Path(src), Path(dst))) or _real(src, dst, **kw))
    return events


def _check_durable_commit(events, final: Path) -> None:
    """The data is flushed before it gets its final name, and the directory entry after."""
    moves = [i for i, e in enumerate(events) if e[0] != "fsync" and e[2] == final]
    assert len(moves) == 1, events
    move = moves[0]
    partial = events[move][1]
    assert partial.name.startswith(f".{final.stem}.") and ".partial" in partial.name
    assert ("fsync", partial) in events[:move], events
    assert ("fsync", final.parent) in events[move + 1:], events


def test_video_writer_commits_durably(tmp_path, disk_events):
    out = tmp_path / "hint.mkv"
    with VideoWriter(out, 10, 8, Fraction(1, 25), lossless=True) as writer:
        writer.write(FRAMES, [0, 1])
    _check_durable_commit(disk_events, out)
    assert _partials(tmp_path) == []


def test_png_iuv_and_report_commit_durably(tmp_path, disk_events):
    png = write_png(tmp_path / "hint.png", FRAMES[0])
    _check_durable_commit(disk_events, png)
    with IuvWriter(tmp_path / "iuv.npz", 8, 10) as iuv:
        iuv.write(np.zeros((1, 8, 10), np.uint8), np.zeros((1, 8, 10), np.float16), np.zeros((1, 8, 10), np.float16),
                  [0.0])
    _check_durable_commit(disk_events, tmp_path / "iuv.npz")
    report = BatchReport([InputResult("a.mp4", "a_densepose.mp4", "done", frames=1)])
    report.write(tmp_path / "report.json")
    _check_durable_commit(disk_events, tmp_path / "report.json")
    assert _partials(tmp_path) == []


def test_frames_directory_flushes_every_png_then_moves_the_directory(tmp_path, disk_events):
    target = tmp_path / "frames"
    with FramesDirWriter(target) as frames:
        frames.write(FRAMES)
    move = next(i for i, e in enumerate(disk_events) if e[0] == "rename" and e[2] == target)
    partial = disk_events[move][1]
    flushed = [e[1] for e in disk_events[:move] if e[0] == "fsync"]
    assert [partial / "000000.png", partial / "000001.png", partial] == flushed
    assert ("fsync", tmp_path) in disk_events[move + 1:]
    assert sorted(p.name for p in target.iterdir()) == ["000000.png", "000001.png"]


_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from fractions import Fraction
    import numpy as np
    from densevid.pipeline.io import VideoWriter
    writer = VideoWriter(sys.argv[1], 10, 8, Fraction(1, 25), lossless=True)
    writer.write(np.zeros((3, 8, 10, 3), np.uint8), [0, 1, 2])
    print(writer.temp_path, flush=True)
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a pre-empted spot worker would
    sys.stdin.read()  # "live": hold the partial until told to go
""")


def _writer_process(out: Path, mode: str) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(out), mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    partial = Path(proc.stdout.readline().strip())
    assert partial.is_file(), partial
    return proc, partial


def _age(path: Path, seconds: float = 60.0) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_killed_runs_partial_is_removed_by_the_next_writer_of_that_output(tmp_path):
    out = tmp_path / "hint.mkv"
    proc, partial = _writer_process(out, "kill")
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert partial.exists() and not out.exists()  # what SIGKILL leaves: the partial, no output
    other = tmp_path / ".hint_other.0123abcd.partial.mkv"  # another output's partial name: not ours to remove
    other.write_bytes(b"x")
    _age(partial)
    _age(other)
    with VideoWriter(out, 10, 8, Fraction(1, 25), lossless=True) as writer:
        writer.write(FRAMES, [0, 1])
    assert not partial.exists() and other.exists() and out.is_file()


def test_a_live_runs_partial_is_never_removed(tmp_path):
    out = tmp_path / "hint.mkv"
    proc, partial = _writer_process(out, "live")
    try:
        _age(partial)  # old, but its writer holds the lock
        assert remove_stale_partials(out) == []
        with VideoWriter(out, 10, 8, Fraction(1, 25), lossless=True, overwrite=True) as writer:
            writer.write(FRAMES, [0, 1])
        assert partial.exists()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert not partial.exists()  # a writer that ends without committing removes its own partial


def test_a_fresh_unlocked_partial_is_left_for_a_moment(tmp_path):
    """A writer is between creating its partial and locking it for microseconds: a partial younger than
    STALE_AFTER_SECONDS is never taken for stale, even unlocked."""
    out = tmp_path / "hint.mp4"
    fresh = tmp_path / ".hint.89abcdef.partial.mp4"
    fresh.write_bytes(b"x")
    assert remove_stale_partials(out) == [] and fresh.exists()
    assert remove_stale_partials(out, min_age_seconds=0) == [fresh]


def test_partial_discard_and_a_directory_partial(tmp_path):
    partial = Partial(tmp_path / "frames", directory=True)
    (partial.path / "000000.png").write_bytes(b"png")
    partial.discard()
    assert _partials(tmp_path) == []


@pytest.mark.slow
def test_a_batch_killed_with_sigkill_resumes_and_leaves_no_partial_file(tmp_path, standin_models):
    """The reported case: kill -9 during a batch, then the same command again: every output complete and
    resumed, and the killed run's hidden partial file is gone."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        make_clip(videos / f"v{i}.mkv", synthetic_frames(60 if i == 1 else 3, 96, 96, seed=i, black_every=0))
    out = tmp_path / "hints"
    args = ["encode", str(videos), "-o", str(out), "--model", str(standin_models["tuple"]), "--resolution", "128",
            "--lossless", "--batch-size", "1", "--device", "cpu", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "densevid.pipeline.cli", *args], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob(".v1_densepose.*.partial.mkv")):
        assert proc.poll() is None and time.monotonic() < deadline, "the second video never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    [partial] = list(out.glob(".v1_densepose.*.partial.mkv"))
    _age(partial)
    result = run_cli(*args[1:])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["v0_densepose.mkv", "v1_densepose.mkv", "v2_densepose.mkv"]
