"""The README's Python blocks run as written (with a stand-in model where the README says "r50")."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from clips import make_clip, synthetic_frames
from densevid.pipeline._models import MODEL_FILES

ROOT = Path(__file__).resolve().parents[1]


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_block_runs_as_written(index, tmp_path, standin_models, monkeypatch, capsys):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copyfile(standin_models["tuple"], models / MODEL_FILES["r50"])  # what "r50" names, found by the env
    monkeypatch.setenv("DENSEVID_MODEL_DIR", str(models))
    work = tmp_path / "work"
    (work / "videos").mkdir(parents=True)
    make_clip(work / "dance.mp4", synthetic_frames(2, 80, 48, seed=1), codec="libx264")
    for i in range(2):
        make_clip(work / "videos" / f"clip{i}.mp4", synthetic_frames(2, 48, 64, seed=i), codec="libx264")
    monkeypatch.chdir(work)
    code = python_blocks()[index]
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    if "run_batch" in code:
        assert "{'done': 2, 'skipped': 0, 'failed': 0, 'pending': 0} 0" in capsys.readouterr().out
        assert sorted(p.name for p in (work / "hints").iterdir()) == ["clip0_densepose.mkv", "clip1_densepose.mkv"]
        assert (work / "report.json").is_file()
    if "encode_video" in code:
        assert (work / "dance_densepose.mp4").is_file()
