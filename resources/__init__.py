"""Installed as the resource package `sliderstudio.resources` (pyproject.toml maps this folder).

`toy-model/`: the bundled toy diffusion model (diffusers layout) the demo, the app's demo project and
the tests load offline. Read through `sliderstudio.kernel.resources.toy_model_dir()`, never by path:
this file exists so that setuptools' editable finder can map the name (it maps regular packages only).
"""
