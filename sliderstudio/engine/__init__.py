"""The engine: data (buckets, sampler, caches), the slider step, set-up, trainer, preview, export,
checkpoints, calibration. It knows no Qt and no face, and no family by name.
"""
