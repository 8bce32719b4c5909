"""The settings table (pipeline/config SETTINGS): one definition that the Python API, the CLI,
presets and the ComfyUI node all validate with."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from densevid import ConfigError, EncodeConfig
from densevid.kernels.colormaps import COLORMAPS
from densevid.pipeline.cli import main
from densevid.pipeline.config import (
    DEFAULT_RESOLUTION,
    PRESET_KEYS,
    SETTINGS,
    SETTINGS_BY_NAME,
    flag_of,
    load_config_file,
)

# a value each setting must refuse, as a Python value, a command-line string and a TOML line
BAD = {
    "model": ("   ", "   ", 'model = ""'),
    "cmap": ("jet", "jet", 'cmap = "jet"'),
    "resolution": (16385, "63", "resolution = 16385"),
    "device": ("gpu", "gpu", None),
    "engine": ("onnx", "onnx", 'engine = "onnx"'),
    "batch_size": (0, "257", "batch_size = 0"),
    "workers": (0, "65", None),
    "half": ("yes", None, 'half = "yes"'),
    "lossless": (1, None, "lossless = 1"),
    "overwrite": ("no", None, None),
    "size": (65, "65", "size = 65"),
    "fit": ("squash", "squash", 'fit = "squash"\nsize = 64'),
    "crop_box": ("1,2,3", "1,2,3", "crop_box = [1, 2, 3]"),
    "fps": (0, "abc", "fps = 0"),
    "smooth": (4, "4", "smooth = 4"),
    "skip_frames": (-1, "-1", "skip_frames = -1"),
    "every_nth": (0, "1001", "every_nth = 0"),
    "max_frames": (0, "0", "max_frames = 0"),
    "frames_dir": (5, "", None),
    "preview_path": ("", "", None),
    "iuv_path": ([], "", None),
}


def test_every_setting_has_a_bad_value_here():
    # a new setting must come with the value it refuses (and the three ways in are tested below)
    assert set(BAD) == set(SETTINGS_BY_NAME)


@pytest.mark.parametrize("name", sorted(BAD))
def test_python_api_refuses_a_bad_value_naming_the_setting(name):
    with pytest.raises(ConfigError, match=rf"^{name}: .*(not|odd|even|out of range)"):
        EncodeConfig(**{name: BAD[name][0]})


@pytest.mark.parametrize("name", sorted(n for n, v in BAD.items() if v[1] is not None))
def test_cli_refuses_a_bad_value_as_a_usage_error(name):
    result = CliRunner().invoke(main, ["encode", "x.mp4", flag_of(name), BAD[name][1]])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag_of(name)}'" in result.output


@pytest.mark.parametrize("name", sorted(n for n, v in BAD.items() if v[2] is not None))
def test_preset_file_refuses_a_bad_value_naming_file_and_key(tmp_path, name):
    path = tmp_path / "mine.toml"
    path.write_text(BAD[name][2] + "\n")
    with pytest.raises(ConfigError, match=rf"mine\.toml: {name} = .* is not allowed; expected "
                                          + SETTINGS_BY_NAME[name].parse.allowed[:12]):
        load_config_file(path)


def test_cli_options_are_the_table():
    result = CliRunner().invoke(main, ["encode", "--help"])
    assert result.exit_code == 0
    for setting in SETTINGS:
        assert (flag_of(setting.name) in result.output) == setting.flag
    assert set(PRESET_KEYS) == {"description"} | {s.name for s in SETTINGS if s.preset}
    # device, overwrite and the extra output paths belong to a run, not to a preset
    assert not {"device", "workers", "overwrite", "frames_dir", "preview_path", "iuv_path"} & set(PRESET_KEYS)


def test_defaults_and_parsing_are_the_tables():
    config = EncodeConfig()
    for setting in SETTINGS:
        assert getattr(config, setting.name) == setting.default
    assert config.resolution is None and config.detection_resolution == DEFAULT_RESOLUTION
    parsed = EncodeConfig(fps="30000/1001", crop_box="1,2,30,40", device="CUDA:1 ", resolution="128",
                          frames_dir="out", smooth=3)
    assert parsed.fps == Fraction(30000, 1001) and parsed.crop_box == (1, 2, 30, 40) and parsed.device == "cuda:1"
    assert parsed.resolution == 128 and parsed.detection_resolution == 128 and parsed.frames_dir == Path("out")


def test_resolution_range_is_the_original_nodes():
    # 64..16384, as comfyui_controlnet_aux allows: the CLI, presets, the API and the node share it
    assert EncodeConfig(resolution=16384).resolution == 16384 and EncodeConfig(resolution=64).resolution == 64
    assert SETTINGS_BY_NAME["resolution"].parse.allowed == "an integer in 64..16384"


def test_cross_setting_rules():
    with pytest.raises(ConfigError, match="fit 'pad' needs a size"):
        EncodeConfig(fit="pad")
    with pytest.raises(ConfigError, match="cannot be combined with --smooth"):
        EncodeConfig(iuv_path="a.npz", smooth=3)


def test_node_choices_come_from_the_tables():
    from densevid.pipeline.comfyui import DensePose_Preprocessor

    optional = DensePose_Preprocessor.INPUT_TYPES()["optional"]
    assert optional["cmap"][0] == [label for _, label in COLORMAPS.values()]
    spec = optional["resolution"][1]
    low, high = SETTINGS_BY_NAME["resolution"].parse.allowed.split()[-1].split("..")
    assert (spec["min"], spec["max"]) == (int(low), int(high))
    with pytest.raises(ValueError, match="unknown colormap 'Jet'; allowed: Viridis"):
        DensePose_Preprocessor().execute(None, cmap="Jet")
