"""A densevid command whose Ray workers die mid-video, for the retry tests (kept out of densevid itself).

``python tests/support/dying_ray_worker.py KILLS_DIR NAME=TIMES[,NAME=TIMES] encode ...``: the worker
encoding the input named NAME kills itself (``os._exit``) after writing its first frames, TIMES times in
all, counted by marker files in KILLS_DIR (each retry is a fresh worker process). Run as a script, the
worker class lives in ``__main__``, which Ray pickles by value: the workers need nothing of the tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import densevid.pipeline.batch._ray as ray_module


class DyingWorker(ray_module._Worker):
    kills_dir = ""  # set by main() before Ray pickles the class (with its attributes)
    plan: dict = {}

    def progress(self, job, n: int) -> None:
        name = job.input_path.name
        if name in self.plan:
            kills = Path(self.kills_dir)
            markers = [p for p in kills.iterdir() if p.name.startswith(name + ".")]
            if len(markers) < self.plan[name]:
                (kills / f"{name}.{len(markers)}").touch()
                os._exit(1)  # mid-video: its partial file is left behind for the driver to remove
        super().progress(job, n)


def main(argv: list[str]) -> None:
    kills_dir, spec, *cli_args = argv
    DyingWorker.kills_dir = kills_dir
    DyingWorker.plan = {name: int(times) for name, _, times in (item.partition("=") for item in spec.split(","))}
    ray_module._Worker = DyingWorker  # what run_on_ray starts its actors from
    from densevid.pipeline.cli import main as cli_main

    cli_main(cli_args)


if __name__ == "__main__":
    main(sys.argv[1:])
