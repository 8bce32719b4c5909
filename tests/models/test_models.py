"""Model resolution, loading, style detection, contract checks, and the stand-in models themselves."""

from __future__ import annotations

import runpy
import sys

import pytest
import torch

from densevid.pipeline import models as _models
from densevid.pipeline.core import ModelError, one_line
from densevid.pipeline.models import (
    MODEL_FILES,
    MODEL_REPO,
    DensePoseModel,
    ModelWarning,
    _ops,
    build_standin,
    load_model,
    resolve_model_path,
)
from support.cases import ONE, THREE, TWO, H, W, scene
from support.helpers import REPO_ROOT, populate_hub_cache, use_private_hf_home


def _tuple_run(model, image_hwc):
    with torch.inference_mode():
        return model(image_hwc.permute(2, 0, 1))


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


# --- the stand-ins ---------------------------------------------------------------------------------

@pytest.mark.parametrize("image", [torch.zeros((H, W, 3), dtype=torch.uint8),
                                   torch.full((H, W, 3), 128, dtype=torch.uint8)], ids=["black", "uniform"])
def test_standin_empty_frame_has_nobody(tuple_model, image):
    boxes, coarse, fine, u, v = _tuple_run(tuple_model, image)
    assert boxes.shape == (0, 4) and boxes.dtype == torch.float32
    assert coarse.shape == (0, 2, 112, 112)
    assert fine.shape == u.shape == v.shape == (0, 25, 112, 112)


@pytest.mark.parametrize("image,expected", [(ONE, 1), (TWO, 2), (THREE, 3)], ids=["one", "two", "three"])
def test_standin_people_follow_content(tuple_model, image, expected):
    boxes, coarse, fine, u, v = _tuple_run(tuple_model, image)
    assert boxes.shape[0] == expected
    assert boxes.dtype == coarse.dtype == fine.dtype == u.dtype == v.dtype == torch.float32
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes != boxes.round()).any(), "boxes should have fractional coordinates"
    # a clear person/background split inside each box, and several parts
    for i in range(expected):
        foreground = coarse[i].argmax(0) > 0
        assert 0.3 < foreground.float().mean() < 0.9
        assert fine[i].argmax(0)[foreground].unique().numel() >= 8


def test_standin_boxes_overlap_and_reach_the_border(tuple_model):
    boxes = _tuple_run(tuple_model, TWO)[0].tolist()
    assert _iou(boxes[0], boxes[1]) > 0
    boxes = _tuple_run(tuple_model, THREE)[0]
    assert (boxes[:, 2] == W).any() and (boxes[:, 3] == H).any()


def test_standin_box_follows_the_person(tuple_model):
    left = _tuple_run(tuple_model, scene([(60, 40, 200, 120, (200, 200, 200))]))[0]
    right = _tuple_run(tuple_model, scene([(60, 300, 200, 380, (200, 200, 200))]))[0]
    assert left.shape == right.shape == (1, 4)
    assert right[0, 0] - left[0, 0] > 200


def test_standin_logits_depend_on_content(tuple_model):
    a = _tuple_run(tuple_model, ONE)
    b = _tuple_run(tuple_model, scene([(60, 150, 200, 230, (40, 90, 230))]))
    assert a[0].shape == b[0].shape == (1, 4)
    assert not torch.equal(a[2], b[2])


def test_standin_deterministic_across_calls_and_save_load(tuple_model, standin_models):
    first = _tuple_run(tuple_model, THREE)
    second = _tuple_run(tuple_model, THREE)
    fresh = _tuple_run(build_standin("tuple", seed=0), THREE)
    for x, y, z in zip(first, second, fresh):
        assert torch.equal(x, y) and torch.equal(x, z)
    other_seed = _tuple_run(build_standin("tuple", seed=1), THREE)
    assert not torch.equal(first[2], other_seed[2])


@pytest.fixture(scope="module")
def dict_model(standin_models):
    import warnings

    import torchvision  # noqa: F401

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(standin_models["dict"])).eval()


