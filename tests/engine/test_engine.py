"""The engine (pipeline/engine): one config per call, output checks once per job, sinks, model
workers, frames in memory."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from densevid import ConfigError, DensePoseEstimator, EncodeConfig, InputError, OutputError, encode_video, render_frames
from densevid.pipeline import batch as _batch
from densevid.pipeline.batch import build_plan
from densevid.pipeline.engine import CPU_MAX_WORKERS, CUDA_WORKERS, WorkerPlan, cpu_threads, plan_workers
from densevid.pipeline.io import _sinks
from support.clips import make_clip, make_image, synthetic_frames
from support.helpers import assert_exact, decode_all, labels_from_hint, run_cli
from support.node_reference import node_hint


@pytest.fixture(scope="module")
def clip_and_frames(tmp_path_factory):
    frames = synthetic_frames(4, 72, 40, seed=3)
    return make_clip(tmp_path_factory.mktemp("engine") / "clip.mkv", frames), frames


def test_the_calls_config_decides_every_setting_for_video_and_image(tmp_path, standin_models, tuple_model,
                                                                     clip_and_frames):
    clip, frames = clip_and_frames
    image = make_image(tmp_path / "still.png", frames[1])
    estimator = DensePoseEstimator(str(standin_models["tuple"]), cmap="viridis", resolution=128, device="cpu")
    config = EncodeConfig(model=str(standin_models["tuple"]), cmap="parula", resolution=64, lossless=True,
                          device="cpu")
    video_workers = encode_video(clip, tmp_path / "v.mkv", estimator, config=config).workers
    assert video_workers == plan_workers(torch.device("cpu"), None, frames=4).workers
    assert encode_video(image, tmp_path / "i.png", estimator, config=config).workers == 1
    video, _ = decode_all(tmp_path / "v.mkv")
    still, _ = decode_all(tmp_path / "i.png")
    assert video.shape[1:] == still.shape[1:] == (115, 64, 3)  # both at the call's resolution (64), not 128
    for frame, hint in zip(frames, video):  # and in the call's colormap, not the estimator's
        assert_exact(torch.from_numpy(hint), torch.from_numpy(node_hint(frame, tuple_model, "parula", 64)))
    assert_exact(torch.from_numpy(still[0]), torch.from_numpy(node_hint(frames[1], tuple_model, "parula", 64)))
    labels_from_hint(still[0], "parula")
    assert estimator.config.cmap == "viridis"  # the estimator itself is untouched


def test_output_paths_are_checked_once_per_job(tmp_path, standin_models, clip_and_frames, monkeypatch):
    clip, _ = clip_and_frames
    calls = []
    real = _sinks.check_targets
    monkeypatch.setattr(_sinks, "check_targets", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    monkeypatch.setattr("densevid.pipeline.engine._run.check_targets", _sinks.check_targets)
    config = EncodeConfig(model=str(standin_models["tuple"]), resolution=64, lossless=True, device="cpu",
                          frames_dir=tmp_path / "png", iuv_path=tmp_path / "a.npz")
    plan = build_plan([str(clip)], output=tmp_path / "o.mkv", config=config)
    report = _batch.run_batch(plan.jobs, config)
    assert report.counts["done"] == 1, report.to_dict()
    assert calls == [clip]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "o.mkv", "png"]


def test_a_failing_extra_output_leaves_no_output_at_all(tmp_path, standin_models, clip_and_frames, monkeypatch):
    """The sinks close extras first and the hint last: a failed close aborts what is left."""
    clip, _ = clip_and_frames
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")

    def broken_close(self):
        raise OutputError("cannot write the IUV file: disk full")

    monkeypatch.setattr(_sinks._Iuv, "close", broken_close)
    config = EncodeConfig(resolution=64, lossless=True, frames_dir=tmp_path / "png", iuv_path=tmp_path / "a.npz")
    with pytest.raises(OutputError, match="disk full"):
        encode_video(clip, tmp_path / "o.mkv", estimator, config=config)
    # the IUV writer's own temporary files are the broken close's business; everything else is gone
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".a.")]


def test_sinks_get_batches_in_output_order(tmp_path):
    """OutputBatch rows go to every sink in order; an abort removes every temporary file."""
    targets = _sinks.OutputTargets(tmp_path / "h.mkv", False, frames_dir=tmp_path / "f", iuv=tmp_path / "i.npz")
    config = EncodeConfig(lossless=True)
    hints = np.random.default_rng(0).integers(0, 255, (3, 6, 4, 3), dtype=np.uint8)
    iuv = (np.zeros((3, 6, 4), np.uint8), np.zeros((3, 6, 4), np.float16), np.ones((3, 6, 4), np.float16))
    with _sinks.open_sinks(targets, config, (6, 4), time_base=Fraction(1, 25), fps_hint=None) as sinks:
        sinks.write(_sinks.OutputBatch(hints[:2], (0, 1), iuv=tuple(a[:2] for a in iuv)))
        sinks.write(_sinks.OutputBatch(hints[2:], (5,), iuv=tuple(a[2:] for a in iuv)))
    video, seconds = decode_all(tmp_path / "h.mkv")
    assert np.array_equal(video, hints) and seconds == [0.0, 0.04, 0.2]
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert np.load(tmp_path / "i.npz")["pts_seconds"].tolist() == [0.0, 0.04, 0.2]
    sinks = _sinks.open_sinks(targets, EncodeConfig(lossless=True, overwrite=True), (6, 4), Fraction(1, 25), None)
    sinks.write(_sinks.OutputBatch(hints, (0, 1, 2), iuv=iuv))
    sinks.abort()
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]




# --- model workers ----------------------------------------------------------------------------------


class Staggered:
    """Wraps DensePoseModel.detect, recording how many calls overlap and the order they finish in.

    ``hold``: the first call made by a model worker returns only once a later call has finished, so
    that with several workers frames surely finish out of order. ``fail_at``: that call raises.
    """

    def __init__(self, monkeypatch, hold: bool = False, fail_at: int | None = None, on_call=None) -> None:
        from densevid.pipeline.models import DensePoseModel

        self.lock = threading.Lock()
        self.started, self.active, self.most_active, self.finished = 0, 0, 0, []
        self.held: int | None = None
        self.later_done = threading.Event()
        real = DensePoseModel.detect

        def detect(model, image):
            with self.lock:
                index = self.started
                self.started += 1
                self.active += 1
                self.most_active = max(self.most_active, self.active)
                if hold and self.held is None and threading.current_thread().name.startswith("densevid-model"):
                    self.held = index
            try:
                if on_call is not None:
                    on_call(index)
                if index == fail_at:
                    raise RuntimeError("the model broke on this frame")
                out = real(model, image)
                if index == self.held:
                    assert self.later_done.wait(timeout=60), "no later frame finished while the first was held"
                return out
            finally:
                with self.lock:
                    self.active -= 1
                    self.finished.append(index)
                    if self.held is not None and index > self.held:
                        self.later_done.set()

        monkeypatch.setattr(DensePoseModel, "detect", detect)

    @property
    def out_of_order(self) -> bool:
        return self.finished != sorted(self.finished)


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    """14 frames at uneven times starting at 0.1 s (variable frame rate), 40x56."""
    frames = synthetic_frames(14, 40, 56, seed=5)
    pts = [100, 140, 180, 260, 300, 310, 380, 420, 500, 540, 580, 600, 660, 700]  # milliseconds
    return make_clip(tmp_path_factory.mktemp("vfr") / "vfr.mkv", frames, fps=25, pts=pts,
                     time_base=Fraction(1, 1000))


OUTPUT_PATHS = {
    "plain": [],
    "fps": ["--fps", "30"],  # drops and repeats
    "smooth": ["--smooth", "3"],
    "pad": ["--size", "64", "--fit", "pad"],
    "iuv+fps": ["--iuv", "{tmp}/iuv.npz", "--fps", "12"],
    "frames+preview+crop": ["--frames", "{tmp}/png", "--preview", "{tmp}/preview.mp4", "--size", "64"],
}


def _outputs(directory: Path) -> dict:
    """Everything a run wrote, decoded: the hint video's frames and times, PNGs, IUV arrays."""
    found = {}
    video, seconds = decode_all(directory / "out.mkv")
    found["video"], found["seconds"] = video, seconds
    if (directory / "png").exists():
        found["png"] = [decode_all(p)[0] for p in sorted((directory / "png").iterdir())]
    if (directory / "iuv.npz").exists():
        found.update({f"iuv_{k}": v for k, v in np.load(directory / "iuv.npz").items()})
    if (directory / "preview.mp4").exists():
        found["preview_seconds"] = decode_all(directory / "preview.mp4")[1]
    return found


