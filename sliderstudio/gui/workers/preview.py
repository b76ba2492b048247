"""The preview worker: keeps a loaded pipeline on its own QThread and renders strength batches.

Loading a model takes seconds, a render of a tiny batch a fraction of that; keeping the
renderer alive between requests is what makes dragging the A/B dials usable. The view-model
sends one request at a time, so this worker never builds up a queue.

The strength-0 image is the base model's (bit-identical, whatever the adapter), so it is rendered
first, in a call of its own, sent ahead (`partial`) and kept: a later request for the same
prompt, seed, steps and guidance (the next checkpoint while training) reuses it. Without an
adapter every strength is the base model, so such a request costs one image, not seven. Every
pipeline call reports its denoising steps (`progressed`), so the pane can say what is computed.
"""
from __future__ import annotations

import os
import threading
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, Signal, Slot

from sliderstudio.kernel.errors import InputError
from sliderstudio.gui.workers.engine import ensure_engine
from sliderstudio.gui.workers.qimages import pil_to_qimage

LATEST = "latest"
BASE_CACHE_SIZE = 16      # base images kept (prompt × seed × steps × guidance × model)


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
    companions: tuple[tuple[str, float], ...] = ()   # more sliders on every image: (file, strength)


@dataclass
class RenderResult:
    request: RenderRequest
    images: list[Any] = field(default_factory=list)   # QImages in the order of request.strengths; None: not yet
    adapter: str | None = None                        # the adapter actually used
    error: str | None = None
    details: str = ""


@dataclass(frozen=True)
class RenderProgress:
    """Where a render is. Images are numbered in the order they are rendered (the base first);
    one pipeline call makes images `first`..`last` together (a batch) or a single image."""

    ticket: int
    stage: str = "render"    # "load" (the engine, the model) or "render"
    first: int = 0
    last: int = 0
    total: int = 0           # distinct images this request renders
    step: int = 0            # denoising steps done in this call
    steps: int = 0
    base: bool = False       # this call renders the strength-0 (base model) image

    def text(self) -> str:
        if self.stage == "load":
            return "loading the engine and the model for the preview…"
        if self.last > self.first:
            what = f"images {self.first}–{self.last} of {self.total} (one batch)"
        else:
            what = f"{'base image' if self.base else 'image'} {self.first} of {self.total}"
        return f"rendering {what}, step {self.step}/{self.steps}"


def render_plan(strengths: tuple[float, ...], has_adapter: bool) -> list[list[int]]:
    """Indices of `strengths` per pipeline call, in order. A call for strength 0 renders the base
    image for every strength-0 slot; without an adapter every slot is the base image, so the
    whole request is one call for one image."""
    if not strengths:
        return []
    zeros = [i for i, s in enumerate(strengths) if s == 0.0]
    if not has_adapter:
        return [[zeros[0] if zeros else 0]]
    rest = [i for i, s in enumerate(strengths) if s != 0.0]
    return ([[zeros[0]]] if zeros else []) + ([rest] if rest else [])


def preview_threads(training: bool, load: float, cores: int) -> int | None:
    """torch threads for a render: None (torch's default, every core) on an idle machine.

    On a busy machine a multi-threaded render waits at every operator for a thread the OS has
    parked: one toy image took 53 s on 2 threads at load 9 on 2 cores, 1.3 s on one thread.
    So: one thread while our own training process runs, else the cores the load leaves idle.
    """
    if training:
        return 1
    if load < 1.0:
        return None
    idle = int(cores - load)
    return None if idle >= cores else max(1, idle)


def machine_threads(training: bool) -> int | None:
    """`preview_threads` for this machine now (its 1-minute load average)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return preview_threads(training, load, os.cpu_count() or 1)


def make_renderer(family: str, model_path: str) -> Any:
    """The engine's renderer (imported on this thread). Tests may replace this function."""
    ensure_engine()
    from sliderstudio.engine.preview import PreviewRenderer

    from sliderstudio.families.registry import get_family

    return PreviewRenderer(get_family(family), model_path)


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
    from sliderstudio.engine.preview import latest_adapter

    return latest_adapter(Path(output_dir))


class RenderCancelled(Exception):
    """Raised from a step callback when the app closes mid-render (ends the render within a step)."""


