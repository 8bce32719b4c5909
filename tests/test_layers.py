"""The house rules, checked on the source: the layers import only the layers below them, no module reaches
into another package's private modules or names, kernels import nothing from the pipeline; and the public
API (``densevid``'s names and each package's re-exports) resolves."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import densevid
from support.helpers import REPO_ROOT

# each package of the pipeline and the packages it may import (kernels and the root's _base: always)
LAYERS = {
    "core": set(),
    "config": {"core"},
    "io": {"core", "config"},
    "models": {"core", "config"},
    "engine": {"core", "config", "io", "models"},
    "batch": {"core", "config", "io", "models", "engine"},
    "cli": {"core", "config", "io", "models", "engine", "batch"},
    "comfyui": {"core", "config", "io", "models", "engine"},
}
PUBLIC_API = ["BatchReport", "BatchStopped", "ConfigError", "DensePoseEstimator", "Detections", "DensevidError",
              "DensevidWarning", "EncodeConfig", "EncodeResult", "Frame", "FrameBatch", "InputError", "InputResult",
              "Job", "ModelError", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "OutputError", "Plan",
              "UsageError", "build_plan", "encode_video", "render_frames", "run_batch", "run_on_ray"]


def _modules():
    for path in sorted((REPO_ROOT / "pipeline").rglob("*.py")) + sorted((REPO_ROOT / "kernels").rglob("*.py")):
        yield path, ("densevid",) + path.relative_to(REPO_ROOT).with_suffix("").parts


def _imports(path: Path, name: tuple[str, ...]):
    """(imported module as a tuple of parts, names imported from it) for every import of densevid in a file."""
    package = name[:-1] if name[-1] != "__init__" else name[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + tuple(node.module.split(".")) if node.module else base
            else:
                target = tuple(node.module.split("."))
            if target[0] == "densevid":
                yield target, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "densevid":
                    yield tuple(alias.name.split(".")), []


def test_the_layers_import_only_what_is_below_them():
    problems = []
    for path, name in _modules():
        rel = path.relative_to(REPO_ROOT)
        for target, names in _imports(path, name):
            if name[1] == "kernels":
                if target[:2] == ("densevid", "pipeline"):
                    problems.append(f"{rel}: kernels import the pipeline ({'.'.join(target)})")
                continue
            layer = name[2]
            if target[:2] == ("densevid", "kernels") or target == ("densevid", "_base"):
                continue
            if target[:2] != ("densevid", "pipeline") or len(target) < 3:
                problems.append(f"{rel}: imports {'.'.join(target)}")
                continue
            other = target[2]
            if other == layer:
                continue
            if other not in LAYERS[layer]:
                problems.append(f"{rel}: the {layer} layer imports {other}, which is not below it")
            if len(target) > 3 or any(n.startswith("_") for n in names):
                problems.append(f"{rel}: imports private {'.'.join(target)} {names}")
    assert problems == []


def test_the_root_package_imports_only_public_packages():
    names = [t for t, _ in _imports(REPO_ROOT / "__init__.py", ("densevid", "__init__"))]
    assert names == [("densevid", "_base")]  # everything else through the lazy table below
    table = densevid._EXPORTS
    assert all(module.count(".") == 2 and "._" not in module for module in table.values()), table


def test_the_public_api_is_what_it_says_and_every_name_resolves():
    assert densevid.__all__ == sorted(PUBLIC_API)
    for name in densevid.__all__:
        assert getattr(densevid, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        densevid.nope  # the lookup is the test


@pytest.mark.parametrize("package", ["core", "config", "io", "models", "engine", "batch", "comfyui"])
def test_every_name_a_package_re_exports_resolves(package):
    module = importlib.import_module(f"densevid.pipeline.{package}")
    assert module.__all__, package
    for name in module.__all__:
        assert hasattr(module, name), f"densevid.pipeline.{package} lists {name} but it does not resolve"
    assert set(module.__all__) <= set(dir(module))