@pytest.mark.parametrize("name", list(OUTPUT_PATHS))
def test_outputs_are_identical_for_every_worker_count(tmp_path, standin_models, vfr_clip, monkeypatch, name):
    results = {}
    for workers in (1, 2, 3):
        directory = tmp_path / f"w{workers}"
        directory.mkdir()
        args = [a.replace("{tmp}", str(directory)) for a in OUTPUT_PATHS[name]]
        staggered = Staggered(monkeypatch, hold=workers > 1)
        result = run_cli(vfr_clip, "-o", directory / "out.mkv", "--lossless", "--model", standin_models["tuple"],
                         "--device", "cpu", "--resolution", "64", "--batch-size", "3", "--workers", workers, *args)
        assert result.exit_code == 0, result.output
        if workers > 1:  # the workers really ran frames side by side and finished them out of order
            assert staggered.most_active >= 2 and staggered.out_of_order, (staggered.most_active, staggered.finished)
        results[workers] = _outputs(directory)
    reference = results[1]
    assert len(reference["video"]) >= 7
    for workers in (2, 3):
        assert results[workers].keys() == reference.keys()
        for key, value in reference.items():
            assert np.array_equal(np.asarray(results[workers][key]), np.asarray(value)), (workers, key)


def _run_threads() -> list:
    """The threads of a run still alive (the process-wide pools, "densevid-pool-*", idle between runs, are not)."""
    return [t for t in threading.enumerate()
            if t.name.startswith("densevid-") and not t.name.startswith("densevid-pool-")]


