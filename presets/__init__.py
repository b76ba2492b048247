"""Installed as the resource package `sliderstudio.presets` (pyproject.toml maps this folder).

JSON the product ships: `targets/<family>.json` (reference, slider, default target presets),
`lycoris/<family|transformer>-<algo>.json` (LyCORIS presets), `full_size/<family>.json` (the
published full-size configs). Read through `sliderstudio.kernel.resources`, never by path: this file
exists so that setuptools' editable finder can map the name (it maps regular packages only).
"""
