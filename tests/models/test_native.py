"""The native model against the TorchScript file it is built from: one frame gives the file's outputs bit for
bit (both styles, R50 and R101, float32 and the fp16 release on the CPU), a batch agrees with one frame at a
time on the labels, weights that do not map are refused with the reason, and auto picks as documented."""

from __future__ import annotations

import warnings

import pytest
import torch

from densevid.kernels import render_labels
from densevid.pipeline.core import ModelError
from densevid.pipeline.models import (
    ModelWarning,
    choose_engine,
    load_model,
    plan_precision,
    read_spec,
    save_standin,
    save_standin_rcnn,
)
from support.cases import ONE, THREE, TWO, scene
from support.helpers import BATCH_MIN_AGREEMENT, assert_labels_agree

SMALL = 0.25
FIELDS = ("boxes_xyxy", "coarse_segm", "fine_segm", "u", "v")
# a few more scenes, of the size densevid feeds the model (padded to 64): odd people, a border, nobody
SCENES = [ONE, TWO, THREE, scene([(0, 0, 200, 90, (240, 230, 220)), (30, 300, 256, 448, (90, 200, 120))]),
          scene([(100, 180, 250, 260, (255, 255, 255))], background=60), torch.zeros_like(ONE)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("native")
    return {(style, depth, dtype): save_standin_rcnn(directory / f"{style}_{depth}_{dtype}.pt", style, depth,
                                                    dtype, width=SMALL)
            for style, depth, dtype in (("tuple", 50, torch.float32), ("dict", 50, torch.float32),
                                        ("tuple", 101, torch.float32), ("dict", 101, torch.float16))}


def _same(a, b) -> None:
    assert len(a) == len(b)
    for field in FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        assert x.shape == y.shape and torch.equal(x.cpu(), y.cpu()), field


@pytest.mark.parametrize("key", [("tuple", 50, torch.float32),
                                 pytest.param(("dict", 50, torch.float32), marks=pytest.mark.slow),
                                 ("tuple", 101, torch.float32),
                                 pytest.param(("dict", 101, torch.float16), marks=pytest.mark.slow)],
                         ids=["tuple-r50", "dict-r50", "tuple-r101", "dict-r101-fp16"])
def test_one_frame_is_the_files_output_bit_for_bit(files, key):
    native = load_model(files[key], "cpu", engine="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)  # the fp16 release's float32 notice, said by the first load
        file = load_model(files[key], "cpu", engine="torchscript")
    assert native.engine == "native" and native.model_batch == 1 and file.engine == "torchscript"
    found = 0
    for image in SCENES:
        a, b = native.detect(image), file.detect(image)
        _same(a, b)
        found += len(a)
    assert found > 0  # the comparison covered detections, not only empty frames


@pytest.mark.parametrize("style", ["tuple", pytest.param("dict", marks=pytest.mark.slow)])
def test_a_batch_agrees_with_one_frame_at_a_time(files, style):
    path = files[(style, 50, torch.float32)]
    single = load_model(path, "cpu", engine="torchscript")
    batched = load_model(path, "cpu", engine="native", batch_size=8)
    assert batched.model_batch == 8
    frames = torch.stack(SCENES + SCENES[:2])  # 8 frames of one size
    batch = batched.detect_batch(frames)
    assert len(batch) == len(frames)
    for image, got in zip(frames, batch):
        expected = single.detect(image)
        assert len(got) == len(expected)
        if len(expected):
            torch.testing.assert_close(got.boxes_xyxy, expected.boxes_xyxy, rtol=1e-5, atol=1e-3)
        h, w = image.shape[:2]
        labels = [render_labels(d.boxes_xyxy, d.coarse_segm, d.fine_segm, h, w) for d in (got, expected)]
        assert_labels_agree(labels[0], labels[1], exact=False, min_agreement=BATCH_MIN_AGREEMENT)


def test_a_batch_of_one_size_is_split_where_it_does_not_fit(files):
    model = load_model(files[("tuple", 50, torch.float32)], "cpu", engine="native", batch_size=3)
    frames = torch.stack(SCENES[:5])
    single = [model.native.detect_batch(frames[i:i + 1])[0] for i in range(5)]
    assert len(model.detect_batch(frames)) == 5  # 3 + 2
    assert [len(d) for d in model.detect_batch(frames)] == [len(d) for d in single]


def test_weights_that_do_not_map_are_refused_with_the_reason(tmp_path, files):
    cheap = save_standin(tmp_path / "cheap.pt", "tuple")
    with pytest.raises(ModelError, match=r"--engine native: the file's weights are not a DensePose R-CNN .*no "
                                         r"detectron2 ResNet stem.*use --engine torchscript"):
        load_model(cheap, "cpu", engine="native")
    model = load_model(cheap, "cpu", engine="auto")
    assert model.engine == "torchscript" and model.model_batch == 1
    # another architecture: the reason names the part that does not fit
    module = torch.jit.load(str(files[("tuple", 50, torch.float32)]))
    state = module.state_dict()
    state.pop("model.roi_heads.box_head.fc2.bias")
    reason = read_spec(_StateOnly(state), "tuple", files[("tuple", 50, torch.float32)])
    assert reason == "missing model.roi_heads.box_head.fc2.bias"


class _StateOnly(torch.nn.Module):
    def __init__(self, state: dict) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args, **kwargs):
        return self._state


def test_auto_keeps_the_files_exact_output_on_the_cpu_in_float32_and_batches_elsewhere(files):
    module = torch.jit.load(str(files[("dict", 50, torch.float32)]))
    spec = read_spec(module, "dict", files[("dict", 50, torch.float32)])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    float32 = plan_precision(torch.float32, cpu)
    bfloat16 = plan_precision(torch.float32, cpu, True, native_bf16=True)
    plan = choose_engine("auto", spec, cpu, float32, 8)
    assert (plan.engine, plan.batch, plan.exact) == ("native", 1, True)  # the file's output, bit for bit
    plan = choose_engine("auto", spec, cpu, bfloat16, 8)
    assert (plan.batch, plan.exact) == (1, False)  # one frame per worker measured fastest on a CPU
    plan = choose_engine("auto", spec, cuda, plan_precision(torch.float32, cuda, True), 16)
    assert (plan.batch, plan.exact) == (16, False)
    assert choose_engine("auto", spec, cuda, plan_precision(torch.float32, cuda), 16).exact
    assert choose_engine("native", spec, cpu, float32, 4).batch == 4
    assert choose_engine("torchscript", spec, cpu, float32, 4).engine == "torchscript"


def test_settings_are_read_from_the_file(files):
    dict_spec = read_spec(torch.jit.load(str(files[("dict", 50, torch.float32)])), "dict",
                          files[("dict", 50, torch.float32)])
    assert dict_spec.depth == 50 and dict_spec.settings.score_threshold == 0.3
    assert dict_spec.settings.sources["score_threshold"] == "file"
    assert dict_spec.settings.vanilla_nms_above is not None  # the releases' torchvision loops over classes
    tuple_spec = read_spec(torch.jit.load(str(files[("tuple", 101, torch.float32)])), "tuple",
                           files[("tuple", 101, torch.float32)])
    assert tuple_spec.depth == 101 and tuple_spec.settings.score_threshold == 0.05
    assert tuple_spec.settings.sources["score_threshold"] == "file"  # from the traced code's constant
    assert tuple_spec.settings.sources["rpn_nms"] == "published config"
    assert tuple_spec.settings.vanilla_nms_above is None  # traced: always the coordinate offsets
    r50_tuple = read_spec(torch.jit.load(str(files[("tuple", 50, torch.float32)])), "tuple",
                          files[("tuple", 50, torch.float32)])
    assert set(r50_tuple.weights) == set(dict_spec.weights)  # the releases' aliases dropped: upstream's keys


@pytest.mark.slow
@pytest.mark.parametrize("style", ["tuple", "dict"])
def test_full_size_r50_one_frame_is_the_files_output(tmp_path, style):
    path = save_standin_rcnn(tmp_path / f"{style}.pt", style, 50)
    native, file = load_model(path, "cpu"), load_model(path, "cpu", engine="torchscript")
    assert native.engine == "native"
    image = torch.nn.functional.pad(THREE, (0, 0, 0, 64, 0, 64), value=40)  # 320 x 512, padded like the node's
    _same(native.detect(image), file.detect(image))


def test_the_faster_form_agrees_with_the_file(files):
    """FrozenBN folded into the convolutions and channels-last (what --half runs on the CPU, and CUDA): the
    last bits round otherwise, the labels agree within the batch tolerance."""
    from densevid.pipeline.models import NativeRunner

    path = files[("tuple", 50, torch.float32)]
    file = load_model(path, "cpu", engine="torchscript")
    fast = load_model(path, "cpu", engine="torchscript")
    spec = read_spec(fast.module, "tuple", path)
    fast.native = NativeRunner(spec, torch.device("cpu"), fast.precision, 1, exact=False)
    for image in SCENES:
        got, expected = fast.detect(image), file.detect(image)
        assert len(got) == len(expected)
        h, w = image.shape[:2]
        labels = [render_labels(d.boxes_xyxy, d.coarse_segm, d.fine_segm, h, w) for d in (got, expected)]
        assert_labels_agree(labels[0], labels[1], exact=False, min_agreement=BATCH_MIN_AGREEMENT)


def test_roi_align_split_between_threads_is_the_one_calls_result():
    from densevid.pipeline.models._native_rcnn import roi_align

    generator = torch.Generator().manual_seed(5)
    features = torch.randn(2, 8, 40, 36, generator=generator)
    boxes = torch.rand(301, 4, generator=generator) * 100
    boxes[:, 2:] += boxes[:, :2]
    rois = torch.cat([torch.randint(0, 2, (301, 1), generator=generator).float(), boxes], 1)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = roi_align(features, rois, 0.25, 7)
        torch.set_num_threads(3)
        split = roi_align(features, rois, 0.25, 7)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, split) and one.shape == (301, 8, 7, 7)
    half = roi_align(features.bfloat16(), rois, 0.25, 7)  # pooled in float32, as torchvision's autocast does
    expected = torch.ops.torchvision.roi_align(features.bfloat16().float(), rois, 0.25, 7, 7, 2, False)
    assert half.dtype == torch.bfloat16 and torch.equal(half, expected.bfloat16())


