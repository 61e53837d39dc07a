"""The `standard` and `pro` tiers: MuseTalk v1.5 lip sync on torch, batched across sessions.

config (sizes) -> layout (files on the model volume, manifest) -> checkpoint (published
formats) -> model (inference) ; windowing, audio_history, face, compose (pure helpers) ->
session (one session's state) -> batch (the shared model and the sessions' Renderer handles)
-> shared (one BatchRenderer per process, errors as WorkerError) ; cli (facecast-models).
"""