@pytest.mark.parametrize("image", [ONE, THREE, torch.zeros((64, 64, 3), dtype=torch.uint8)],
                         ids=["one", "three", "black"])
def test_standin_tuple_and_dict_agree(tuple_model, dict_model, image):
    expected = _tuple_run(tuple_model, image)
    with torch.inference_mode():
        from_bgr = dict_model(image.flip(-1).contiguous())
        from_rgb = dict_model(image, False)
        from_chw = dict_model(image.flip(-1).permute(2, 0, 1).contiguous(), True)
    for out in (from_bgr, from_rgb, from_chw):
        assert torch.equal(out["pred_boxes"], expected[0])
        for key, value in zip(_models.DICT_KEYS[1:], expected[1:]):
            assert torch.equal(out[key], value)
        n = expected[0].shape[0]
        assert out["scores"].shape == (n,) and out["scores"].dtype == torch.float32
        assert out["pred_classes"].shape == (n,) and out["pred_classes"].dtype == torch.int64


def test_standin_script_writes_both_styles(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["make_standin_models.py", str(tmp_path), "--seed", "3", "--size", "56"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO_ROOT / "scripts" / "make_standin_models.py"), run_name="__main__")
    assert done.value.code == 0
    for style in ("tuple", "dict"):
        model = load_model(tmp_path / f"standin_{style}.torchscript", "cpu")
        assert model.style == style
        assert model.detect(ONE).fine_segm.shape == (1, 25, 56, 56)


# --- resolution ------------------------------------------------------------------------------------

