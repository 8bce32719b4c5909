"""The ``densevid`` command: parse flags, build a config, call the pipeline. Nothing else."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from ._config import CMAP_CHOICES, MAX_BATCH_SIZE, MAX_RESOLUTION, MIN_RESOLUTION, EncodeConfig
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


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output_path", type=click.Path(path_type=Path), default=None,
              help="Output file. Default: INPUT's name + _densepose.mp4 (.mkv with --lossless, .png for images).")
@click.option("--model", default="r50", show_default=True,
              help="r50, r101, a hub file name (densepose_r50_fpn_dl.torchscript), or a path to a TorchScript file.")
@click.option("--cmap", type=click.Choice(CMAP_CHOICES), default="viridis", show_default=True,
              help="viridis on a (68,1,84) background (MagicAnimate) or parula on black (CivitAI).")
@click.option("--resolution", type=click.IntRange(MIN_RESOLUTION, MAX_RESOLUTION), default=512, show_default=True,
              help="Short side of the image the model sees, and of the output.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=8, show_default=True,
              help="Frames per batch moved between pipeline stages.")
@click.option("--half", is_flag=True, help="Run the model in fp16 (CUDA only; ignored on the CPU).")
@click.option("--lossless", is_flag=True,
              help="Write lossless RGB (FFV1 in .mkv) that decodes to exactly the rendered pixels.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def encode(input_path: Path, output_path: Path | None, model: str, cmap: str, resolution: int, device: str,
           batch_size: int, half: bool, lossless: bool, overwrite: bool, quiet: bool) -> None:
    """Render the DensePose hint video of INPUT.

    Example: densevid encode dance.mp4 --cmap viridis   (writes dance_densepose.mp4)
    """
    from tqdm import tqdm

    from . import DensePoseEstimator, encode_video
    from ._decode import probe_video
    from ._engine import resolve_output_path

    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        config = EncodeConfig(model=model, cmap=cmap, resolution=resolution, device=device, batch_size=batch_size,
                              half=half, lossless=lossless, overwrite=overwrite, progress=not quiet).with_env()
        # refuse a bad input or output path before the (slow) model load
        info = probe_video(input_path)
        output_path = resolve_output_path(input_path, output_path, info, config.lossless, config.overwrite)
        estimator = DensePoseEstimator.from_config(config)
        with tqdm(total=info.frame_count, unit="frame", desc=input_path.name, disable=quiet, leave=False) as bar:
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


if __name__ == "__main__":  # pragma: no cover
    main()
