"""``densevid models download|standin|list``: the weights ahead of a job, stand-ins to try it without them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from ..core import DensevidError
from ._app import EXIT_INTERRUPTED, fail, main, sigterm_as_interrupt


@main.group()
def models() -> None:
    """Fetch the model weights ahead of a job, and see what is cached.

    Download once where there is internet (into the Hugging Face cache, HF_HOME), then run the
    workers with HF_HUB_OFFLINE=1 and the same HF_HOME (or DENSEVID_MODEL_DIR).
    """


@models.command("download")
@click.argument("which", type=click.Choice(["r50", "r101", "all"]), default="r50")
@click.option("--force", is_flag=True, help="Download again even when the file is cached.")
def models_download(which: str, force: bool) -> None:
    """Download WHICH model (default r50) into the cache and verify it loads as a DensePose TorchScript model."""
    from ..models import MODEL_FILES, download_model, format_size

    names = list(MODEL_FILES) if which == "all" else [which]
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    try:
        for name in names:
            entry = download_model(name, force=force)
            click.echo(f"{name}  {entry.filename}  {format_size(entry.size)}  sha256 {entry.sha256}  {entry.path}")
    except DensevidError as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)


@models.command("standin")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--real-cost", is_flag=True,
              help="The hub files' architecture, parameter names and cost (detectron2's DensePose R-CNN "
                   "R50/R101-FPN-DL, about 265 and 340 MB, seconds per frame on a CPU) instead of the small, fast one.")
@click.option("--force", is_flag=True, help="Replace model files that exist in DIRECTORY.")
def models_standin(directory: Path, real_cost: bool, force: bool) -> None:
    """Write stand-in models with MADE-UP weights into DIRECTORY, under the real file names.

    For trying densevid without the real weights: DENSEVID_MODEL_DIR=DIRECTORY densevid encode VIDEO.
    The people and body parts a stand-in finds come from the picture's bright or contrasting regions;
    its output is not a DensePose estimate.
    """
    from ..models import write_model_files

    try:
        paths = write_model_files(directory, real_cost=real_cost, overwrite=force)
    except DensevidError as error:
        fail(str(error))
    kind = "real-cost stand-in" if real_cost else "stand-in"
    for path in paths:
        click.echo(f"wrote {path} ({kind} with made-up weights, not the real model)")
    click.echo(f"try it: DENSEVID_MODEL_DIR={directory.resolve()} densevid encode VIDEO")


@models.command("list")
def models_list() -> None:
    """Show which models are found, where, their size, the precision of their weights and what --engine auto runs."""
    from ..models import PRECISION_RULE, cached_models, format_size, hf_cache_dir, native_summary

    model_dir = os.environ.get("DENSEVID_MODEL_DIR")
    click.echo(f"hub cache: {hf_cache_dir()}")
    click.echo(f"DENSEVID_MODEL_DIR: {model_dir} (searched first)" if model_dir else "DENSEVID_MODEL_DIR: not set")
    entries = cached_models(model_dir)
    for entry in entries:
        if entry.path:
            where = f"{format_size(entry.size)}  {entry.weights or '?'}  {entry.where}  {entry.path}"
        else:
            where = "not found (DENSEVID_MODEL_DIR, hub cache)" if model_dir else "not cached"
        click.echo(f"{entry.name:<5} {entry.filename:<36} {where}")
        if entry.path:
            click.echo(f"      --engine auto runs {native_summary(entry.path)}")
    if any(entry.path for entry in entries):
        click.echo(f"precision: {PRECISION_RULE}")
