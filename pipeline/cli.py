"""The ``densevid`` command: parse flags, build a config, call the pipeline. Nothing else."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from ._config import (CMAP_CHOICES, FIT_CHOICES, MAX_BATCH_SIZE, MAX_RESOLUTION, MAX_SIZE, MAX_SMOOTH, MIN_RESOLUTION,
                      MIN_SIZE, EncodeConfig)
from ._errors import DensevidError

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"densevid: error: {message}", err=True)
    sys.exit(code)


def _sigterm_as_interrupt(signum, frame) -> None:
    # A pre-empted worker gets SIGTERM: unwind like Ctrl-C so temporary files are removed.
    raise KeyboardInterrupt


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="densevid")
def main() -> None:
    """densevid: turn videos of people into DensePose conditioning videos.

    Every frame becomes the DensePose part-index map of the people in it, coloured exactly as the
    ComfyUI "DensePose Estimator" node does (viridis on purple for MagicAnimate, or parula).
    """


# --- issue 6: framing, frame rate, smoothing, training outputs, presets ------------------------------
# Kept as one group of options applied to `encode`, and one helper that builds the config, so the
# command's own signature stays small.

def _even_size(ctx, param, value):
    if value is not None and value % 2:
        raise click.BadParameter(f"{value} is odd; the output is N x N H.264 (yuv420p needs even sides)")
    return value


def _crop_box_option(ctx, param, value):
    from ._framing import parse_crop_box

    if value is None:
        return None
    try:
        return parse_crop_box(value)
    except DensevidError as error:
        raise click.BadParameter(str(error)) from None


def _fps_option(ctx, param, value):
    from ._fps import parse_fps

    if value is None:
        return None
    try:
        return parse_fps(value)
    except DensevidError as error:
        raise click.BadParameter(str(error)) from None


def _odd_smooth(ctx, param, value):
    if value % 2 == 0:
        raise click.BadParameter(f"{value} is even; the window is centred, so it must be odd (1 = off)")
    return value


OUTPUT_OPTIONS = [
    click.option("--preset", default=None, metavar="NAME",
                 help="Named settings from configs/ (see `densevid presets`), e.g. magicanimate. Flags given "
                      "explicitly override it."),
    click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                 help="A preset TOML file of your own (same keys as configs/*.toml)."),
    click.option("--size", type=click.IntRange(MIN_SIZE, MAX_SIZE), default=None, callback=_even_size,
                 help="Output exactly SIZE x SIZE (even). See --fit. MagicAnimate wants 512."),
    click.option("--fit", type=click.Choice(FIT_CHOICES), default=None,
                 help="How --size frames a non-square video. crop (default): a centred square (or --crop-box) is "
                      "cut from the SOURCE before detection, so the model sees the person at SIZE. pad: the model "
                      "sees the whole frame (long side SIZE); the hint is centred on the background colour. "
                      "stretch: the hint is resized to SIZE x SIZE (nearest), as MagicAnimate's demo does."),
    click.option("--crop-box", default=None, metavar="X,Y,W,H", callback=_crop_box_option,
                 help="Crop this box of the upright source before detection (square with --fit crop)."),
    click.option("--fps", default=None, metavar="F", callback=_fps_option,
                 help="Resample to F frames/s by dropping or repeating frames (25, 29.97, 30000/1001); dropped "
                      "frames are never detected. Default: keep the source's timestamps."),
    click.option("--smooth", type=click.IntRange(1, MAX_SMOOTH), default=1, show_default=True, callback=_odd_smooth,
                 metavar="K", help="Per-pixel temporal majority vote of part labels over K frames (odd, centred; "
                                   "1 = off, the node's exact output)."),
    click.option("--frames", "frames_dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
                 help="Also write the hint frames as numbered lossless PNGs DIR/000000.png ..."),
    click.option("--preview", "preview_path", type=click.Path(path_type=Path), default=None, metavar="PATH.mp4",
                 help="Also write a side-by-side H.264 video: source (framed the same way) | hint."),
    click.option("--iuv", "iuv_path", type=click.Path(path_type=Path), default=None, metavar="PATH.npz",
                 help="Also write I (uint8 part index), U, V (float16 in [0,1]) and pts_seconds per frame as a "
                      "compressed .npz (numpy.load)."),
]


def output_options(command):
    for option in reversed(OUTPUT_OPTIONS):
        command = option(command)
    return command


# settings a preset may set, with the encode flag (parameter name) that overrides it
_PRESET_KEYS = ("model", "cmap", "resolution", "batch_size", "half", "lossless", "size", "fit", "crop_box", "fps",
                "smooth")


def build_config(ctx: click.Context, quiet: bool) -> EncodeConfig:
    """The run's config: built-in defaults < preset / --config file < flags given explicitly."""
    from ._presets import load_config_file, load_preset

    params = ctx.params
    if params.get("preset") and params.get("config_file"):
        raise click.UsageError("use --preset or --config, not both")
    preset = {}
    if params.get("preset"):
        preset = load_preset(params["preset"])
    elif params.get("config_file"):
        preset = load_config_file(params["config_file"])

    def explicit(name: str) -> bool:
        source = ctx.get_parameter_source(name)
        return source is not None and source not in (click.core.ParameterSource.DEFAULT,
                                                      click.core.ParameterSource.DEFAULT_MAP)

    values = {}
    for key in _PRESET_KEYS:
        values[key] = params[key] if explicit(key) or key not in preset else preset[key]
    return EncodeConfig(**values, device=params["device"], overwrite=params["overwrite"], progress=not quiet,
                        auto_resolution=not explicit("resolution") and "resolution" not in preset,
                        frames_dir=params["frames_dir"], preview_path=params["preview_path"],
                        iuv_path=params["iuv_path"]).with_env()


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output_path", type=click.Path(path_type=Path), default=None,
              help="Output file. Default: INPUT's name + _densepose.mp4 (.mkv with --lossless, .png for images).")
