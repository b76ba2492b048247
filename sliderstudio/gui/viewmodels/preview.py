"""A/B preview state: prompt, seed, steps, the two dials, the sweep, start fraction, adapter,
and the composed sliders (more adapter files, each with its own dial, on every image).

Renders happen on the preview worker's thread. Requests are debounced while a dial moves and
coalesced: at most one render is in flight, and only the newest wish waits behind it, so
dragging a slider never queues up stale renders. While a render runs, `progressed` says which
image and which denoising step it is at, and `partialRendered` brings the base image ahead of
the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal
from superqt.utils import QSignalDebouncer

from sliderstudio.engine import dial_range as engine_dial_range
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.preview import LATEST, PreviewWorker, RenderProgress, RenderRequest, RenderResult

SWEEP = (-1.0, -0.5, 0.0, 0.5, 1.0)
RANGE_META = engine_dial_range.RANGE_META   # written by the calibration (core/calibration.RANGE_KEY)


@dataclass
class Companion:
    """One composed slider: its file, its dial's strength and range (calibrated, else ±1)."""

    path: str
    strength: float = 0.0
    lo: float = -1.0
    hi: float = 1.0
    calibrated: bool = False


def dial_range(path: str | Path) -> tuple[float, float] | None:
    """The calibrated range from the file's metadata, by the engine's rule (`engine.dial_range`,
    the same as `calibration.recommended_range`); it reads the header without torch, so the UI
    thread may call it while the preview worker imports torch. None: the dial falls back to ±1."""
    return engine_dial_range.recommended_range(path)


