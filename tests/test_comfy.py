"""The ComfyUI node: its declared interface, and hints equal to the original node's, as IMAGE tensors."""

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from helpers import REPO_ROOT
from node_reference import blob_frames, node_hint
from pipeline.comfy import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, DensePose_Preprocessor

R50 = "densepose_r50_fpn_dl.torchscript"
R101 = "densepose_r101_fpn_dl.torchscript"


def test_node_interface_matches_the_original():
    assert NODE_CLASS_MAPPINGS == {"Inference_Core_DensePosePreprocessor": DensePose_Preprocessor}
    assert NODE_DISPLAY_NAME_MAPPINGS == {"Inference_Core_DensePosePreprocessor": "[Inference.Core] DensePose Estimator"}
    types = DensePose_Preprocessor.INPUT_TYPES()
    assert types["required"] == {"image": ("IMAGE",)}
    optional = types["optional"]
    assert optional["model"] == ([R50, R101], {"default": R50})
    assert optional["cmap"] == (["Viridis (MagicAnimate)", "Parula (CivitAI)"], {"default": "Viridis (MagicAnimate)"})
    kind, spec = optional["resolution"]
    assert kind == "INT" and spec["default"] == 512 and spec["min"] == 64 and spec["step"] == 64
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


def test_repository_entry_point_does_not_shadow_other_packages(tmp_path, model_dir_with_r50):
    # ComfyUI imports custom_nodes/densevid/__init__.py; another package named `kernels` must survive.
    fake = tmp_path / "site"
    (fake / "kernels").mkdir(parents=True)
    (fake / "kernels" / "__init__.py").write_text("WHO = 'someone else'\n")
    script = textwrap.dedent(f"""
        import importlib.util, sys
        sys.path.insert(0, {str(fake)!r})
        spec = importlib.util.spec_from_file_location("densevid_node", {str(REPO_ROOT / '__init__.py')!r},
                                                      submodule_search_locations=[{str(REPO_ROOT)!r}])
        node = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(node)
        import kernels
        assert kernels.WHO == 'someone else', kernels
        assert 'pipeline' not in sys.modules
        cls = node.NODE_CLASS_MAPPINGS['Inference_Core_DensePosePreprocessor']
        print(cls.__module__)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "densevid_pipeline.comfy"


def test_compiled_render_cache_is_shared_by_the_node_and_the_cli(tmp_path):
    # numba caches by source file: what the ComfyUI node (package `densevid_kernels`) compiled must
    # load in a CLI process (package `kernels`) and the other way round, not silently fall back
    # to the slower torch path. A copy of the sources gives a fresh cache.
    import shutil

    checkout = tmp_path / "densevid"
    checkout.mkdir()
    for name in ("kernels", "pipeline"):
        shutil.copytree(REPO_ROOT / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "__init__.py", checkout / "__init__.py")
    as_node = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("densevid_node", {str(checkout / '__init__.py')!r},
                                                      submodule_search_locations=[{str(checkout)!r}])
        node = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(node)
        assert sys.modules["densevid_kernels.render_cpu"].compiled_kernels() is not None
    """)
    as_cli = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(checkout)!r})
        from kernels import render_cpu
        assert render_cpu.__file__.startswith({str(checkout)!r})
        assert render_cpu.compiled_kernels() is not None
    """)
    for script in (as_node, as_cli, as_node):
        result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", script],
                                capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    assert list((checkout / "kernels" / "__pycache__").glob("_render_numba.*.nbi")), "nothing was cached"