def test_a_batch_that_runs_out_of_memory_is_halved_and_one_frame_that_does_is_one_line(files, monkeypatch):
    model = load_model(files[("tuple", 50, torch.float32)], "cpu", engine="native", batch_size=4)
    runner = model.native
    real = runner._run
    sizes = []

    def tight(frames):  # room for two frames at a time, as a GPU might have
        sizes.append(len(frames))
        if len(frames) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(frames)

    monkeypatch.setattr(runner, "_run", tight)
    frames = torch.stack(SCENES[:5])
    assert [len(d) for d in model.detect_batch(frames)] == [len(model.native.network.forward(
        runner._input(frames[i:i + 1]))[0][0]) for i in range(5)]
    assert sizes == [4, 2, 2, 1] and runner.batch == 2  # halved once, kept for the next batches

    def none_fits(frames):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(runner, "_run", none_fits)
    with pytest.raises(ModelError, match=r"^the native model ran out of memory on cpu with one frame of 448x256: "
                                         r"lower --resolution, free GPU memory, or use --device cpu$"):
        model.detect_batch(frames[:1])


@pytest.mark.slow
def test_real_frames_give_the_files_labels(tmp_path):
    """The default engine (native, one frame per call, float32) on frames of the real dance video: the same
    part labels as the TorchScript file it is built from, pixel for pixel (skipped without the video)."""
    import av
    import numpy as np

    from densevid import DensePoseEstimator
    from support.helpers import SHARED_DATA

    video = SHARED_DATA / "dance_576x1024.mp4"
    if not video.is_file():
        pytest.skip(f"the real dance video is not in {SHARED_DATA} (benchmark data beside the repository)")
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(video=0)) if i % 60 == 0][:4]
    path = save_standin_rcnn(tmp_path / "r50.pt", "tuple", 50)
    native = DensePoseEstimator(str(path), device="cpu", engine="auto")
    file = DensePoseEstimator(str(path), device="cpu", engine="torchscript")
    assert native.model.engine == "native" and file.model.engine == "torchscript"
    background = np.array([68, 1, 84], dtype=np.uint8)
    people = 0
    for image in frames:
        a, b = native(image), file(image)
        assert a.shape == b.shape and np.array_equal(a, b)
        people += int((a != background).any(axis=-1).sum())
    assert people > 0  # the stand-in found the dancer somewhere: the comparison covered parts, not background
