"""batch: many inputs with one model — the plan (expansion, naming, shards), resume, the runner and its
report, and the same on Ray.

Offers: the plan (``build_plan`` → ``Plan`` of ``Job``s, ``expand_inputs``, ``parse_shard``, ``shard_of``,
``MEDIA_SUFFIXES``); resume (``skip_check``, ``resume_check``, ``expected_fingerprint``); the runner
(``run_batch``, ``run_job``, ``EstimatorCache``, ``BatchStopped``, ``ProgressFactory``); the report
(``InputResult``, ``BatchReport``, ``STATUSES``); Ray (``run_on_ray``, ``MAX_ATTEMPTS``, ``import_ray``).
May import: ``core``, ``config``, ``io``, ``models``, ``engine``. Never ``cli`` or ``comfyui``.
"""

from ..._base import lazy_exports

_EXPORTS = {name: "._inputs" for name in (
    "build_plan", "Plan", "Job", "expand_inputs", "parse_shard", "shard_of", "select_shard", "plan_jobs",
    "read_list", "MEDIA_SUFFIXES", "VIDEO_SUFFIXES", "IMAGE_SUFFIXES")}
_EXPORTS.update({name: "._resume" for name in ("skip_check", "resume_check", "expected_fingerprint", "BatchAbort")})
_EXPORTS.update({name: "._runner" for name in (
    "run_batch", "run_job", "EstimatorCache", "BatchStopped", "ProgressFactory", "pending_result", "job_config")})
_EXPORTS.update({name: "._report" for name in ("InputResult", "BatchReport", "STATUSES", "REPORT_VERSION")})
_EXPORTS.update({name: "._ray" for name in ("run_on_ray", "MAX_ATTEMPTS", "import_ray")})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
