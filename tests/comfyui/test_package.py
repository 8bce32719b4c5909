"""The package as the Comfy Registry and ComfyUI-Manager take it: the metadata in pyproject.toml, what
.comfyignore keeps out of the archive, the checks `comfy node validate` runs, and example workflows that
use only existing nodes with valid inputs."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys

import pytest

from densevid.pipeline.comfyui import DROP_IN_ID, NODE_ID, DensePose_Preprocessor, node_config, widget_specs
from support.helpers import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
WORKFLOWS = sorted((REPO_ROOT / "example_workflows").glob("*.json"))
# ComfyUI's own nodes the examples use (comfy_extras/nodes_video.py, nodes.py), with their widgets' count
CORE_NODES = {"LoadVideo": 2, "SaveVideo": 3, "LoadImage": 2, "PreviewImage": 0}


def test_pyproject_has_what_the_registry_reads():
    project, comfy = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
    assert project["urls"]["Repository"].startswith("https://github.com/")
    assert {"PublisherId", "DisplayName", "Icon", "requires-comfyui"} <= set(comfy)
    assert comfy["requires-comfyui"] == ">=0.3.64"  # the V3 API and the VIDEO type
    assert "Environment :: GPU :: NVIDIA CUDA" in project["classifiers"]
    assert any(c.startswith("Operating System ::") for c in project["classifiers"])
    major, minor, patch = project["version"].split(".")  # the Registry wants a semantic version
    assert all(part.isdigit() for part in (major, minor, patch))


def _archived(paths: list[str]) -> list[str]:
    """The files `comfy node publish` would pack: tracked ones not matched by .comfyignore (directory
    patterns ending in / and plain names, the forms the file uses)."""
    patterns = [line.strip() for line in (REPO_ROOT / ".comfyignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path):
        return any(path.startswith(p) if p.endswith("/") else fnmatch.fnmatch(path, p) for p in patterns)
    return [path for path in paths if not ignored(path)]


def test_comfyignore_keeps_tests_scripts_and_docs_out_and_the_node_in():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    files = tracked.stdout.split() + [str(p.relative_to(REPO_ROOT)) for p in WORKFLOWS]
    archived = _archived(files)
    assert not [f for f in archived if f.split("/")[0] in ("tests", "scripts", "docs", ".ci")]
    for needed in ("__init__.py", "_base.py", "pipeline/comfyui/_video_node.py", "kernels/colormaps.py",
                   "configs/magicanimate.toml", "requirements.txt", "pyproject.toml",
                   "example_workflows/densepose_video.json"):
        assert needed in archived, needed


def test_the_code_passes_the_registrys_security_lint():
    # `comfy node validate` runs ruff with these rules (exec, eval) and warns on any finding
    result = subprocess.run([sys.executable, "-m", "ruff", "check", ".", "-q", "--select", "S102,S307"],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout


def _check_our_widgets(node_type: str, values: list) -> None:
    if node_type == DROP_IN_ID:
        optional = DensePose_Preprocessor.INPUT_TYPES()["optional"]
        assert len(values) == len(optional)
        for (name, (kind, spec)), value in zip(optional.items(), values):
            if isinstance(kind, list):
                assert value in kind, name
            else:
                assert kind == "INT" and spec["min"] <= value <= spec["max"], name
        return
    specs = widget_specs(["densepose_r50_fpn_dl.torchscript", "densepose_r101_fpn_dl.torchscript"])
    assert len(values) == len(specs)
    for spec, value in zip(specs, values):
        if spec.kind == "COMBO":
            assert value in spec.options, spec.name
        elif spec.kind == "INT":
            assert isinstance(value, int) and spec.min <= value <= spec.max, spec.name
        else:
            assert isinstance(value, bool if spec.kind == "BOOLEAN" else str), spec.name
    node_config(**{spec.name: value for spec, value in zip(specs, values)})  # a valid configuration


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_example_workflows_use_existing_nodes_with_valid_inputs_and_links(path):
    workflow = json.loads(path.read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    types = {node["type"] for node in nodes.values()}
    assert types & {NODE_ID, DROP_IN_ID}  # each shows one of ours
    for node in nodes.values():
        if node["type"] in CORE_NODES:
            assert len(node["widgets_values"]) == CORE_NODES[node["type"]], node["type"]
        else:
            assert node["type"] in (NODE_ID, DROP_IN_ID), node["type"]
            _check_our_widgets(node["type"], node["widgets_values"])
    for link_id, source, source_slot, target, target_slot, kind in workflow["links"]:
        assert nodes[source]["outputs"][source_slot]["type"] == kind
        assert link_id in nodes[source]["outputs"][source_slot]["links"]
        assert nodes[target]["inputs"][target_slot] == {**nodes[target]["inputs"][target_slot], "link": link_id,
                                                        "type": kind}
    assert workflow["last_link_id"] == max(link[0] for link in workflow["links"])
    assert workflow["last_node_id"] == max(nodes)