class PreviewWorker(QObject):
    rendered = Signal(object)     # RenderResult, every image
    partial = Signal(object)      # RenderResult with the base image only, ahead of the rest
    progressed = Signal(object)   # RenderProgress

    def __init__(self) -> None:
        super().__init__()
        self._cancelled = threading.Event()
        self._renderer: Any = None
        self._model: tuple[str, str] | None = None
        self._adapter: tuple[str, int] | None = None   # (path, mtime_ns) currently loaded
        self._companions: tuple[tuple[str, float], ...] = ()   # composed sliders on the renderer
        self._bases: OrderedDict[tuple, Any] = OrderedDict()   # base QImages by what they depend on

    def cancel(self) -> None:
        """Thread-safe: the render in progress stops at its next denoising step (window closing)."""
        self._cancelled.set()

    @Slot(object)
    def render(self, request: RenderRequest) -> None:
        if self._cancelled.is_set():
            return
        try:
            if self._renderer is None or (request.family, request.model_path) != self._model:
                self.progressed.emit(RenderProgress(request.ticket, stage="load"))
            adapter = self._prepare(request)
            threads = request.threads if request.threads is not None else machine_threads(training=False)
            with cpu_threads(threads):
                images = self._run_plan(request, adapter is not None)
            result = RenderResult(request, images, adapter)
        except InputError as exc:
            result = RenderResult(request, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the pane, the worker stays alive
            from sliderstudio.kernel.crash_log import summary_with_log

            result = RenderResult(request, error=summary_with_log(exc, ["gui", "(preview)"]),
                                  details=traceback.format_exc())
        self.rendered.emit(result)

    def _run_plan(self, request: RenderRequest, has_adapter: bool) -> list[Any]:
        """One pipeline call per entry of `render_plan`; the base image fills every strength-0
        slot (every slot without an adapter) and goes out at once when more calls follow."""
        strengths = request.strengths
        calls = render_plan(strengths, has_adapter)
        images: list[Any] = [None] * len(strengths)
        total = sum(len(call) for call in calls)
        done = 0
        for number, call in enumerate(calls):
            if not has_adapter or strengths[call[0]] == 0.0:
                base = self._base_image(request, done + 1, total)
                for i, strength in enumerate(strengths):
                    if strength == 0.0 or not has_adapter:
                        images[i] = base
                done += 1
                if number < len(calls) - 1:
                    self.partial.emit(RenderResult(request, list(images)))
                continue
            batch = [strengths[i] for i in call]
            hook = self._step_hook(request, done + 1, done + len(batch), total, base=False)
            pil = self._renderer.render(request.prompt, request.seed, batch, request.steps, request.guidance,
                                        request.start_fraction, on_step=hook)
            for i, image in zip(call, pil):
                images[i] = pil_to_qimage(image)
            done += len(batch)
        return images

    def _base_image(self, request: RenderRequest, number: int, total: int) -> Any:
        """The strength-0 image, from the cache or from one pipeline call (then kept)."""
        key = (request.family, request.model_path, request.prompt, request.seed, request.steps, request.guidance,
               request.companions)   # composed sliders are part of the "strength 0" image
        if key in self._bases:
            self._bases.move_to_end(key)
            return self._bases[key]
        hook = self._step_hook(request, number, number, total, base=True)
        pil = self._renderer.render(request.prompt, request.seed, [0.0], request.steps, request.guidance,
                                    request.start_fraction, on_step=hook)
        image = pil_to_qimage(pil[0])
        self._bases[key] = image
        while len(self._bases) > BASE_CACHE_SIZE:
            self._bases.popitem(last=False)
        return image

    def _step_hook(self, request: RenderRequest, first: int, last: int, total: int,
                   base: bool) -> Callable[[int, int], None]:
        """An `on_step` for one pipeline call. An adapter that cannot batch strengths renders
        them one after another and reports the steps summed over them: split them back."""
        steps = request.steps

        def on_step(done: int, of: int) -> None:
            if self._cancelled.is_set():
                raise RenderCancelled()
            if of > steps and last > first:
                image = first + (done - 1) // steps
                lo, hi, step = image, image, (done - 1) % steps + 1
            else:
                lo, hi, step = first, last, done
            self.progressed.emit(RenderProgress(request.ticket, "render", lo, hi, total, step, steps, base))

        on_step(0, steps)   # the call has started: say so before its first step ends
        return on_step

    def _prepare(self, request: RenderRequest) -> str | None:
        """Load the model and the wanted adapter, reusing what is already loaded."""
        lora = str(find_latest(request.output_dir) or "") if request.lora == LATEST else (request.lora or "")
        model = (request.family, request.model_path)
        wants_base = not lora
        if self._renderer is None or model != self._model or (wants_base and self._adapter is not None):
            self._renderer, self._model, self._adapter = make_renderer(*model), model, None
            self._companions = ()
        if lora:
            stamp = (lora, Path(lora).stat().st_mtime_ns)
            if stamp != self._adapter:
                self._renderer.load_lora(lora)
                self._adapter = stamp
        if request.companions != self._companions:
            self._companions = ()   # a failed load leaves none composed (the renderer drops them)
            self._renderer.set_companions(list(request.companions))
            self._companions = request.companions
        return lora or None
