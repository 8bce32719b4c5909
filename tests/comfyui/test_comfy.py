"""The ComfyUI node: its declared interface, and hints equal to the original node's, as IMAGE tensors."""

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from densevid.pipeline.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, DensePose_Preprocessor
from support.helpers import REPO_ROOT
from support.node_reference import blob_frames, node_hint

R50 = "densepose_r50_fpn_dl.torchscript"
R101 = "densepose_r101_fpn_dl.torchscript"


def test_node_interface_matches_the_original():
    assert NODE_CLASS_MAPPINGS == {"Inference_Core_DensePosePreprocessor": DensePose_Preprocessor}
    assert NODE_DISPLAY_NAME_MAPPINGS == {
        "Inference_Core_DensePosePreprocessor": "[Inference.Core] DensePose Estimator"}
    types = DensePose_Preprocessor.INPUT_TYPES()
    assert types["required"] == {"image": ("IMAGE",)}
    optional = types["optional"]
    assert optional["model"] == ([R50, R101], {"default": R50})
    assert optional["cmap"] == (["Viridis (MagicAnimate)", "Parula (CivitAI)"], {"default": "Viridis (MagicAnimate)"})
    kind, spec = optional["resolution"]
    assert kind == "INT" and spec == {"default": 512, "min": 64, "max": 16384, "step": 64}  # the original's range
    assert DensePose_Preprocessor.RETURN_TYPES == ("IMAGE",)
    assert DensePose_Preprocessor.FUNCTION == "execute"
    assert DensePose_Preprocessor.CATEGORY == "ControlNet Preprocessors/Faces and Poses Estimators"


