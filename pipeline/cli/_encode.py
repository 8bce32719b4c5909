"""``densevid encode``: its options (one per row of the settings table), the config they build, the run."""

from __future__ import annotations

import re
import signal
import sys
import warnings
from pathlib import Path

import click

from ..config import SETTINGS, EncodeConfig, flag_of
from ..core import ConfigError, DensevidError, DensevidNote, UsageError
from ._app import EXIT_INTERRUPTED, EXIT_USAGE, fail, main, signals_ignored, sigterm_as_interrupt

# what `--ray ADDRESS` accepts; any other word after --ray is an INPUT (`--ray videos/` starts a local Ray)
_RAY_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[\w.\-]+:\d+)$")


def _checked(setting):
    """A click callback parsing the value with the setting's own parser (a bad value: exit 2)."""
    def callback(ctx, param, value):
        if value is None or (setting.is_switch and value is False):
            return value
        try:
            return setting.parse(value)
        except ConfigError as error:
            raise click.BadParameter(str(error)) from None
    return callback


def settings_options(command):
    """Add an option for every setting of the table, in its order (so --help lists them so)."""
    for setting in reversed([s for s in SETTINGS if s.flag]):
        default_shown = setting.default not in (None, False)
        if setting.is_switch:
            option = click.option(flag_of(setting.name), setting.name, is_flag=True, default=False, help=setting.help)
        else:
            option = click.option(flag_of(setting.name), setting.name, default=setting.default,
                                  type=click.Choice(setting.choices) if setting.choices else None,
                                  metavar=setting.metavar, show_default=default_shown, callback=_checked(setting),
                                  help=setting.help)
        command = option(command)
    return click.option("--preset", default=None, metavar="NAME",
                        help="Named settings from configs/ (see `densevid presets`), e.g. magicanimate. Flags given "
                             "explicitly override it.")(
        click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, metavar="FILE",
                     help="A preset TOML file of your own (same keys as configs/*.toml).")(command))


def build_config(ctx: click.Context) -> EncodeConfig:
    """The run's config: built-in defaults < preset / --config file < flags given explicitly."""
    from ..config import load_config_file, load_preset

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

    values = {s.name: params[s.name] if explicit(s.name) or s.name not in preset else preset[s.name]
              for s in SETTINGS if s.flag}
    return EncodeConfig(**values)


@main.command()
@click.argument("inputs", metavar="INPUT...", nargs=-1)
@click.option("-o", "--output", "output_path", type=click.Path(path_type=Path), default=None,
              help="One INPUT file: the output file (or an existing directory to write into). Several inputs, "
                   "a directory, a glob or --from-list: a directory (created if missing) where the outputs mirror "
                   "the inputs' relative paths. Default: beside each input, as INPUT-stem_densepose.mp4 "
                   "(.mkv with --lossless, .png for images).")
@settings_options
@click.option("--from-list", "list_files", multiple=True, metavar="FILE",
              help="Read more INPUTs from FILE, one per line ('-' for stdin; blank lines and # comments ignored).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="Write a JSON report: per input status (done/skipped/failed/pending), output, frames, "
                   "seconds, error.")
@click.option("--shard", default=None, metavar="K/N",
              help="Process only shard K of N (0 <= K < N): inputs are assigned by sha1 of their relative path, so "
                   "N workers with K = 0..N-1 cover every input exactly once.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run on Ray (pip install \"densevid[ray]\"): one actor per GPU, or CPU actors. ADDRESS: auto, "
                   "HOST:PORT or ray://HOST:PORT of a running cluster; none (or 'local'): start a local Ray.")
@click.option("--ray-actors", type=click.IntRange(1, 4096), default=None, metavar="N",
              help="With --ray: number of actors (default: one per GPU of the cluster; 2 CPU actors without "
                   "GPUs).")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bars, no per-input lines, no summary (errors still shown).")
def encode(inputs: tuple[str, ...], output_path: Path | None, list_files: tuple[str, ...], report_path: Path | None,
           shard: str | None, ray_address: str | None, ray_actors: int | None, quiet: bool, **_settings) -> None:
    """Render the DensePose hint video of every INPUT.

    INPUT is a video or image file, a directory (searched recursively for video and image files),
    or a glob ('videos/**/*.mp4'). An input whose output exists, made from it with the same settings
    and model, is skipped, so rerunning the same command after a crash does only what is left; an
    output made otherwise is refused (--overwrite replaces it). One bad input does not stop the others.

    Exit code: 0 all done or skipped, 1 some failed, 2 usage error, 130 interrupted.

    \b
    Examples:
      densevid encode dance.mp4                      (writes dance_densepose.mp4)
      densevid encode dance.mp4 --preset magicanimate   (512x512 centre crop, 25 fps)
      densevid encode videos/ -o hints/ --report report.json
      densevid encode --from-list all.txt -o hints/ --shard $SLURM_ARRAY_TASK_ID/8
      densevid encode videos/ -o hints/ --ray        (local Ray; --ray auto joins a cluster)
    """
    from ..batch import BatchStopped, build_plan, parse_shard, run_batch
    from ._console import ConsoleProgress

    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    if quiet:
        warnings.filterwarnings("ignore", category=DensevidNote)  # notes are information: not with --quiet
    try:
        if ray_address is not None and not _RAY_ADDRESS.match(ray_address):
            inputs, ray_address = inputs + (ray_address,), "local"  # `--ray videos/`: the word is an INPUT
        if ray_actors is not None and ray_address is None:
            raise UsageError("--ray-actors needs --ray")
        if report_path is not None and not report_path.parent.is_dir():
            raise UsageError(f"--report {report_path}: directory {report_path.parent} does not exist")
        config = build_config(click.get_current_context())
        plan = build_plan(inputs, list_files, output_path, config, parse_shard(shard) if shard else None)
        progress = ConsoleProgress(len(plan.jobs), quiet=quiet, single=plan.single)
        try:
            if ray_address is not None:
                from ..batch import run_on_ray

                report = run_on_ray(plan.jobs, config, address=ray_address, num_actors=ray_actors,
                                    on_result=progress.result)
            else:
                report = run_batch(plan.jobs, config, progress_factory=progress.frames, on_result=progress.result)
        except BatchStopped as stopped:  # the model cannot load: report what there is, then one line
            report = stopped.report
        finally:
            progress.close()
        report.shard = shard
    except UsageError as error:
        fail(str(error), EXIT_USAGE)
    except DensevidError as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted; no output written", EXIT_INTERRUPTED)
    with signals_ignored():
        progress.summary(report)
        if report_path is not None:
            try:
                report.write(report_path)
            except DensevidError as error:
                fail(str(error))
    if report.fatal:
        fail(report.fatal)
    if report.interrupted:
        counts = report.counts
        if plan.single:
            fail("interrupted; no output written", EXIT_INTERRUPTED)
        fail(f"interrupted; {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed, "
              f"{counts['pending']} not finished: rerun the same command to finish them", EXIT_INTERRUPTED)
    sys.exit(report.exit_code)
