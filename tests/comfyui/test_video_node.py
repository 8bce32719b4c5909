"""The VIDEO node (V3 schema) on a fake ComfyUI with its comfy_api: its inputs come from the settings table,
its hint video is encode_video's of the same file (exact, lossless), with the source's timing and audio,
the frame window and trim, per-frame progress with throttled previews, interrupt, the in-memory fallback;
and the start-up line about the other pack that registers the drop-in's id."""

from __future__ import annotations

import io as bytes_io
import os
import shutil

import av
import numpy as np
import pytest
import torch

from densevid.pipeline.comfyui import (
    DISPLAY_NAME,
    NODE_ID,
    _node,
    clash_message,
    node_config,
    video_node_class,
    widget_specs,
)
from densevid.pipeline.config import SETTINGS_BY_NAME
from densevid.pipeline.core import ConfigError
from densevid.pipeline.engine import DensePoseEstimator, encode_video
from support import fake_comfyui
from support.clips import make_clip, make_clip_with_audio, synthetic_frames
from support.helpers import decode_all
from support.node_reference import node_hint

R50 = "densepose_r50_fpn_dl.torchscript"


@pytest.fixture()
def comfy(monkeypatch, tmp_path, standin_models):
    base = tmp_path / "ComfyUI"
    (base / "custom_nodes").mkdir(parents=True)
    (base / "models" / "densepose").mkdir(parents=True)
    shutil.copy(standin_models["tuple"], base / "models" / "densepose" / R50)
    _node.resident_models.clear()
    yield fake_comfyui.install(monkeypatch, base, api=True)
    _node.resident_models.clear()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames at 25 frames/s, lossless video, PCM audio (a staircase: frame i's samples at 1000 (i + 1))."""
    frames = synthetic_frames(12, 56, 40, seed=7)
    return make_clip_with_audio(tmp_path_factory.mktemp("video_node") / "dance.mkv", frames), frames


def _run(comfy, video, **inputs):
    inputs = {"model": R50, "resolution": 64, "lossless": True, **inputs}
    return video_node_class().execute(video=video, **inputs)


def _expected(tmp_path, clip_path, trim=None, **inputs):
    """encode_video's hint frames and times for the same file and the node's settings."""
    config = node_config(**{"model": R50, "resolution": 64, "lossless": True, **inputs}, device="cpu")
    estimator = DensePoseEstimator(str(_model_path(tmp_path)), resolution=64, device="cpu")
    out = tmp_path / f"expected_{len(list(tmp_path.iterdir()))}.mkv"
    encode_video(clip_path, out, estimator, config=config, trim=trim)
    return decode_all(out)


def _model_path(tmp_path):
    return tmp_path / "ComfyUI" / "models" / "densepose" / R50


def _audio_samples(path):
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        return np.concatenate([f.to_ndarray().ravel() for f in container.decode(container.streams.audio[0])])


def test_without_comfy_api_there_is_no_video_node_and_the_drop_in_stays_alone():
    from densevid.pipeline.comfyui import NODE_CLASS_MAPPINGS

    assert video_node_class() is None
    assert list(NODE_CLASS_MAPPINGS) == ["Inference_Core_DensePosePreprocessor"]


def test_the_schema_offers_the_clis_options_from_the_settings_table(comfy):
    schema = video_node_class().define_schema()
    assert (schema.node_id, schema.display_name) == (NODE_ID, DISPLAY_NAME) == ("DensevidDensePoseVideo",
                                                                                  "DensePose Video (densevid)")
    inputs = {i.id: i for i in schema.inputs}
    assert list(inputs) == ["video", "model", "preset", "cmap", "resolution", "size", "fit", "fps", "smooth", "half",
                            "lossless", "skip_frames", "every_nth", "max_frames"]
    assert inputs["video"].io_type == "VIDEO" and [o.io_type for o in schema.outputs] == ["VIDEO"]
    assert schema.is_output_node is True  # previews its video even with nothing connected
    assert inputs["model"].options["options"] == [R50, "densepose_r101_fpn_dl.torchscript"]
    assert inputs["preset"].options["options"] == ["none", "civitai", "magicanimate"]
    assert inputs["cmap"].options["options"] == list(SETTINGS_BY_NAME["cmap"].choices)
    assert (inputs["smooth"].options["min"], inputs["smooth"].options["max"]) == SETTINGS_BY_NAME["smooth"].parse.bounds
    assert inputs["every_nth"].options["max"] == 1000 and inputs["size"].options["step"] == 2
    for spec in widget_specs([R50]):  # every input explains itself, in the node's own names
        assert spec.tooltip and "--" not in spec.tooltip, spec.name
    assert inputs["smooth"].options["tooltip"] == SETTINGS_BY_NAME["smooth"].help  # the CLI's help


def test_node_config_maps_widgets_to_the_settings_and_refuses_bad_ones():
    config = node_config(size=512, fps="30000/1001", max_frames=0, preset="none")
    assert (config.size, config.fit, config.resolution, config.max_frames) == (512, "crop", None, None)
    assert node_config(preset="magicanimate").size == 512 and node_config(preset="magicanimate").fps == 25
    assert node_config(fit="pad").fit is None  # fit applies only with a size
    with pytest.raises(ConfigError, match=r"^fps: 'fast' is not a frame rate like 25"):
        node_config(fps="fast")
    with pytest.raises(ConfigError, match=r"^smooth: 4 is even: it must be odd"):
        node_config(smooth=4)
    with pytest.raises(ConfigError, match=r"unknown preset 'ma'; allowed: none, civitai, magicanimate"):
        node_config(preset="ma")


def test_the_hint_video_is_encode_videos_with_the_sources_timing_and_audio(comfy, clip, tmp_path):
    clip_path, _ = clip
    result = _run(comfy, comfy.api.InputImpl.VideoFromFile(str(clip_path)))
    (video,) = result.args
    path = video.get_stream_source()
    assert os.path.dirname(path) == comfy.folder_paths.get_temp_directory() and path.endswith(".mkv")
    assert result.ui.as_dict() == {"images": [{"filename": os.path.basename(path), "subfolder": "", "type": "temp"}],
                                   "animated": (True,)}
    hints, seconds = decode_all(path)
    expected, expected_seconds = _expected(tmp_path, clip_path)
    assert np.array_equal(hints, expected) and len(hints) == 12
    assert seconds == pytest.approx([i / 25 for i in range(12)]) == expected_seconds
    assert np.array_equal(_audio_samples(path), _audio_samples(clip_path))  # PCM copied as it is
    assert sorted(os.listdir(comfy.folder_paths.get_temp_directory())) == [os.path.basename(path)]


def test_the_frame_window_and_the_audio_start_together(comfy, clip, tmp_path):
    clip_path, _ = clip
    (video,) = _run(comfy, comfy.api.InputImpl.VideoFromFile(str(clip_path)), skip_frames=3, every_nth=2,
                    max_frames=3).args
    hints, seconds = decode_all(video.get_stream_source())
    expected, _ = _expected(tmp_path, clip_path, skip_frames=3, every_nth=2, max_frames=3)
    assert np.array_equal(hints, expected) and len(hints) == 3  # frames 3, 5, 7
    assert seconds == pytest.approx([0, 0.08, 0.16])
    audio = _audio_samples(video.get_stream_source())
    assert audio[0] == 4000 and audio[639] == 4000 and audio[640] == 5000  # frame 3's audio with frame 3


def test_a_trimmed_video_from_file_is_honoured(comfy, clip, tmp_path):
    from densevid.pipeline.engine import Trim

    clip_path, _ = clip
    video = comfy.api.InputImpl.VideoFromFile(str(clip_path))
    video.start_time, video.duration = 0.2, 0.16  # as a newer ComfyUI's trimmed VideoFromFile holds them
    (out,) = _run(comfy, video).args
    hints, seconds = decode_all(out.get_stream_source())
    expected, _ = _expected(tmp_path, clip_path, trim=Trim(0.2, 0.16))
    assert np.array_equal(hints, expected) and len(hints) == 4 and seconds[0] == 0  # frames 5..8
    assert _audio_samples(out.get_stream_source())[0] == 6000


def test_a_video_in_a_bytesio_is_spooled_and_the_spool_removed(comfy, clip, tmp_path):
    clip_path, _ = clip
    (video,) = _run(comfy, comfy.api.InputImpl.VideoFromFile(bytes_io.BytesIO(clip_path.read_bytes()))).args
    assert np.array_equal(decode_all(video.get_stream_source())[0], _expected(tmp_path, clip_path)[0])
    assert os.listdir(comfy.folder_paths.get_temp_directory()) == [os.path.basename(video.get_stream_source())]


def test_progress_moves_per_frame_with_throttled_previews(comfy, clip, monkeypatch):
    from densevid.pipeline.comfyui import _video_node

    clip_path, _ = clip
    _run(comfy, comfy.api.InputImpl.VideoFromFile(str(clip_path)))
    assert comfy.utils.progress == [(i, 12) for i in range(1, 13)]
    kind, image, size = comfy.utils.previews[0][1]  # the first frame's hint, at once
    assert (kind, size, image.size) == ("JPEG", 512, (64, 90)) and comfy.utils.previews[0][0] == 1
    assert len(comfy.utils.previews) <= 2  # a CPU run of 12 small frames takes well under 1 s

    comfy.utils.progress.clear(), comfy.utils.previews.clear()
    monkeypatch.setattr(_video_node, "PREVIEW_EVERY_SECONDS", 0.0)  # unthrottled: every hint is a preview
    (video,) = _run(comfy, comfy.api.InputImpl.VideoFromFile(str(clip_path))).args
    previews = comfy.utils.previews
    values = [value for value, _ in previews]  # the latest hint at each check (frames may finish in twos)
    assert values == sorted(set(values)) and values[-1] == 12 and len(values) >= 6
    hints, _ = decode_all(video.get_stream_source())
    for value, (_, image, _) in previews:  # each preview is the hint of the frame the bar shows
        assert np.array_equal(np.asarray(image), hints[value - 1])


@pytest.mark.parametrize("after_frames", [0, 2])
def test_interrupt_stops_within_a_frame_and_leaves_no_file(comfy, monkeypatch, tmp_path, after_frames):
    long_clip = make_clip(tmp_path / "long.mkv", synthetic_frames(48, 56, 40, seed=3))
    bar = comfy.utils.ProgressBar

    class InterruptingBar(bar):
        def update_absolute(self, value, total=None, preview=None):
            super().update_absolute(value, total, preview)
            if value >= after_frames:
                comfy.model_management.interrupt_current_processing()

    monkeypatch.setattr(comfy.utils, "ProgressBar", InterruptingBar)
    if after_frames == 0:
        comfy.model_management.interrupt_current_processing()
    with pytest.raises(fake_comfyui.InterruptProcessingException):
        _run(comfy, comfy.api.InputImpl.VideoFromFile(str(long_clip)))
    values = [value for value, _ in comfy.utils.progress]
    assert values == list(range(1, after_frames + 1))  # stopped at the next check: nothing after it
    assert os.listdir(comfy.folder_paths.get_temp_directory()) == []  # no hint, no partial


def test_a_video_in_memory_is_rendered_from_its_components(comfy, clip, tuple_model):
    clip_path, frames = clip
    components = comfy.api.InputImpl.VideoFromFile(str(clip_path)).get_components()
    video = comfy.api.InputImpl.VideoFromComponents(components)
    (out,) = _run(comfy, video, skip_frames=2, every_nth=5).args
    got = out.get_components()
    assert got.frame_rate == 5 and got.images.shape == (2, 90, 64, 3)  # frames 2 and 7, at 25 / 5 frames/s
    for hint, index in zip(got.images, (2, 7)):
        frame_u8 = np.asarray(components.images[index].numpy() * 255.0, dtype=np.uint8)
        assert torch.equal(hint, torch.from_numpy(node_hint(frame_u8, tuple_model, "viridis", 64) / np.float32(255)))
    assert got.audio["waveform"].shape[-1] == components.audio["waveform"].shape[-1] - 2 * 640
    with pytest.raises(ConfigError, match="fps needs a file-backed video"):
        _run(comfy, video, fps="25")


def test_the_clash_line_names_the_active_pack_and_how_to_choose(tmp_path, monkeypatch):
    custom_nodes = tmp_path / "custom_nodes"
    ours = tmp_path / "densevid"
    (custom_nodes / "ComfyUI-Inference-Core-Nodes").mkdir(parents=True)
    ours.mkdir()
    (custom_nodes / "densevid").symlink_to(ours)
    listing = ["densevid", "ComfyUI-Inference-Core-Nodes"]
    monkeypatch.setattr(os, "listdir", lambda path: list(listing))
    line = clash_message([str(custom_nodes)], ours.resolve())
    assert line.startswith("densevid: ComfyUI-Inference-Core-Nodes also registers Inference_Core_DensePosePreprocessor")
    assert "here ComfyUI-Inference-Core-Nodes's" in line and "ComfyUI-Inference-Core-Nodes.disabled" in line
    listing.reverse()  # densevid is loaded last: its node is the one ComfyUI keeps
    assert "here densevid's; to use ComfyUI-Inference-Core-Nodes's, disable densevid" in \
        clash_message([str(custom_nodes)], ours.resolve())
    listing[:] = ["densevid", "ComfyUI-Inference-Core-Nodes.disabled"]
    assert clash_message([str(custom_nodes)], ours.resolve()) is None
