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
from densevid.pipeline.comfy import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, DensePose_Preprocessor

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


def _checkout_copy(parent):
    """A copy of the package's files (a fresh numba cache) as ComfyUI/custom_nodes/densevid would hold it."""
    checkout = parent / "custom_nodes" / "densevid"
    checkout.mkdir(parents=True)
    for name in ("kernels", "pipeline", "configs"):
        shutil.copytree(REPO_ROOT / name, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "__init__.py", checkout / "__init__.py")
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
    assert module == str(checkout).replace(".", "_x_") + ".pipeline.comfy"
    assert display == "[Inference.Core] DensePose Estimator"


@pytest.mark.slow
def test_compiled_render_cache_is_shared_by_the_node_and_the_cli(tmp_path):
    # numba caches by source file: what the ComfyUI node (package named after its path) compiled
    # must load in a CLI process (package `densevid`) and the other way round, not be compiled
    # again or fall back to a slower path. A copy of the sources gives a fresh cache.
    checkout = _checkout_copy(tmp_path)
    as_node = _load_as_comfyui_does(checkout) + textwrap.dedent("""
        render_cpu = sys.modules[node.__name__ + ".kernels.render_cpu"] if node.__name__ + ".kernels.render_cpu" in sys.modules \
            else importlib.import_module(node.__name__ + ".kernels.render_cpu")
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