@click.option("--model", default="r50", show_default=True,
              help="r50, r101, a hub file name (densepose_r50_fpn_dl.torchscript), or a path to a TorchScript file.")
@click.option("--cmap", type=click.Choice(CMAP_CHOICES), default="viridis", show_default=True,
              help="viridis on a (68,1,84) background (MagicAnimate) or parula on black (CivitAI).")
@click.option("--resolution", type=click.IntRange(MIN_RESOLUTION, MAX_RESOLUTION), default=512, show_default=True,
              help="Short side of the image the model sees, and of the output. With --size, the model sees "
                   "what --fit says unless --resolution is given too.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=8, show_default=True,
              help="Frames per batch moved between pipeline stages.")
@click.option("--half", is_flag=True, help="Run the model in fp16 (CUDA only; ignored on the CPU).")
@click.option("--lossless", is_flag=True,
              help="Write lossless RGB (FFV1 in .mkv) that decodes to exactly the rendered pixels.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@output_options
def encode(input_path: Path, output_path: Path | None, model: str, cmap: str, resolution: int, device: str,
           batch_size: int, half: bool, lossless: bool, overwrite: bool, quiet: bool, **_output_options) -> None:
    """Render the DensePose hint video of INPUT.

    Example: densevid encode dance.mp4 --cmap viridis   (writes dance_densepose.mp4)

    MagicAnimate: densevid encode dance.mp4 --preset magicanimate   (512x512 centre crop, 25 fps)
    """
    from tqdm import tqdm

    from . import DensePoseEstimator, encode_video
    from ._decode import probe_video
    from ._engine import check_outputs, frame_plan

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        config = build_config(click.get_current_context(), quiet)
        # refuse a bad input or output path (or a crop box that does not fit) before the (slow) model load
        info = probe_video(input_path)
        output_path = check_outputs(input_path, output_path, info, config)
        frame_plan(info, config)
        estimator = DensePoseEstimator.from_config(config)
        with tqdm(total=info.frame_count if config.fps is None else None, unit="frame", desc=input_path.name, disable=quiet, leave=False) as bar:
            result = encode_video(input_path, output_path, estimator, progress=bar.update, info=info)
    except DensevidError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        _fail("interrupted; no output written", EXIT_INTERRUPTED)
    for warning in result.warnings:  # printed even with --quiet: they are about the output's content
        click.echo(f"densevid: warning: {warning}", err=True)
    fps = result.frames / result.seconds if result.seconds > 0 else float("inf")
    if not quiet:
        click.echo(f"{result.output_path}  ({result.frames} frames, {result.seconds:.1f} s, {fps:.1f} frames/s)")


@main.command()
def presets() -> None:
    """List the named presets (configs/*.toml) for `densevid encode --preset NAME`."""
    from ._presets import describe, list_presets, load_config_file, presets_dir

    found = list_presets()
    if not found:
        _fail("no presets found (looked for configs/*.toml beside the package and in the package data)")
    for name, path in found.items():
        try:
            settings = load_config_file(path)
        except DensevidError as error:
            click.echo(f"{name}: invalid: {error}")
            continue
        click.echo(f"{name}: {settings.get('description', '')}")
        click.echo(f"    {describe(settings)}")
    click.echo(f"(from {presets_dir()})")


if __name__ == "__main__":  # pragma: no cover
    main()
