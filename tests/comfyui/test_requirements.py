"""requirements.txt (what ComfyUI users install) against pyproject.toml (what pip installs for densevid)."""

from __future__ import annotations

import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.helpers import REPO_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

COMFYUI_OWNS = {"torch", "torchvision"}  # ComfyUI's own: a custom node must never make pip replace them


def _by_name(lines) -> dict[str, Requirement]:
    requirements = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in requirements}


def _requirements_txt() -> dict[str, Requirement]:
    lines = [line.strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()]
    return _by_name(line for line in lines if line and not line.startswith("#"))


def test_requirements_txt_is_pyprojects_runtime_dependencies_without_torch():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = _by_name(project["dependencies"])
    listed = _requirements_txt()
    assert COMFYUI_OWNS <= set(runtime)
    assert not COMFYUI_OWNS & set(listed)
    assert set(listed) == set(runtime) - COMFYUI_OWNS
    for name, requirement in listed.items():  # same bounds and markers: one source of truth, copied
        assert str(requirement.specifier) == str(runtime[name].specifier), name
        assert str(requirement.marker) == str(runtime[name].marker), name


def test_requirements_txt_never_pins_an_upper_bound():
    # ComfyUI and its other custom nodes share one environment: an upper bound or an exact pin here
    # would make pip downgrade (or upgrade) what they use, numpy first of all
    for name, requirement in _requirements_txt().items():
        assert all(spec.operator == ">=" for spec in requirement.specifier), f"{name}: {requirement.specifier}"