@pytest.mark.parametrize("slow_sink", [False, True])
def test_a_failing_worker_stops_the_others_and_leaves_nothing(tmp_path, standin_models, vfr_clip, monkeypatch,
                                                              slow_sink):
    if slow_sink:  # the encoder's queue is full: the caller's thread waits to hand it a batch when the model fails
        real_write = _sinks._HintVideo.write
        monkeypatch.setattr(_sinks._HintVideo, "write", lambda self, batch: time.sleep(0.5) or real_write(self, batch))
    staggered = Staggered(monkeypatch, fail_at=6)  # the probe is call 0
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")
    config = EncodeConfig(resolution=64, lossless=True, workers=3, batch_size=1, iuv_path=tmp_path / "a.npz")
    with pytest.raises(RuntimeError, match="the model broke"):
        encode_video(vfr_clip, tmp_path / "o.mkv", estimator, config=config)
    assert list(tmp_path.iterdir()) == []
    assert staggered.started < 14  # the others stopped instead of finishing the video
    assert not _run_threads()


def test_ctrl_c_stops_the_workers_and_removes_temporary_files(tmp_path, standin_models, vfr_clip, monkeypatch):
    import _thread

    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")
    Staggered(monkeypatch, on_call=lambda index: index == 5 and _thread.interrupt_main())
    with pytest.raises(KeyboardInterrupt):
        encode_video(vfr_clip, tmp_path / "o.mkv", estimator,
                     config=EncodeConfig(resolution=64, lossless=True, workers=2, frames_dir=tmp_path / "png"))
    assert list(tmp_path.iterdir()) == []
    assert not _run_threads()


