"""core: what every stage shares — the user-facing errors and the value types passed between stages.

Offers: ``DensevidError`` and its kinds (``InputError``, ``OutputError``, ``ModelError``, ``ConfigError``,
``UsageError``), ``DensevidWarning``, the one-line formatters (``one_line``, ``os_reason``, ``root_cause``),
``file_sha256`` (kept on disk for large files, in ``cache_dir()``), and the value types ``FrameBatch`` /
``Frame`` (decoded frames) and ``Detections`` (one image's DensePose outputs).
May import: ``kernels`` (the part counts) and the package root's ``_base``; nothing else of densevid.
"""

from ..._base import lazy_exports

_EXPORTS = {
    "DensevidError": "._errors", "InputError": "._errors", "OutputError": "._errors", "ModelError": "._errors",
    "ConfigError": "._errors", "UsageError": "._errors", "DensevidWarning": "._errors", "DensevidNote": "._errors",
    "one_line": "._errors", "os_reason": "._errors", "root_cause": "._errors",
    "file_sha256": "._files", "prefetch_sha256": "._files", "cache_dir": "._files",
    "Frame": "._types", "FrameBatch": "._types", "Detections": "._types",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
