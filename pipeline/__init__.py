"""densevid's stages and their wiring (decode, models, engine, outputs, batch, CLI, ComfyUI node).

Every module here is private; the public API is re-exported by the top-level ``densevid`` package.
"""
