"""Presets: configs/*.toml, --preset / --config, precedence, validation, `densevid presets`."""

import subprocess
import sys
import zipfile

import pytest
from click.testing import CliRunner

from densevid import ConfigError, UsageError
from densevid.pipeline.cli import main
from densevid.pipeline.config import list_presets, load_config_file, load_preset
from support.clips import make_clip, synthetic_frames
from support.helpers import REPO_ROOT, decode_all, run_cli, subprocess_env


def test_shipped_presets_load():
    assert {"magicanimate", "civitai"} <= set(list_presets())
    magic = load_preset("magicanimate")
    assert magic["cmap"] == "viridis" and magic["size"] == 512 and magic["fit"] == "crop" and magic["fps"] == 25
    assert magic["lossless"] is False
    assert load_preset("civitai") == {"description": load_preset("civitai")["description"], "cmap": "parula"}
    assert list_presets()["magicanimate"].parent == REPO_ROOT / "configs"


def test_presets_command_lists_names_descriptions_settings():
    result = CliRunner().invoke(main, ["presets"])
    assert result.exit_code == 0
    assert "magicanimate:" in result.output and "civitai:" in result.output and "size=512" in result.output


@pytest.mark.parametrize("text,message", [
    ('sise = 512\n', "unknown key 'sise'; allowed:"),
    ('size = 511\n', "size = 511 is not allowed; expected an even integer"),
    ('fit = "squash"\nsize = 64\n', "fit = 'squash' is not allowed; expected one of crop, pad, stretch"),
    ('cmap = "jet"\n', "cmap = 'jet' is not allowed"),
    ('fps = 0\n', "fps = 0 is not allowed"),
    ('smooth = 4\n', "expected an odd integer"),
    ('lossless = "yes"\n', "expected true or false"),
    ('crop_box = [1, 2, 3]\n', "crop_box"),
    ('size = [\n', "not valid TOML"),
    ('fit = "pad"\n', "fit needs size"),
])
def test_bad_config_files_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="mine.toml") as info:
        load_config_file(path)
    assert message in str(info.value)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(UsageError, match="unknown preset 'magic'; available: .*magicanimate"):
        load_preset("magic")


def test_preset_and_explicit_flags(tmp_path, standin_models):
    clip = make_clip(tmp_path / "c.mkv", synthetic_frames(6, 40, 30, seed=1))
    model = standin_models["tuple"]
    config = tmp_path / "small.toml"
    config.write_text('description = "test"\ncmap = "parula"\nsize = 64\nfit = "pad"\nfps = 50\nlossless = true\n')
    result = run_cli(clip, "--config", config, "--model", model, "-o", tmp_path / "a.mkv")
    assert result.exit_code == 0, result.output
    hints, seconds = decode_all(tmp_path / "a.mkv")
    assert hints.shape == (12, 64, 64, 3) and (hints[0, 0, 0] == 0).all()  # parula pads with black
    # explicit flags win over the file; what the flags don't set still comes from the file
    result = run_cli(clip, "--config", config, "--model", model, "--cmap", "viridis", "--fit", "crop", "--fps", "25",
                      "-o", tmp_path / "b.mkv")
    assert result.exit_code == 0, result.output
    hints, seconds = decode_all(tmp_path / "b.mkv")
    assert hints.shape == (6, 64, 64, 3) and tuple(hints[0, 0, 0]) == (68, 1, 84)
    # --preset magicanimate: 512x512 H.264 at 25 fps (a 4-frame clip keeps this quick)
    short = make_clip(tmp_path / "short.mkv", synthetic_frames(4, 40, 30, seed=2), fps=50)
    result = run_cli(short, "--preset", "magicanimate", "--model", model, "-o", tmp_path / "m.mp4")
    assert result.exit_code == 0, result.output
    hints, seconds = decode_all(tmp_path / "m.mp4")
    assert hints.shape == (2, 512, 512, 3) and seconds == [0.0, 0.04]


def test_preset_usage_errors(tmp_path):
    result = run_cli(tmp_path / "x.mp4", "--preset", "magicanimate", "--config", tmp_path / "c.toml")
    assert result.exit_code == 2 and "not both" in result.output
    result = run_cli(tmp_path / "x.mp4", "--preset", "nope")
    assert result.exit_code == 2 and "unknown preset 'nope'" in result.output
    assert result.output.strip().count("\n") == 0


@pytest.mark.slow
def test_wheel_has_one_top_level_package_and_finds_its_presets(tmp_path):
    # `pip install .` must put only `densevid` into site-packages (not generic names such as
    # `pipeline` or `kernels`), with the presets as package data where presets_dir() finds them
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(REPO_ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("densevid-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"densevid", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "densevid/configs/magicanimate.toml" in names and "densevid/kernels/_render_numba.py" in names
    assert not [name for name in names if "/tests/" in name or "/scripts/" in name]
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    code = ("import densevid; from densevid.pipeline.config import list_presets; "
            "print(densevid.__file__, sorted(list_presets()))")
    run = subprocess.run([sys.executable, "-c", code], env=subprocess_env(target), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [str(target / "densevid" / "__init__.py"), "['civitai',", "'magicanimate']"]
