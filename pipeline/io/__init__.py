"""io: everything that reads or writes files — decoding, the writers, the sinks a job's outputs go
through, and the fingerprint stored with every output. The only package that imports PyAV.

Offers: decoding (``probe_video`` → ``VideoInfo``, ``iter_frame_batches`` → ``FrameBatch``es); writers
(``VideoWriter``, ``write_png``, ``FramesDirWriter``, ``IuvWriter``), all atomic and durable through
``Partial`` (a locked hidden file, fsync, rename, fsync of the directory) with ``remove_stale_partials``
for what a killed run left; the sinks (``OutputTargets``, ``check_targets``, ``open_sinks``,
``OutputBatch``); output names (``output_name``, ``default_output_path``, ``OUTPUT_MARK``); fingerprints
(``make_fingerprint``, ``stored_fingerprint``, ``mismatch``); the source's audio into a hint video
(``mux_audio``, ``has_audio``); small checks
(``same_file``, ``exists_message``, ``check_output_dir``).
May import: ``core``, ``config``. Never ``models``, ``engine`` or anything above.
"""

from ..._base import lazy_exports

_EXPORTS = {
    "VideoInfo": "._decode", "probe_video": "._decode", "iter_frame_batches": "._decode",
    "VideoWriter": "._video", "read_video_fingerprint": "._video",
    "png_bytes": "._png", "write_png": "._png", "read_png_text": "._png",
    "FramesDirWriter": "._training", "IuvWriter": "._training", "read_frames_fingerprint": "._training",
    "read_iuv_fingerprint": "._training", "PNG_DIGITS": "._training",
    "AtomicOutput": "._atomic", "Partial": "._atomic", "remove_stale_partials": "._atomic",
    "same_file": "._atomic", "exists_message": "._atomic", "check_output_dir": "._atomic",
    "check_file_target": "._atomic", "check_dir_target": "._atomic",
    "output_name": "._naming", "default_output_path": "._naming", "OUTPUT_MARK": "._naming",
    "FINGERPRINT_TAG": "._naming", "partial_name": "._naming",
    "OutputTargets": "._sinks", "OutputBatch": "._sinks", "check_targets": "._sinks", "open_sinks": "._sinks",
    "Sinks": "._sinks",
    "make_fingerprint": "._fingerprint", "stored_fingerprint": "._fingerprint", "mismatch": "._fingerprint",
    "input_identity": "._fingerprint", "model_identity": "._fingerprint",
    "effective_settings": "._fingerprint", "FORMAT_VERSION": "._fingerprint",
    "mux_audio": "._audio", "has_audio": "._audio",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