def test_worker_plan_splits_the_cpu_threads_and_restores_the_callers():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert plan_workers(cpu, None, budget=2) == WorkerPlan(2, 1)
    assert plan_workers(cpu, None, budget=1) == WorkerPlan(1, 1)
    assert plan_workers(cpu, None, budget=16) == WorkerPlan(CPU_MAX_WORKERS, 16 // CPU_MAX_WORKERS)
    assert plan_workers(cpu, 1, budget=2) == WorkerPlan(1, 2)
    assert plan_workers(cpu, 3, budget=2) == WorkerPlan(3, 1)
    assert plan_workers(cuda, None) == WorkerPlan(CUDA_WORKERS, None)
    assert plan_workers(cuda, 4) == WorkerPlan(4, None)
    # no more workers than frames, unless asked: an image gets one worker with every thread
    assert plan_workers(cpu, None, budget=2, frames=1) == WorkerPlan(1, 2)
    assert plan_workers(cuda, None, frames=3) == WorkerPlan(3, None)
    assert plan_workers(cpu, 2, budget=2, frames=1) == WorkerPlan(2, 1)
    # torch.set_num_threads in a worker thread sizes that thread only; the run restores the default
    previous = torch.get_num_threads()
    seen = {}
    with cpu_threads(WorkerPlan(2, 1)):
        def set_and_read() -> None:
            torch.set_num_threads(1)
            seen.update(worker=torch.get_num_threads())

        worker = threading.Thread(target=set_and_read)
        worker.start()
        worker.join()
        seen["caller"] = torch.get_num_threads()
    fresh = threading.Thread(target=lambda: seen.update(fresh=torch.get_num_threads()))
    fresh.start()
    fresh.join()
    assert seen == {"worker": 1, "caller": 1, "fresh": previous} and torch.get_num_threads() == previous


# --- frames in memory ---------------------------------------------------------------------------------


def test_render_frames_gives_the_nodes_hints_in_order(standin_models, tuple_model, monkeypatch):
    frames = synthetic_frames(9, 50, 36, seed=8)
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")
    staggered = Staggered(monkeypatch, hold=True)
    done = []
    hints = list(render_frames(estimator, iter(frames), EncodeConfig(resolution=64, workers=3, batch_size=4),
                               progress=done.append))
    assert staggered.out_of_order and sum(done) == 9 and len(hints) == 9
    for frame, hint in zip(frames, hints):
        assert_exact(torch.from_numpy(hint), torch.from_numpy(node_hint(frame, tuple_model, "viridis", 64)))
    # a [B, H, W, 3] tensor's rows work too, and the smoothed labels equal those of a lossless video
    smoothed = list(render_frames(estimator, torch.from_numpy(frames), EncodeConfig(resolution=64, smooth=3)))
    assert [h.shape for h in smoothed] == [h.shape for h in hints] and not all(
        np.array_equal(a, b) for a, b in zip(smoothed, hints))


def test_render_frames_smoothing_equals_the_video_path(tmp_path, standin_models):
    frames = synthetic_frames(7, 48, 40, seed=9)
    clip = make_clip(tmp_path / "c.mkv", frames)
    estimator = DensePoseEstimator(str(standin_models["tuple"]), device="cpu")
    config = EncodeConfig(resolution=64, smooth=3, size=64, fit="pad", lossless=True, workers=2)
    encode_video(clip, tmp_path / "o.mkv", estimator, config=config)
    video, _ = decode_all(tmp_path / "o.mkv")
    assert np.array_equal(np.stack(list(render_frames(estimator, frames, replace(config, lossless=False)))), video)


def test_render_frames_reads_lazily_and_stops_on_cancel(standin_models):
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")
    pulled = []

    def stream():
        for i, frame in enumerate(synthetic_frames(40, 32, 32, seed=1, black_every=0)):
            pulled.append(i)
            yield frame

    config = EncodeConfig(resolution=64, workers=2, batch_size=2)
    ahead = []
    for n, _ in enumerate(render_frames(estimator, stream(), config), 1):
        ahead.append(len(pulled) - n)
    # frames read but not yet returned: the permits (2 per worker), the one waiting for a permit,
    # the batch being assembled and the batch being returned
    assert len(ahead) == 40 and max(ahead) <= 2 * 2 + 1 + 2 * 2

    class Cancelled(Exception):
        pass

    def cancel_check():
        if len(pulled) > 10:
            raise Cancelled

    pulled.clear()
    with pytest.raises(Cancelled):
        list(render_frames(estimator, stream(), config, cancel_check=cancel_check))
    assert len(pulled) < 40
    assert not _run_threads()


def test_render_frames_refuses_what_it_cannot_do(standin_models):
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cpu")
    frames = synthetic_frames(3, 32, 32)
    with pytest.raises(InputError, match=r"^frame 2 is 40x32 but frame 0 is 32x32: all frames must have one size$"):
        list(render_frames(estimator, [frames[0], frames[1], np.zeros((32, 40, 3), np.uint8)]))
    with pytest.raises(InputError, match=r"^frame 0 is float32 \[32, 32, 3\]; expected a uint8 RGB"):
        list(render_frames(estimator, [frames[0].astype(np.float32)]))
    with pytest.raises(ConfigError, match="fps, frames_dir, preview_path and iuv_path need a video file"):
        list(render_frames(estimator, frames, EncodeConfig(fps=25)))
    assert list(render_frames(estimator, [])) == []


# --- on a GPU -----------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("half", [False, True])
def test_on_cuda_every_worker_count_gives_the_per_frame_hints(tmp_path, standin_models, vfr_clip, half):
    frames, _ = decode_all(vfr_clip)
    estimator = DensePoseEstimator(str(standin_models["tuple"]), resolution=64, device="cuda", half=half)
    expected = np.stack([estimator.hint(frame).cpu().numpy() for frame in frames])
    for workers in (1, 4):
        config = replace(estimator.config, lossless=True, workers=workers, overwrite=True, batch_size=3)
        result = encode_video(vfr_clip, tmp_path / "o.mkv", estimator, config=config)
        video, _ = decode_all(tmp_path / "o.mkv")
        assert np.array_equal(video, expected), workers
        stages = result.stage_seconds  # device time of the model calls: the union of overlapping calls <= their sum
        assert 0 < stages["model_gpu"] <= stages["model_gpu_sum"] + 1e-6
        assert np.array_equal(np.stack(list(render_frames(estimator, frames, config))), expected)
