"""The preview worker: keeps a loaded pipeline on its own QThread and renders strength batches.

Loading a model takes seconds, a render of a tiny batch a fraction of that; keeping the
renderer alive between requests is what makes dragging the A/B dials usable. The view-model
sends one request at a time, so this worker never builds up a queue.
"""
from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PySide6.QtCore import QObject, Signal, Slot

from sliderstudio.core.errors import InputError
from sliderstudio.gui.workers.engine import ensure_engine
from sliderstudio.gui.workers.qimages import pil_to_qimage

LATEST = "latest"


@dataclass(frozen=True)
class RenderRequest:
    family: str
    model_path: str
    output_dir: str          # where LATEST looks for the newest adapter
    lora: str | None         # a file, LATEST, or None for the base model
    prompt: str
    seed: int
    steps: int
    guidance: float
    start_fraction: float
    strengths: tuple[float, ...]
    kind: str = "all"        # "ab" (the two dials) or "all" (dials + sweep)
    ticket: int = 0
    threads: int | None = None   # CPU threads for this render; None: torch's default


@dataclass
class RenderResult:
    request: RenderRequest
    images: list[Any] = field(default_factory=list)   # QImages, in the order of request.strengths
    adapter: str | None = None                        # the adapter actually used
    error: str | None = None
    details: str = ""


def make_renderer(family: str, model_path: str) -> Any:
    """The engine's renderer (imported on this thread). Tests may replace this function."""
    ensure_engine()
    from sliderstudio.core.preview import PreviewRenderer

    return PreviewRenderer(family, model_path)


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count for one render, then back.

    While a training process runs, a render with every core fights it: both processes' OpenMP
    pools spin-wait at their barriers, and on 2 cores a 40-step toy run took 152–202 s instead of
    15–18 s. One thread for the preview leaves the cores to training.
    """
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def find_latest(output_dir: str) -> Path | None:
    ensure_engine()
    from sliderstudio.core.preview import latest_adapter

    return latest_adapter(Path(output_dir))


class PreviewWorker(QObject):
    rendered = Signal(object)   # RenderResult

    def __init__(self) -> None:
        super().__init__()
        self._renderer: Any = None
        self._model: tuple[str, str] | None = None
        self._adapter: tuple[str, int] | None = None   # (path, mtime_ns) currently loaded

    @Slot(object)
    def render(self, request: RenderRequest) -> None:
        try:
            adapter = self._prepare(request)
            with cpu_threads(request.threads):
                pil = self._renderer.render(request.prompt, request.seed, list(request.strengths), request.steps,
                                            request.guidance, request.start_fraction)
            result = RenderResult(request, [pil_to_qimage(im) for im in pil], adapter)
        except InputError as exc:
            result = RenderResult(request, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the pane, the worker stays alive
            from sliderstudio.core.crash_log import summary

            result = RenderResult(request, error=summary(exc), details=traceback.format_exc())
        self.rendered.emit(result)

    def _prepare(self, request: RenderRequest) -> str | None:
        """Load the model and the wanted adapter, reusing what is already loaded."""
        lora = str(find_latest(request.output_dir) or "") if request.lora == LATEST else (request.lora or "")
        model = (request.family, request.model_path)
        wants_base = not lora
        if self._renderer is None or model != self._model or (wants_base and self._adapter is not None):
            self._renderer, self._model, self._adapter = make_renderer(*model), model, None
        if lora:
            stamp = (lora, Path(lora).stat().st_mtime_ns)
            if stamp != self._adapter:
                self._renderer.load_lora(lora)
                self._adapter = stamp
        return lora or None
