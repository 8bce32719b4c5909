"""Presets: configs/*.toml, --preset / --config, precedence, validation, `densevid presets`."""

import pytest
from click.testing import CliRunner

from clips import make_clip, synthetic_frames
from helpers import REPO_ROOT, decode_all, run_cli
from pipeline import ConfigError
from pipeline._presets import list_presets, load_config_file, load_preset
from pipeline.cli import main


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
    with pytest.raises(ConfigError, match="unknown preset 'magic'; available: .*magicanimate"):
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
    assert result.exit_code == 1 and "unknown preset 'nope'" in result.output
    assert result.output.strip().count("\n") == 0


def test_presets_ship_as_package_data():
    # `pip install .` (non-editable) installs configs/*.toml as pipeline/presets/*.toml, where
    # presets_dir() looks when there is no configs/ beside the package (checked by hand with a wheel)
    from pipeline._presets import tomllib  # tomllib, or tomli on Python 3.10

    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "pipeline.presets" in setuptools["packages"]
    assert setuptools["package-dir"]["pipeline.presets"] == "configs"
    assert setuptools["package-data"]["pipeline.presets"] == ["*.toml"]
