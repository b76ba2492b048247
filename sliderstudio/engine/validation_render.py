"""Validation pipeline calls with SimpleTuner's validation_resolution (W×H, lists) and guidance rescale.

Every family renders square images through one pipeline call with `height=size, width=size`. Rather
than teach each family about rectangles and rescaling, the validation pipeline is wrapped so the call
it receives carries the requested width/height and, where the pipeline takes it, `guidance_rescale`.
"""
from __future__ import annotations

import inspect
from typing import Any


def accepts_guidance_rescale(pipe: Any) -> bool:
    """True when the pipeline's __call__ names `guidance_rescale` (SD 1.x/2.x/SDXL pipelines do)."""
    try:
        return "guidance_rescale" in inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        return False


class PipeCallOverrides:
    """A pipeline that forces width/height (and guidance_rescale) on every call; all else is the pipeline's."""

    def __init__(self, pipe: Any, width: int, height: int, guidance_rescale: float = 0.0):
        self._pipe = pipe
        self._overrides: dict[str, Any] = {"width": width, "height": height}
        if guidance_rescale and accepts_guidance_rescale(pipe):
            self._overrides["guidance_rescale"] = guidance_rescale

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._pipe(*args, **{**kwargs, **self._overrides})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)


def validation_pipes(pipe: Any, sizes: list[tuple[int, int]], guidance_rescale: float) -> list[tuple[str, int, Any]]:
    """(file-name tag, square size for the family, pipeline) per requested resolution.

    The tag is empty when there is one resolution, so single-size runs keep their file names.
    """
    out = []
    for width, height in sizes:
        tag = f"_{width}x{height}" if len(sizes) > 1 else ""
        if width == height and not guidance_rescale:
            out.append((tag, width, pipe))
        else:
            out.append((tag, max(width, height), PipeCallOverrides(pipe, width, height, guidance_rescale)))
    return out
