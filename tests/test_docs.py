"""The Python blocks of the README and of docs/*.md run as written (with a stand-in model where they say
"r50"), in a directory with `dance.mp4` and a `videos/` directory, as the pages say."""

from __future__ import annotations

import re
import shutil

import pytest

from densevid.pipeline.models import MODEL_FILES
from support.clips import make_clip, synthetic_frames
from support.helpers import REPO_ROOT

PAGES = [REPO_ROOT / "README.md"] + sorted((REPO_ROOT / "docs").glob("*.md"))


def python_blocks() -> list[tuple[str, int, str]]:
    """(page, block number, code) of every ```python block."""
    blocks = []
    for page in PAGES:
        found = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
        blocks += [(page.relative_to(REPO_ROOT).as_posix(), i + 1, code) for i, code in enumerate(found)]
    return blocks


def test_the_pages_have_python_blocks():
    assert len(python_blocks()) >= 3


@pytest.mark.parametrize("page,number,code", [pytest.param(*block, id=f"{block[0]}-{block[1]}")
                                              for block in python_blocks()])
def test_python_block_runs_as_written(page, number, code, tmp_path, standin_models, monkeypatch, capsys):
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
    exec(compile(code, f"{page} python block {number}", "exec"), {"__name__": "__docs__"})  # noqa: S102 (the pages' own code, the test's subject)
    if "run_batch" in code:
        assert "{'done': 2, 'skipped': 0, 'failed': 0, 'pending': 0} 0" in capsys.readouterr().out
        assert sorted(p.name for p in (work / "hints").iterdir()) == ["clip0_densepose.mkv", "clip1_densepose.mkv"]
        assert (work / "report.json").is_file()
    if "encode_video(" in code:
        assert (work / "dance_densepose.mp4").is_file()