@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A private HF_HOME, offline, and a hf_hub_download that fails the test if anything calls it."""
    import huggingface_hub

    home = use_private_hf_home(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []

    def no_network(*args, **kwargs):
        calls.append((args, kwargs))
        raise AssertionError("hf_hub_download must not be called")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    return home, calls


def test_resolve_local_path(tmp_path, hub):
    path = tmp_path / "my model.pt"
    path.write_bytes(b"x")
    assert resolve_model_path(str(path), None) == path


@pytest.mark.parametrize("spec", ["missing/dir/model.torchscript", "nowhere.pt"])
def test_resolve_nonexistent_path(spec, hub):
    with pytest.raises(ModelError, match="not found: .*" + spec.split("/")[-1]):
        resolve_model_path(spec, None)


def test_resolve_unknown_spec(hub):
    with pytest.raises(ModelError, match=r"unknown model 'r18'.*r50, r101, densepose_r50_fpn_dl.torchscript"):
        resolve_model_path("r18", None)


@pytest.mark.parametrize("spec", ["r50", "r101", MODEL_FILES["r50"], MODEL_FILES["r101"]])
def test_resolve_from_model_dir(tmp_path, hub, spec):
    for filename in MODEL_FILES.values():
        (tmp_path / filename).write_bytes(b"x")
    expected = tmp_path / MODEL_FILES.get(spec, spec)
    assert resolve_model_path(spec, str(tmp_path)) == expected
    assert not hub[1]


def test_resolve_offline_cache_miss_names_every_way_out(tmp_path, hub):
    with pytest.raises(ModelError) as info:
        resolve_model_path("r50", str(tmp_path / "empty"))
    message = str(info.value)
    assert "\n" not in message
    for part in ("densepose_r50_fpn_dl.torchscript", "--model PATH", "DENSEVID_MODEL_DIR", "offline",
                 f"hf download {MODEL_REPO} densepose_r50_fpn_dl.torchscript"):
        assert part in message
    assert not hub[1]


def test_resolve_offline_argument_wins_over_environment(monkeypatch, hub):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(ModelError, match="offline"):
        resolve_model_path("r101", None, offline=True)
    assert not hub[1]


def test_resolve_offline_cache_hit(hub):
    home, calls = hub
    populate_hub_cache(home, MODEL_FILES["r101"])
    path = resolve_model_path("r101", None)
    assert path.name == MODEL_FILES["r101"] and path.read_bytes() == b"weights"
    assert str(path).startswith(str(home))
    with pytest.raises(ModelError, match="densepose_r50_fpn_dl"):
        resolve_model_path("r50", None)  # only r101 is cached
    assert not calls


def test_resolve_online_downloads_into_hf_home(monkeypatch, hub, tmp_path):
    import huggingface_hub

    home, _ = hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    seen = {}

    def fake_download(repo_id, filename, **kwargs):
        seen.update(repo_id=repo_id, filename=filename, **kwargs)
        target = tmp_path / filename
        target.write_bytes(b"x")
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: None)  # the hub answers
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    assert resolve_model_path("r50", None) == tmp_path / MODEL_FILES["r50"]
    assert seen["repo_id"] == MODEL_REPO and seen["filename"] == MODEL_FILES["r50"]
    assert str(seen["cache_dir"]) == str(home / "hub") and seen["endpoint"] == "https://hub.example"


@pytest.mark.parametrize("error,reason", [
    (OSError("Network is unreachable"), "download failed: OSError: Network is unreachable"),
    ("LocalEntryNotFoundError", "download failed: LocalEntryNotFoundError: An error happened while trying to "
                                "locate the file on the Hub"),
])
def test_resolve_online_download_failure(monkeypatch, hub, error, reason):
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    if error == "LocalEntryNotFoundError":
        error = LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")

    def failing_download(*args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, **kwargs: None)  # the hub answers
    with pytest.raises(ModelError, match=reason + r"\); .*hf download"):
        resolve_model_path("r50", None)


def test_resolve_names_what_the_hub_answered(monkeypatch, hub):
    import huggingface_hub

    class Response:
        status_code = 401

    class Unauthorized(Exception):
        response = Response()

    def refused(url, **kwargs):
        raise Unauthorized("401 Client Error")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example/")
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", refused)
    with pytest.raises(ModelError, match=r"download failed: the hub at https://hub.example answered HTTP 401 for "
                                         r"densepose_r101_fpn_dl.torchscript\)"):
        resolve_model_path("r101", None)
    assert not hub[1]  # no download tried after the hub said no


# --- loading ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["tuple", "dict"])
def test_load_detects_style(standin_models, style):
    model = load_model(standin_models[style], "cpu")
    assert isinstance(model, DensePoseModel)
    assert model.style == style and model.path == standin_models[style] and model.device == torch.device("cpu")


def test_both_styles_give_identical_detections(standin_models):
    tuple_style = load_model(standin_models["tuple"], "cpu")
    dict_style = load_model(standin_models["dict"], torch.device("cpu"))
    for image in (ONE, THREE, torch.zeros((32, 48, 3), dtype=torch.uint8)):
        a, b = tuple_style.detect(image), dict_style.detect(image)
        assert len(a) == len(b)
        for field in ("boxes_xyxy", "coarse_segm", "fine_segm", "u", "v"):
            assert torch.equal(getattr(a, field), getattr(b, field))
    assert len(tuple_style.detect(THREE)) == 3 and tuple_style.detect(THREE).boxes_xyxy.dtype == torch.float32


def test_detect_rejects_wrong_input(standin_models):
    model = load_model(standin_models["tuple"], "cpu")
    with pytest.raises(TypeError):
        model.detect(ONE.float())
    with pytest.raises(ValueError):
        model.detect(ONE.permute(2, 0, 1))


def test_load_not_torchscript(tmp_path):
    path = tmp_path / "garbage.torchscript"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ModelError, match=r"garbage\.torchscript is not a TorchScript model.*expected"):
        load_model(path, "cpu")


def test_load_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent.torchscript", "cpu")


class _SingleTensor(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.float().mean().reshape(1)


class _WrongChannels(torch.nn.Module):
    def forward(self, image: torch.Tensor):
        n = 1
        s = 8
        return (torch.zeros(n, 4), torch.zeros(n, 3, s, s), torch.zeros(n, 25, s, s),
                torch.zeros(n, 25, s, s), torch.zeros(n, 25, s, s))


class _MissingKeys(torch.nn.Module):
    def forward(self, image: torch.Tensor, bgr: bool = True) -> dict[str, torch.Tensor]:
        return {"pred_boxes": torch.zeros(0, 4)}


class _BreaksOnRealFrames(torch.nn.Module):
    """Honours the contract on a black probe, returns a box without dense outputs otherwise."""

    def forward(self, image: torch.Tensor):
        n = 1 if bool(image.any()) else 0
        return (torch.zeros(n, 4), torch.zeros(0, 2, 8, 8), torch.zeros(0, 25, 8, 8),
                torch.zeros(0, 25, 8, 8), torch.zeros(0, 25, 8, 8))


def _script(tmp_path, module, name):
    path = tmp_path / name
    torch.jit.script(module).save(str(path))
    return path


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("module,name,match", [
    (_SingleTensor, "single.pt", r"single\.pt does not honour the model contract.*expected forward"),
    # the schema looks right; the first frame's output has the wrong shape
    (_WrongChannels, "channels.pt",
     r"channels\.pt does not honour the tuple-style model contract.*coarse_segm must have shape \[1, 2, S, S\] "
     r"for 1 boxes, got \[1, 3, 8, 8\]"),
    (_MissingKeys, "keys.pt", r"dict-style model contract.*without pred_densepose_coarse_segm"),
])
def test_load_wrong_contract(tmp_path, module, name, match):
    """A schema that is neither style fails at load; an output that breaks its style's contract on the first
    frame (nothing runs at load: a synthetic probe frame would cost a whole forward pass)."""
    with pytest.raises(ModelError, match=match):
        load_model(_script(tmp_path, module(), name), "cpu").detect(ONE)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_runtime_contract_violation(tmp_path):
    model = load_model(_script(tmp_path, _BreaksOnRealFrames(), "later.pt"), "cpu")
    assert model.style == "tuple"
    with pytest.raises(ModelError, match="contract.*for 1 boxes"):
        model.detect(ONE)


def test_load_unknown_torchvision_op(monkeypatch, standin_models):
    def fake_load(*args, **kwargs):
        raise RuntimeError("\nUnknown builtin op: torchvision::nms.\nCould not find any similar ops to "
                           "torchvision::nms. This op may not exist or may not be currently supported in TorchScript.")

    monkeypatch.setattr(torch.jit, "load", fake_load)
    mismatch = r"standin_tuple.*torchvision.*torch .* and torchvision .* versions don't match"
    with pytest.raises(ModelError, match=mismatch) as info:
        load_model(standin_models["tuple"], "cpu")
    assert torch.__version__ in str(info.value) and "\n" not in str(info.value)


def test_torchvision_ops_unavailable(monkeypatch, standin_models, tmp_path):
    """A broken extension and a torchvision that does not import: the versions don't match."""
    broken = tmp_path / "_C_stable.so"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(_ops, "_torchvision_ops_registered", lambda: False)  # as in a fresh process
    monkeypatch.setattr(_ops, "_torchvision_extension", lambda: broken)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` raise ImportError
    with pytest.raises(ModelError, match=r"standin_tuple.torchscript: torchvision's operators are unavailable "
                                         r"\(loading _C_stable.so failed: OSError: .*; import torchvision failed: "
                                         r"ModuleNotFoundError: import of torchvision halted.*\): torch .* and "
                                         r"torchvision .* versions don't match") as info:
        load_model(standin_models["tuple"], "cpu")
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_models_load_without_importing_torchvision(standin_models):
    """torchvision's operators are registered from its C++ extension: no torchvision package, no torch._dynamo."""
    import subprocess

    from support.helpers import REPO_ROOT, subprocess_env

    code = ("import sys; from densevid.pipeline.models import load_model; "
            f"model = load_model({str(standin_models['dict'])!r}, 'cpu'); "
            "import torch; assert len(model.detect(torch.zeros(64, 64, 3, dtype=torch.uint8))) == 0; "
            "print(sorted(name for name in ('torchvision', 'torch._dynamo') if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=subprocess_env(REPO_ROOT.parent), timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- precision and whole error lines ---------------------------------------------------------------

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("weights,device,half,runs,convert_to,autocast", [
    (torch.float32, CPU, False, torch.float32, None, False),
    (torch.float16, CPU, False, torch.float32, torch.float32, False),  # as the exports' own runner does
    (torch.float16, CUDA, False, torch.float16, None, False),  # natively, as exported
    (torch.float32, CUDA, False, torch.float32, None, False),
    (torch.float32, CUDA, True, torch.float16, None, True),
    (torch.float32, CUDA, "autocast", torch.float16, None, True),
    (torch.float32, CUDA, "native", torch.float16, torch.float16, False),
])
def test_plan_precision(weights, device, half, runs, convert_to, autocast):
    precision = _models.plan_precision(weights, device, half)
    assert (precision.weights, precision.runs, precision.convert_to, precision.autocast) == \
        (weights, runs, convert_to, autocast)


@pytest.mark.parametrize("weights,native,runs,convert_to,autocast,noted", [
    (torch.float32, True, torch.bfloat16, None, True, False),  # AVX512-BF16 or AMX: bfloat16 autocast
    (torch.float16, True, torch.bfloat16, torch.float32, True, False),  # converted for nms, then autocast
    (torch.float32, False, torch.float32, None, False, True),  # emulated bfloat16 is slower: ignored, said
    (torch.bfloat16, False, torch.float32, torch.float32, False, True),
])
def test_half_on_the_cpu_is_bfloat16_where_the_cpu_has_it(weights, native, runs, convert_to, autocast, noted):
    precision = _models.plan_precision(weights, CPU, True, native_bf16=native)
    assert (precision.runs, precision.convert_to, precision.autocast) == (runs, convert_to, autocast)
    assert (precision.note == _models._precision.NO_NATIVE_BF16) == noted and bool(precision.note) == noted


def test_this_cpus_bfloat16_is_read_from_torchs_own_check():
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert _models.cpu_native_bfloat16() == expected


@pytest.mark.skipif(not torch.cpu._is_avx512_bf16_supported(), reason="needs a CPU with native bfloat16")
def test_half_runs_the_model_in_bfloat16_on_this_cpu(tmp_path):
    from densevid.pipeline.models import save_standin_rcnn

    path = save_standin_rcnn(tmp_path / "rcnn.pt", "tuple", 50, width=0.25)
    half, full = load_model(path, "cpu", half=True), load_model(path, "cpu")
    assert half.engine == "native" and "float32 weights, run in bfloat16 (autocast)" in half.describe()
    for image in (ONE, TWO):
        a, b = half.detect(image), full.detect(image)
        # autocast reached the ops: another result than float32's (people are found in both)
        assert len(b) > 0 and (len(a) != len(b) or not torch.equal(a.fine_segm.float(), b.fine_segm))
    # the TorchScript file cannot run under CPU bfloat16 autocast (its nms): float32, and said so
    with pytest.warns(ModelWarning, match="--half is ignored for the TorchScript file on the CPU"):
        file = load_model(path, "cpu", half=True, engine="torchscript")
    assert file.precision.runs == torch.float32 and len(file.detect(TWO)) == len(full.detect(TWO))


def test_precision_is_described():
    assert _models.plan_precision(torch.float16, CPU).describe() == "float16 weights, run in float32"
    assert _models.plan_precision(torch.float32, CPU, True, native_bf16=True).describe() == \
        "float32 weights, run in bfloat16 (autocast)"
    assert _models.plan_precision(torch.float32, CUDA, True).describe() == \
        "float32 weights, run in float16 (autocast)"


def test_load_rejects_an_unknown_half_route(standin_models):
    with pytest.raises(ValueError, match=r"half must be a bool or one of \('autocast', 'native'\)"):
        load_model(standin_models["tuple"], "cpu", half="fp16")


class _HalfInside(torch.nn.Module):
    """Honours the tuple contract in its schema; inside, a float16 input meets float32 weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)

    def forward(self, image: torch.Tensor):
        x = self.conv(image[None].half())
        return x, x, x, x, x


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_failing_call_keeps_the_root_cause_whole_before_the_contract(tmp_path):
    model = load_model(_script(tmp_path, _HalfInside(), "mixed.pt"), "cpu")  # nothing runs at load
    with pytest.raises(ModelError) as info:
        model.detect(torch.zeros((40, 56, 3), dtype=torch.uint8))
    message = str(info.value)
    root = "RuntimeError: Input type (c10::Half) and bias type (float) should be the same"
    assert "\n" not in message and root in message
    assert message.index("failed on a 56x40 frame as a tuple-style model on cpu (float32 weights, run in float32): "
                         + root) < message.index("; expected forward(image: uint8 CHW RGB)")
    assert "TorchScript interpreter" not in message and "..." not in message


class _LongFailure(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                    torch.Tensor]:
        if image.dim() == 3:
            raise RuntimeError("this export needs the CUDA build of torchvision: " + "reinstall it with "
                               "pip install --force-reinstall --index-url https://download.pytorch.org/whl/cu130 "
                               "torchvision==0.29.1 and check the torch version with python -c 'import torch; "
                               "print(torch.__version__)' before you run densevid again on the same machine")
        return image, image, image, image, image


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_long_root_cause_reaches_the_cli_whole(tmp_path):
    from support.clips import make_clip, synthetic_frames
    from support.helpers import run_cli

    model = _script(tmp_path, _LongFailure(), "long.pt")
    clip = make_clip(tmp_path / "a.mkv", synthetic_frames(1, 32, 32))
    result = run_cli(clip, "--model", model, "--lossless")
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and len(line) > 300
    command = "pip install --force-reinstall --index-url https://download.pytorch.org/whl/cu130 torchvision==0.29.1"
    assert command in line
    assert line.index("before you run densevid again on the same machine") < line.index("; expected forward(")


def test_one_line_cuts_whole_words_only():
    text = "download failed: see https://huggingface.co/LayerNorm/DensePose-TorchScript-with-hint-image/resolve/main"
    assert one_line(text, 40) == "download failed: see ..."
    assert one_line("x" * 50, 10) == "x" * 50 + " ..."
    assert one_line("short\nenough", 40) == "short enough"


def test_first_model_calls_run_one_at_a_time_then_concurrently(standin_models):
    # TorchScript profiles a graph's first runs, and that is not thread-safe (model workers share one
    # module): calls overlap only once those runs are done
    import threading
    import time

    model = load_model(standin_models["tuple"], "cpu")  # the probe was the first call
    alone = torch._C._jit_get_num_profiled_runs()  # the first calls still to come, one at a time
    scripted, spans = model.module, []

    def spy(*args):  # stands in for the module: when each call was inside it
        start = time.monotonic()
        time.sleep(0.05)
        try:
            return scripted(*args)
        finally:
            spans.append((start, time.monotonic()))

    model.module = spy
    image = torch.zeros((64, 64, 3), dtype=torch.uint8)
    threads = [threading.Thread(target=lambda: [model.detect(image) for _ in range(3)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spans.sort()
    assert len(spans) == 12 and alone >= 1

    def overlapping(i: int) -> bool:
        return any(j != i and spans[j][0] < spans[i][1] and spans[i][0] < spans[j][1] for j in range(12))

    assert not any(overlapping(i) for i in range(alone))  # the first calls: alone
    assert any(overlapping(i) for i in range(alone, 12))  # then concurrent
