"""densevid's stages and their wiring, in layers; each layer imports only the layers before it.

    core      errors, one-line formatters, value types (FrameBatch, Detections)
    config    the settings table, EncodeConfig, presets
    io        decoding, the writers (atomic, durable), sinks, output names, fingerprints  (PyAV lives here)
    models    hub lookup, loading, export styles, precision, known export bugs, stand-ins
    engine    the estimator, the stages (source, model workers, reorder, post, encode) and their wiring
    batch     many inputs: plan, resume, runner, report, Ray
    cli       the densevid command
    comfyui   the ComfyUI node

``io`` and ``models`` are siblings (neither imports the other). Every package re-exports its public
names from its private modules (``from ..io import VideoWriter``); no module imports another package's
private modules or names. ``kernels`` (beside ``pipeline``) imports nothing from here. The public API
is the top-level ``densevid`` package.
"""