class PreviewViewModel(QObject):
    abRendered = Signal(object)        # RenderResult (images[0] = A, images[1] = B)
    sweepRendered = Signal(object)     # RenderResult (images[2:] = the sweep)
    partialRendered = Signal(object)   # RenderResult, some images still None (the base comes first)
    progressed = Signal(object)        # RenderProgress of the render in flight
    busyChanged = Signal(bool)
    failed = Signal(str)
    adapterChanged = Signal(str)       # the adapter shown ("" = base model)
    companionsChanged = Signal()       # a composed slider was added/removed or its range widened
    mainRangeChanged = Signal()        # the A/B dials' range (main_lo, main_hi) changed
    _submit = Signal(object)           # to the worker thread (queued)

    def __init__(self, project_vm: ProjectViewModel, parent: QObject | None = None, debounce_ms: int = 150):
        super().__init__(parent)
        self._pvm = project_vm
        self.prompt = ""
        self.seed = 0
        self.steps = 20
        self.guidance = 2.0
        self.strength_a = -1.0
        self.strength_b = 1.0
        #: The A/B dials' range: the shown adapter's calibrated range, else ±1 (engine rule).
        self.main_lo, self.main_hi, self.main_calibrated = engine_dial_range.dial_span(None)
        self.sweep = SWEEP
        self.follow = True
        self.training_active = False      # a training process shares the CPU: render on one thread
        self.lora: str | None = LATEST
        self.adapter = ""
        self.companions: list[Companion] = []
        self.last: RenderResult | None = None
        self._ticket = 0
        self._in_flight: RenderRequest | None = None
        self._waiting: RenderRequest | None = None
        self._debouncer = QSignalDebouncer(parent=self)
        self._debouncer.setTimeout(debounce_ms)
        self._debouncer.triggered.connect(lambda: self.render_now("ab"))
        self._all_debouncer = QSignalDebouncer(parent=self)
        self._all_debouncer.setTimeout(debounce_ms)
        self._all_debouncer.triggered.connect(lambda: self.render_now("all"))
        self._thread = QThread(self)
        self._thread.setObjectName("preview")
        self._worker = PreviewWorker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.render)
        self._worker.rendered.connect(self._on_rendered)
        self._worker.partial.connect(self._on_partial)
        self._worker.progressed.connect(self._on_progress)
        self._thread.start()
        project_vm.projectLoaded.connect(self._project_loaded)

    @property
    def project_vm(self) -> ProjectViewModel:
        """The document this view-model edits (panes listen to its projectLoaded)."""
        return self._pvm

    # --- settings ------------------------------------------------------------------------
    def prompt_choices(self) -> list[tuple[str, str]]:
        """(name, prompt) from the project's library (or its validation prompt)."""
        if not self._pvm.is_open:
            return []
        return [(p.name, p.prompt) for p in self._pvm.project.validation_prompts()]

    def _project_loaded(self) -> None:
        config = self._pvm.config
        choices = self.prompt_choices()
        self.prompt = choices[0][1] if choices else (config.validation_prompt or "")
        self.seed = config.validation_seed
        self.steps = config.validation_num_inference_steps
        self.guidance = config.validation_guidance
        self.lora = LATEST

    @property
    def start_fraction(self) -> float:
        return self._pvm.config.slider_start_fraction if self._pvm.is_open else 0.0

    def set_start_fraction(self, value: float) -> None:
        self._pvm.update_config(slider_start_fraction=round(min(1.0, max(0.0, value)), 2))
        self.schedule("all")

    def schedule(self, kind: str) -> None:
        """Render once the input has rested for the debounce time (a dragged dial, typed seed)."""
        (self._all_debouncer if kind == "all" else self._debouncer).throttle()

    def set_strengths(self, a: float | None = None, b: float | None = None) -> None:
        """A dial moved: remember it, and render once it rests (debounced)."""
        if a is not None:
            self.strength_a = round(a, 2)
        if b is not None:
            self.strength_b = round(b, 2)
        self.schedule("ab")

    def _main_range_for(self, path: str) -> None:
        """The A/B dials span the shown adapter's calibrated range (else ±1), by the engine's rule
        (`engine.dial_range`, as the composed dials); a strength outside it is clamped, and then the
        A/B images render again."""
        self.main_lo, self.main_hi, self.main_calibrated = engine_dial_range.dial_span(path or None)
        self._clamp_main()
        self.mainRangeChanged.emit()

    def _clamp_main(self) -> None:
        a = min(max(self.strength_a, self.main_lo), self.main_hi)
        b = min(max(self.strength_b, self.main_lo), self.main_hi)
        if (a, b) != (self.strength_a, self.strength_b):
            self.set_strengths(a, b)

    def extend_main_range(self, factor: float = 2.0) -> None:
        """Beyond the calibrated (or default) range, on request, as a composed dial's "wider"."""
        lo, hi = self.main_lo, self.main_hi
        self.main_lo, self.main_hi = lo * factor if lo < 0 else -1.0, hi * factor if hi > 0 else 1.0
        self.mainRangeChanged.emit()

    # --- composed sliders ------------------------------------------------------------------
    def add_companion(self, path: str) -> Companion | None:
        """Compose one more adapter file at strength 0 (the images do not change until its dial moves)."""
        if Path(path).suffix != ".safetensors" or not Path(path).is_file():
            self.failed.emit(f"not a .safetensors adapter file: {path}")
            return None
        if any(c.path == str(path) for c in self.companions):
            self.failed.emit(f"this slider is already composed: {path}")
            return None
        lo, hi, calibrated = engine_dial_range.dial_span(path)
        companion = Companion(str(path), 0.0, lo, hi, calibrated=calibrated)
        self.companions.append(companion)
        self.companionsChanged.emit()
        return companion

    def remove_companion(self, index: int) -> None:
        removed = self.companions.pop(index)
        self.companionsChanged.emit()
        if removed.strength != 0.0:
            self.schedule("all")

    def set_companion_strength(self, index: int, value: float) -> None:
        """A composed slider's dial moved: every image changes, so the sweep renders again (debounced)."""
        self.companions[index].strength = round(value, 2)
        self.schedule("all")

    def extend_companion_range(self, index: int, factor: float = 2.0) -> None:
        """Beyond the calibrated (or default) range, on request: the user sees where it breaks."""
        c = self.companions[index]
        c.lo, c.hi = c.lo * factor if c.lo < 0 else -1.0, c.hi * factor if c.hi > 0 else 1.0
        self.companionsChanged.emit()

    def use_latest_adapter(self) -> None:
        self.lora = LATEST
        self.render_now("all")

    # --- training hooks ----------------------------------------------------------------
    def on_checkpoint(self, _path: str = "") -> None:
        """During training: show the newest checkpoint if following."""
        if self.follow and self.lora == LATEST:
            self.render_now("all")

    def on_training_state(self, state: str) -> None:
        self.training_active = state != "idle"

    def on_run_finished(self, _adapter: str = "", _stopped: bool = False) -> None:
        self.training_active = False      # the process has reported its end: the cores are free again
        self.lora = LATEST
        self.render_now("all")

    # --- rendering -----------------------------------------------------------------------
    def request(self, kind: str) -> RenderRequest:
        config = self._pvm.config
        strengths = (self.strength_a, self.strength_b) + (tuple(self.sweep) if kind == "all" else ())
        self._ticket += 1
        return RenderRequest(config.model_family, config.pretrained_model_name_or_path,
                             str(self._pvm.project.output_dir), self.lora, self.prompt or " ", self.seed,
                             self.steps, self.guidance, self.start_fraction, strengths, kind, self._ticket,
                             threads=1 if self.training_active else None,
                             companions=tuple((c.path, c.strength) for c in self.companions))

    def render_now(self, kind: str = "all") -> None:
        if not self._pvm.is_open:
            return
        wish = self.request(kind)
        if self._waiting is not None and self._waiting.kind == "all" and kind == "ab":
            wish = replace(self.request("all"), ticket=wish.ticket)   # never downgrade a pending full render
        if self._in_flight is None:
            self._send(wish)
        else:
            self._waiting = wish

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    def _send(self, request: RenderRequest) -> None:
        self._in_flight = request
        self.busyChanged.emit(True)
        self._submit.emit(request)

    def _on_progress(self, progress: RenderProgress) -> None:
        if self._in_flight is not None and progress.ticket == self._in_flight.ticket:
            self.progressed.emit(progress)

    def _on_partial(self, result: RenderResult) -> None:
        if self._in_flight is not None and result.request.ticket == self._in_flight.ticket:
            self.partialRendered.emit(result)

    def _on_rendered(self, result: RenderResult) -> None:
        self._in_flight = None
        if result.error:
            self.failed.emit(result.error)
        else:
            self.last = result
            if (result.adapter or "") != self.adapter:
                self.adapter = result.adapter or ""
                self._main_range_for(self.adapter)
                self.adapterChanged.emit(self.adapter)
            self.abRendered.emit(result)
            if result.request.kind == "all":
                self.sweepRendered.emit(result)
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self._send(waiting)
        else:
            self.busyChanged.emit(False)

    def shutdown(self, msecs: int = 30000) -> None:
        """Stop the worker thread — on window close. A render in progress ends at its next step."""
        self._worker.cancel()
        self._thread.quit()
        self._thread.wait(msecs)