@pytest.fixture()
def model_dir_with_r50(tmp_path, standin_models, monkeypatch):
    # the node offers hub file names; a model dir holding a stand-in under that name serves it offline
    shutil.copy(standin_models["tuple"], tmp_path / R50)
    monkeypatch.setenv("DENSEVID_MODEL_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("cmap,name", [("viridis", "Viridis (MagicAnimate)"), ("parula", "Parula (CivitAI)")])
def test_node_output_equals_original_node(model_dir_with_r50, tuple_model, cmap, name):
    frames_u8 = blob_frames(3, 70, 97, seed=11)
    # ComfyUI IMAGE: float32 BHWC in [0, 1]; the node truncates image * 255 back to uint8
    image = torch.from_numpy(frames_u8.astype(np.float32) / 255.0)
    (hints,) = DensePose_Preprocessor().execute(image, model=R50, cmap=name, resolution=64)
    assert hints.dtype == torch.float32 and hints.shape == (3, 64, 89, 3)
    for i in range(3):
        frame_u8 = np.asarray(image[i].numpy() * 255.0, dtype=np.uint8)
        expected = node_hint(frame_u8, tuple_model, cmap=cmap, resolution=64).astype(np.float32) / 255.0
        assert torch.equal(hints[i], torch.from_numpy(expected))


def _checkout_copy(parent):
    """A copy of the package's files (a fresh numba cache) as ComfyUI/custom_nodes/densevid would hold it."""
    checkout = parent / "custom_nodes" / "densevid"
    checkout.mkdir(parents=True)
    for name in ("kernels", "pipeline", "configs"):
        shutil.copytree(REPO_ROOT / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__init__.py", "_base.py"):
        shutil.copy(REPO_ROOT / name, checkout / name)
    return checkout


def _load_as_comfyui_does(checkout) -> str:
    """Python that imports ``checkout`` the way ComfyUI's nodes.load_custom_node does (module name =
    the folder's path with dots replaced), leaving the module in ``node``."""
    return textwrap.dedent(f"""
        import importlib.util, os, sys
        module_path = {str(checkout)!r}
        sys_module_name = module_path.replace(".", "_x_")
        spec = importlib.util.spec_from_file_location(sys_module_name, os.path.join(module_path, "__init__.py"))
        node = importlib.util.module_from_spec(spec)
        sys.modules[sys_module_name] = node
        spec.loader.exec_module(node)
        assert hasattr(node, "NODE_CLASS_MAPPINGS") and getattr(node, "WEB_DIRECTORY", None) is None
    """)


@pytest.mark.slow
def test_loads_as_a_comfyui_custom_node_beside_other_packages_named_pipeline_and_kernels(tmp_path, model_dir_with_r50):
    # ComfyUI imports custom_nodes/densevid/ as a package named after its path (here with a dot in
    # it, which ComfyUI rewrites); packages called `kernels` or `pipeline` elsewhere must survive
    checkout = _checkout_copy(tmp_path / "Comfy.UI")
    fake = tmp_path / "site"
    for name in ("kernels", "pipeline"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text("WHO = 'someone else'\n")
    script = f"import sys; sys.path.insert(0, {str(fake)!r})\n" + _load_as_comfyui_does(checkout) + textwrap.dedent("""
        import kernels, pipeline
        assert kernels.WHO == pipeline.WHO == 'someone else'
        cls = node.NODE_CLASS_MAPPINGS['Inference_Core_DensePosePreprocessor']
        print(cls.__module__)
        print(node.NODE_DISPLAY_NAME_MAPPINGS['Inference_Core_DensePosePreprocessor'])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    module, display = result.stdout.strip().splitlines()
    assert module == str(checkout).replace(".", "_x_") + ".pipeline.comfyui._node"
    assert display == "[Inference.Core] DensePose Estimator"


@pytest.mark.slow
def test_compiled_render_cache_is_shared_by_the_node_and_the_cli(tmp_path):
    # numba caches by source file: what the ComfyUI node (package named after its path) compiled
    # must load in a CLI process (package `densevid`) and the other way round, not be compiled
    # again or fall back to a slower path. A copy of the sources gives a fresh cache.
    checkout = _checkout_copy(tmp_path)
    as_node = _load_as_comfyui_does(checkout) + textwrap.dedent("""
        name = node.__name__ + ".kernels.render_cpu"
        render_cpu = sys.modules[name] if name in sys.modules else importlib.import_module(name)
        assert render_cpu.compiled_kernels() is not None
    """)
    as_cli = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(checkout.parent)!r})
        from densevid.kernels import render_cpu
        assert render_cpu.__file__.startswith({str(checkout)!r})
        assert render_cpu.compiled_kernels() is not None
    """)
    for script in (as_node, as_cli, as_node):
        result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", script],
                                capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    assert list((checkout / "kernels" / "__pycache__").glob("_render_numba.*.nbi")), "nothing was cached"


# --- inside ComfyUI (its parts faked with ComfyUI's semantics: tests/fake_comfyui.py) -----------------

import gc  # noqa: I001  (the in-process tests below)
import threading
import time
import weakref

from densevid import ModelError
from densevid.pipeline.comfyui import _memory as _comfy_memory
from densevid.pipeline.comfyui import _node as node_module
from densevid.pipeline.models import MODEL_REPO, PATH_SUFFIXES
from support import fake_comfyui
from support.fake_hub import FakeHub
from support.helpers import populate_hub_cache

AUX_DIR = "custom_nodes/comfyui_controlnet_aux/ckpts/LayerNorm/DensePose-TorchScript-with-hint-image"


@pytest.fixture()
def comfy(monkeypatch, tmp_path):
    base = tmp_path / "ComfyUI"
    (base / "custom_nodes").mkdir(parents=True)
    monkeypatch.delenv("AUX_ANNOTATOR_CKPTS_PATH", raising=False)
    node_module.resident_models.clear()
    yield fake_comfyui.install(monkeypatch, base)
    node_module.resident_models.clear()


def _image(frames_u8):
    return torch.from_numpy(frames_u8.astype(np.float32) / 255.0)


def _assert_original_hints(hints, image, tuple_model, resolution=64):
    for i in range(len(image)):
        frame_u8 = np.asarray(image[i].numpy() * 255.0, dtype=np.uint8)
        expected = node_hint(frame_u8, tuple_model, cmap="viridis", resolution=resolution).astype(np.float32) / 255.0
        assert torch.equal(hints[i], torch.from_numpy(expected)), f"frame {i}"


def _online(monkeypatch, endpoint):
    """Online, against ``endpoint``: huggingface_hub read HF_HUB_OFFLINE once, at import (conftest's 1)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)


def _put(path, source):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, path)
    return path


def test_registers_comfyuis_densepose_model_folder(comfy):
    DensePose_Preprocessor.INPUT_TYPES()
    paths, extensions = comfy.folder_paths.folder_names_and_paths["densepose"]
    assert paths == [str(comfy.base / "models" / "densepose")] and extensions == set(PATH_SUFFIXES)
    assert (comfy.base / "models" / "densepose").is_dir()  # where users put the files, as for ComfyUI's folders


def test_keeps_densepose_paths_from_extra_model_paths_yaml(comfy, tmp_path):
    # ComfyUI reads extra_model_paths.yaml before loading custom nodes: `densepose: /shared/densepose`
    shared = str(tmp_path / "shared" / "densepose")
    comfy.folder_paths.add_model_folder_path("densepose", shared)
    node_module.comfyui()
    node_module.comfyui()  # every use registers again: nothing changes
    paths, extensions = comfy.folder_paths.folder_names_and_paths["densepose"]
    assert paths == [shared, str(comfy.base / "models" / "densepose")] and extensions == set(PATH_SUFFIXES)


def test_model_combo_lists_the_hub_files_and_every_model_file_present(comfy, tmp_path):
    models = comfy.base / "models" / "densepose"
    for relative in ("densepose_r50_fpn_dl.torchscript", "mine/custom.pt", "notes.txt",
                     ".cache/huggingface/download/densepose_r50_fpn_dl.torchscript.metadata"):
        (models / relative).parent.mkdir(parents=True, exist_ok=True)
        (models / relative).write_bytes(b"x")
    for name in ("densepose_r101_fpn_dl.torchscript", "densepose_r50_fpn_dl_fp16.torchscript"):
        (comfy.base / AUX_DIR).mkdir(parents=True, exist_ok=True)
        (comfy.base / AUX_DIR / name).write_bytes(b"x")
    (comfy.base / "custom_nodes" / "other_node").mkdir()  # a custom node without ckpts: ignored
    choices = DensePose_Preprocessor.INPUT_TYPES()["optional"]["model"]
    assert choices == ([R50, R101, "densepose_r50_fpn_dl_fp16.torchscript", "mine/custom.pt"], {"default": R50})


@pytest.mark.parametrize("where", ["models", "extra_model_paths", "controlnet_aux", "controlnet_aux_config"])
def test_node_uses_weights_where_comfyui_users_keep_them(comfy, tmp_path, monkeypatch, standin_models, tuple_model,
                                                         where):
    if where == "models":
        _put(comfy.base / "models" / "densepose" / R50, standin_models["tuple"])
    elif where == "extra_model_paths":
        _put(tmp_path / "shared" / R50, standin_models["tuple"])
        comfy.folder_paths.add_model_folder_path("densepose", str(tmp_path / "shared"))
    elif where == "controlnet_aux":  # its default ckpts folder, beside this node
        _put(comfy.base / AUX_DIR / R50, standin_models["tuple"])
    else:  # its config.yaml moved ckpts elsewhere; it says where in AUX_ANNOTATOR_CKPTS_PATH when ComfyUI loads it
        _put(tmp_path / "aux_ckpts" / MODEL_REPO / R50, standin_models["tuple"])
        monkeypatch.setenv("AUX_ANNOTATOR_CKPTS_PATH", str(tmp_path / "aux_ckpts"))
    image = _image(blob_frames(2, 70, 97, seed=3))
    (hints,) = DensePose_Preprocessor().execute(image, model=R50, cmap="Viridis (MagicAnimate)", resolution=64)
    _assert_original_hints(hints, image, tuple_model)


def test_missing_weights_offline_fail_at_once_saying_where_to_put_which_file(comfy):
    # conftest: HF_HUB_OFFLINE=1, an empty hub cache
    started = time.perf_counter()
    with pytest.raises(ModelError) as info:
        DensePose_Preprocessor().execute(_image(blob_frames(1, 64, 64, seed=1)), model=R101)
    assert time.perf_counter() - started < 2
    message = str(info.value)
    assert "\n" not in message
    folder = comfy.base / "models" / "densepose"
    for part in (f"DensePose model file {R101} not found", "HF_HUB_OFFLINE", f"into ComfyUI's densepose model "
                 f"folder {folder}", f"https://huggingface.co/{MODEL_REPO}/resolve/main/{R101}",
                 f"download {MODEL_REPO} {R101} --local-dir {folder}", "custom_nodes/*/ckpts/" + MODEL_REPO):
        assert part in message


def test_missing_weights_without_network_fail_within_seconds(comfy, monkeypatch):
    hub = FakeHub(MODEL_REPO, {})
    url = hub.url
    hub.close()  # nothing listens there now: the hub is unreachable
    _online(monkeypatch, url)
    started = time.perf_counter()
    with pytest.raises(ModelError, match=rf"not downloaded \(download failed: the hub at {url} is unreachable "
                                         r"\(Connect"):  # httpx's ConnectError, requests' ConnectionError
        DensePose_Preprocessor().execute(_image(blob_frames(1, 64, 64, seed=1)), model=R50)
    assert time.perf_counter() - started < 10


def test_missing_hub_file_is_downloaded_into_comfyuis_folder(comfy, monkeypatch, tmp_path, standin_models,
                                                             tuple_model, caplog):
    # the first densepose folder: extra_model_paths.yaml's when it names one, else models/densepose
    shared = tmp_path / "shared"
    comfy.folder_paths.add_model_folder_path("densepose", str(shared))
    hub = FakeHub(MODEL_REPO, {R50: standin_models["tuple"].read_bytes()})
    try:
        _online(monkeypatch, hub.url)
        image = _image(blob_frames(2, 70, 97, seed=5))
        with caplog.at_level("INFO"):
            (hints,) = DensePose_Preprocessor().execute(image, model=R50, resolution=64)
        _assert_original_hints(hints, image, tuple_model)
        assert f"densevid: downloaded {R50} into {shared}" in caplog.messages
        assert (shared / R50).is_file() and not (shared / R50).is_symlink()
        assert hub.downloads() == [f"/{MODEL_REPO}/resolve/main/{R50}"]
        # found there from now on, offline too, and listed once (not huggingface_hub's metadata beside it)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
        node_module.resident_models.clear()
        DensePose_Preprocessor().execute(image, model=R50, resolution=64)
        assert len(hub.downloads()) == 1
        assert DensePose_Preprocessor.INPUT_TYPES()["optional"]["model"][0] == [R50, R101]
    finally:
        hub.close()


def test_download_ignores_the_hub_cache_huggingface_hub_fixed_at_its_import(comfy, monkeypatch, tmp_path,
                                                                            standin_models):
    # huggingface_hub fixes its default cache at import (HF_HOME then); a local-dir download copies from
    # that cache when it holds the file at the hub's commit. densevid's cache is HF_HOME as it is now.
    import huggingface_hub.constants

    stale_home = tmp_path / "hf_home_at_import"
    populate_hub_cache(stale_home, R50, payload=b"not these weights")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(stale_home / "hub"))
    hub = FakeHub(MODEL_REPO, {R50: standin_models["tuple"].read_bytes()})
    try:
        _online(monkeypatch, hub.url)
        DensePose_Preprocessor().execute(_image(blob_frames(1, 48, 64, seed=2)), model=R50, resolution=64)
        assert hub.downloads() == [f"/{MODEL_REPO}/resolve/main/{R50}"]
        downloaded = comfy.folder_paths.get_full_path("densepose", R50)
        assert open(downloaded, "rb").read() == standin_models["tuple"].read_bytes()
    finally:
        hub.close()


def test_progress_bar_moves_per_frame(comfy, model_in_comfyui):
    DensePose_Preprocessor().execute(_image(blob_frames(5, 48, 64, seed=2)), model=R50, resolution=64)
    assert comfy.utils.progress == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


@pytest.fixture()
def model_in_comfyui(comfy, standin_models):
    return _put(comfy.base / "models" / "densepose" / R50, standin_models["tuple"])


def _engine_threads():
    return [t.name for t in threading.enumerate()  # a run's threads; the idle process-wide pools are not
            if t.name.startswith("densevid-") and not t.name.startswith("densevid-pool-")]


@pytest.mark.parametrize("after_frames", [0, 2])
def test_interrupt_stops_a_long_batch_between_frames(comfy, model_in_comfyui, monkeypatch, after_frames):
    # POST /interrupt sets ComfyUI's flag; here it is set after `after_frames` frames (0: before the first)
    bar = comfy.utils.ProgressBar

    class InterruptingBar(bar):
        def update(self, value):
            super().update(value)
            if self.current == after_frames:
                comfy.model_management.interrupt_current_processing()

    monkeypatch.setattr(comfy.utils, "ProgressBar", InterruptingBar)
    if after_frames == 0:
        comfy.model_management.interrupt_current_processing()
    with pytest.raises(fake_comfyui.InterruptProcessingException):
        DensePose_Preprocessor().execute(_image(blob_frames(64, 48, 64, seed=4)), model=R50, resolution=64)
    assert [value for value, _ in comfy.utils.progress] == list(range(1, after_frames + 1))  # nothing after it
    assert _engine_threads() == []  # the workers have stopped too
    assert comfy.model_management.interrupt_processing is False  # consumed, as ComfyUI's check does


def test_video_batch_runs_through_the_engines_model_workers_with_bounded_memory(comfy, model_in_comfyui,
                                                                                 monkeypatch, tuple_model):
    from densevid.pipeline.engine import DensePoseEstimator
    from densevid.pipeline.models import DensePoseModel

    def one_by_one(*args, **kwargs):
        raise AssertionError("the node must not call estimator.hint frame by frame")

    monkeypatch.setattr(DensePoseEstimator, "hint", one_by_one)
    detect = DensePoseModel.detect
    model_threads = set()

    def recording_detect(self, image):
        model_threads.add(threading.current_thread().name)
        return detect(self, image)

    monkeypatch.setattr(DensePoseModel, "detect", recording_detect)
    converted = []
    frames_iter = node_module._NodeFrames.__iter__

    def counting_iter(self):
        for frame in frames_iter(self):
            converted.append(1)
            yield frame

    monkeypatch.setattr(node_module._NodeFrames, "__iter__", counting_iter)
    in_flight = []
    bar = comfy.utils.ProgressBar

    class RecordingBar(bar):
        def update(self, value):
            super().update(value)
            in_flight.append(len(converted) - self.current)  # frames converted but not yet out as hints

    monkeypatch.setattr(comfy.utils, "ProgressBar", RecordingBar)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # two model workers on the CPU
    try:
        image = _image(blob_frames(40, 48, 64, seed=6))
        (hints,) = DensePose_Preprocessor().execute(image, model=R50, resolution=64)
    finally:
        torch.set_num_threads(previous)
    model_threads.discard("MainThread")  # the load-time probe
    assert sorted(model_threads) == ["densevid-model-0", "densevid-model-1"]
    assert len(converted) == 40 and max(in_flight) <= 2 * 2 + 2  # the engine's bound: 2 N frames, plus a step
    _assert_original_hints(hints, image, tuple_model)


def test_models_stay_loaded_until_comfyui_unloads_them(comfy, model_in_comfyui, monkeypatch):
    loads = []
    load_model = _comfy_memory.load_model

    def counting_load(path, device):
        loads.append(path)
        return load_model(path, device)

    monkeypatch.setattr(_comfy_memory, "load_model", counting_load)
    image = _image(blob_frames(2, 48, 64, seed=7))
    (first,) = DensePose_Preprocessor().execute(image, model=R50, resolution=64)
    DensePose_Preprocessor().execute(image, model=R50, resolution=64)
    assert len(loads) == 1  # kept between runs
    (patcher,) = comfy.model_management.loaded_models()  # registered with ComfyUI's memory management
    assert patcher.load_device == torch.device("cpu") and patcher.loaded_size() == patcher.model_size() > 1000
    weights = weakref.ref(patcher.densepose.module)
    del patcher
    # "Unload models" / POST /free: ComfyUI's unload_all_models unloads every model on its device
    comfy.model_management.unload_all_models()
    gc.collect()
    assert weights() is None and node_module.resident_models.loaded() == []
    (again,) = DensePose_Preprocessor().execute(image, model=R50, resolution=64)
    assert len(loads) == 2 and torch.equal(again, first)  # loaded again when needed


def test_unloading_several_models_at_once(comfy, standin_models, monkeypatch):
    # ComfyUI unloads by index into its list of loaded models: nothing may leave that list meanwhile
    for name in (R50, R101, "mine/other.torchscript"):
        _put(comfy.base / "models" / "densepose" / name, standin_models["tuple"])
    image = _image(blob_frames(1, 48, 64, seed=7))
    for name in (R50, R101, "mine/other.torchscript"):
        DensePose_Preprocessor().execute(image, model=name, resolution=64)
    patchers = comfy.model_management.loaded_models()
    assert len(patchers) == 3 and len(node_module.resident_models.loaded()) == 3
    weights = [weakref.ref(p.densepose.module) for p in patchers]
    del patchers
    comfy.model_management.unload_all_models()
    gc.collect()
    assert comfy.model_management.current_loaded_models == [] and node_module.resident_models.loaded() == []
    assert [w() for w in weights] == [None, None, None]


def test_a_model_unloaded_while_it_is_registered_is_loaded_again(comfy, model_in_comfyui, monkeypatch):
    # were ComfyUI to unload the model while registering it (another version's load_models_gpu freeing room
    # before it takes the model out of its list), the run loads it again rather than run without it
    load_models_gpu = comfy.model_management.load_models_gpu
    calls = []

    def squeezed(models, memory_required=0, **kwargs):
        calls.append(len(models))  # not the patchers: a reference here would keep them alive
        if len(calls) == 2:
            comfy.model_management.free_memory(1e30, torch.device("cpu"))
        load_models_gpu(models, memory_required, **kwargs)

    monkeypatch.setattr(comfy.model_management, "load_models_gpu", squeezed)
    image = _image(blob_frames(1, 48, 64, seed=8))
    (first,) = DensePose_Preprocessor().execute(image, model=R50, resolution=64)
    (second,) = DensePose_Preprocessor().execute(image, model=R50, resolution=64)  # unloaded, loaded again
    assert torch.equal(first, second) and len(calls) == 3
    assert len(node_module.resident_models.loaded()) == 1
    assert len([p for p in comfy.model_management.loaded_models() if p.densepose is not None]) == 1
    DensePose_Preprocessor().execute(image, model=R50, resolution=64)
    gc.collect()
    assert len(comfy.model_management.loaded_models()) == 1  # the unloaded one has left ComfyUI's list


def test_a_model_comfyui_keeps_unloading_is_a_clear_error_not_a_loop(comfy, model_in_comfyui, monkeypatch):
    load_models_gpu = comfy.model_management.load_models_gpu
    calls = []

    def starved(models, memory_required=0, **kwargs):
        calls.append(len(models))
        load_models_gpu(models, memory_required, **kwargs)
        comfy.model_management.free_memory(1e30, torch.device("cpu"))  # never room for it

    monkeypatch.setattr(comfy.model_management, "load_models_gpu", starved)
    image = _image(blob_frames(1, 48, 64, seed=8))
    with pytest.raises(ModelError, match=r"ComfyUI unloaded .* 3 times while loading it.*not enough memory"):
        DensePose_Preprocessor().execute(image, model=R50, resolution=64)
    assert len(calls) == 3


def test_a_device_densevid_cannot_use_falls_back_to_the_cpu(comfy, model_in_comfyui, monkeypatch, caplog):
    monkeypatch.setattr(comfy.model_management, "get_torch_device", lambda: torch.device("mps"))
    monkeypatch.setattr(node_module, "_warned_devices", set())
    with caplog.at_level("WARNING"):
        for _ in range(2):
            (hints,) = DensePose_Preprocessor().execute(_image(blob_frames(1, 48, 64, seed=9)), model=R50,
                                                        resolution=64)
    assert hints.shape == (1, 64, 85, 3)
    assert [r.getMessage() for r in caplog.records].count(
        "densevid: the DensePose node runs on the CPU (it runs on CPU or CUDA, ComfyUI's device is mps)") == 1


def test_empty_batch_gives_an_empty_batch_of_the_hint_size(comfy):
    (hints,) = DensePose_Preprocessor().execute(torch.zeros((0, 70, 97, 3)), model=R50, resolution=64)
    assert hints.shape == (0, 64, 89, 3) and hints.dtype == torch.float32


def test_hint_to_image_is_the_original_conversion_for_every_value():
    hint = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    out = np.empty(hint.shape, dtype=np.float32)
    node_module.hint_to_image(hint, out)
    assert np.array_equal(out.view(np.uint32), (hint.astype(np.float32) / 255.0).view(np.uint32))


def test_on_a_gpu_comfyui_makes_room_before_the_weights_land_and_may_unload_them(comfy, tmp_path, monkeypatch):
    # no GPU needed: what ComfyUI is asked, for a model "loaded" on cuda:0 (a stand-in object)
    cuda = torch.device("cuda:0")
    model_file = tmp_path / R50
    model_file.write_bytes(b"x" * 1000)

    class LoadedOnGpu:
        def __init__(self, path, device):
            self.path, self.device, self.module = path, device, torch.nn.Linear(10, 10)

        def describe(self):
            return f"{self.path.name} on {self.device}"

    monkeypatch.setattr(_comfy_memory, "load_model", LoadedOnGpu)
    asked = []
    free_memory = comfy.model_management.free_memory
    monkeypatch.setattr(comfy.model_management, "free_memory",
                        lambda memory, device, keep_loaded=(): (asked.append((memory, device)),
                                                                free_memory(memory, device, keep_loaded)))
    resident = _comfy_memory.ResidentModels()
    model = resident.get(model_file, cuda, comfy, memory_required=5000)
    assert model.device == cuda and asked[0] == (1000 + 5000, cuda)  # before loading: the file's size + the run
    (patcher,) = comfy.model_management.loaded_models()
    assert patcher.load_device == cuda and patcher.offload_device == torch.device("cpu")
    assert patcher.loaded_size() == patcher.model_size() == 440  # what ComfyUI counts as on the GPU
    assert resident.get(model_file, cuda, comfy, memory_required=5000) is model  # kept
    del patcher
    comfy.model_management.free_memory(1e9, cuda)  # ComfyUI needs the room
    assert resident.loaded() == [] and comfy.model_management.loaded_models() == []


def test_working_memory_asked_for_on_a_gpu():
    frames = torch.zeros((10, 70, 97, 3))
    # 64 x 89 hints, padded to 64 x 128 for the model; 4 workers on CUDA, each with a frame in flight
    assert node_module._working_memory(frames, 64, torch.device("cuda")) == 4 * 64 * 128 * 1024
    assert node_module._working_memory(frames[:2], 64, torch.device("cuda")) == 2 * 64 * 128 * 1024
    assert node_module._working_memory(frames, 64, torch.device("cpu")) == 0
