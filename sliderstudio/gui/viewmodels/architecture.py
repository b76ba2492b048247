"""Family, model, adapter type and target preset, with the resolved target table (SPEC §4, §5).

The config stays the single source of truth: the preset choice is read from and written to
`slider_target_preset`, `slider_lora_target` and `peft_lora_target_modules` exactly as the
trainer reads them. Target resolution builds a meta-device skeleton, so it runs on the task
pool, debounced while the user types a model path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from superqt.utils import QSignalDebouncer

from sliderstudio.kernel import atomic
from sliderstudio.kernel.errors import InputError
from sliderstudio.gui.viewmodels.lycoris import LycorisCheck, template, validate_lycoris
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.engine import ensure_engine
from sliderstudio.gui.workers.tasks import TaskRunner

PRESET_CHOICES = ("slider", "reference", "default", "custom")
LYCORIS_FILE = "lycoris_config.json"
LYCORIS_LABEL = "lycoris:"       # FileWriter label prefix of preset writes


@dataclass(frozen=True)
class FamilyInfo:
    id: str
    label: str
    flavours: tuple[str, ...]


@dataclass
class TargetResult:
    """What the table shows: the report (may have zero-match rows) and the blocking error, if any."""

    report: Any | None
    error: str | None
    request: tuple


def load_families() -> list[FamilyInfo]:
    """Imports the family registry (torch, diffusers): call it off the UI thread."""
    ensure_engine()
    from sliderstudio.families.registry import FAMILIES

    return [FamilyInfo(f.id, f.label, tuple(f.flavours)) for f in FAMILIES.values()]


def lycoris_report(family: str, model_path: str, preset: str | list[str], path: Path) -> Any:
    """The engine's own LyCORIS resolution (`lycoris_adapter.lycoris_target_report`), as training does
    it: target_module and unet_target_module by path or class, target_name as regexes, exclude_name,
    and the config's preset when the file names no targets. Raises InputError for an unreadable file."""
    from sliderstudio.adapters.lycoris_adapter import lycoris_target_report
    from sliderstudio.config.lycoris_config import read_lycoris_config
    from sliderstudio.families.registry import get_family

    spec = read_lycoris_config(path)
    return lycoris_target_report(get_family(family), model_path, spec.raw, preset=preset, file=path)


def resolve_for_table(family: str, model_path: str, preset: str | list[str], lycoris: Path | None = None,
                      request: tuple | None = None) -> TargetResult:
    """Non-strict resolution, so zero-match rows are shown; the zero-total error is kept as text.

    `lycoris`: a LyCORIS preset file, resolved by the engine's rule (read here, on the task pool);
    `request`: the key the caller matches the result against (default: the arguments).
    """
    ensure_engine()
    from sliderstudio.adapters.targets import require_matches, resolve_targets
    from sliderstudio.families.registry import get_family

    request = request or (family, model_path, tuple(preset) if isinstance(preset, list) else preset)
    try:
        report = lycoris_report(family, model_path, preset, lycoris) if lycoris is not None else \
            resolve_targets(get_family(family), model_path, preset, strict=False)
    except InputError as exc:
        if lycoris is None:
            raise
        return TargetResult(None, str(exc), request)
    try:
        require_matches(report)
    except InputError as exc:
        return TargetResult(report, exc.message, request)
    return TargetResult(report, None, request)


def detect_model_family(model_path: str) -> Any:
    """What the model's files say about its family (model_index.json, checkpoint keys): off the UI thread."""
    ensure_engine()
    from sliderstudio.families.detect import detect_model

    return detect_model(model_path)


def preset_choice(config: Any) -> str:
    """Which of the four choices a config expresses: the config's own rule, which training reads too."""
    return config.target_preset


class ArchitectureViewModel(QObject):
    familiesLoaded = Signal(list)       # list[FamilyInfo]
    fieldsChanged = Signal()            # any architecture field changed: repaint
    targetsResolving = Signal()
    targetsResolved = Signal(object)    # TargetResult
    notice = Signal(str)
    familyDetected = Signal(str)        # the model's files named a family different from the config's

    def __init__(self, project_vm: ProjectViewModel, tasks: TaskRunner, parent: QObject | None = None,
                 debounce_ms: int = 300):
        super().__init__(parent)
        self._pvm, self._tasks = project_vm, tasks
        self.families: list[FamilyInfo] = []
        self.presets: dict[str, list[str]] = {}
        self.result: TargetResult | None = None
        self._pending: tuple | None = None
        self._lycoris_writes = 0     # bumps when the preset file is on disk: part of a resolve's key
        self._debouncer = QSignalDebouncer(parent=self)
        self._debouncer.setTimeout(debounce_ms)
        self._debouncer.triggered.connect(self.resolve_now)
        project_vm.projectLoaded.connect(self._project_loaded)
        project_vm.configChanged.connect(self._config_changed)
        project_vm.writer.written.connect(self._file_written)
        project_vm.writer.failed.connect(self._file_failed)

    @property
    def project_vm(self) -> ProjectViewModel:
        """The document this view-model edits (panes listen to its projectLoaded)."""
        return self._pvm

    # --- loading -----------------------------------------------------------------------
    def load_families(self) -> None:
        self._tasks.submit(load_families, self._families_loaded,
                           lambda exc: self.notice.emit(f"Model families unavailable: {exc}"))

    def _families_loaded(self, families: list[FamilyInfo]) -> None:
        self.families = families
        self.familiesLoaded.emit(families)
        self.schedule_resolve()

    def _project_loaded(self) -> None:
        self.fieldsChanged.emit()
        self.schedule_resolve()
        self.detect_family()

    def _config_changed(self, key: str) -> None:
        self.fieldsChanged.emit()
        if key == "pretrained_model_name_or_path":
            self.detect_family()
        if key in ("model_family", "pretrained_model_name_or_path", "slider_target_preset",
                   "slider_lora_target", "peft_lora_target_modules", "lora_type", "lycoris_config"):
            self.schedule_resolve()

    # --- reading -----------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self._pvm.config

    @property
    def choice(self) -> str:
        return preset_choice(self.config)

    def flavours(self) -> tuple[str, ...]:
        for f in self.families:
            if f.id == self.config.model_family:
                return f.flavours
        return ()

    def current_targets(self) -> list[str]:
        """The target list the trainer will use right now (explicit list or the chosen preset)."""
        if self.config.peft_lora_target_modules:
            return list(self.config.peft_lora_target_modules)
        if self.result and self.result.report is not None:
            return [e.pattern for e in self.result.report.entries]
        return []

    # --- editing -----------------------------------------------------------------------
    def update(self, **changes: Any) -> bool:
        error = self._pvm.update_config(**changes)
        if error:
            self.notice.emit(error)
            self.fieldsChanged.emit()  # repaint the widget back to the valid value
        return error is None

    def set_choice(self, choice: str) -> bool:
        """Map the picker's choice onto the config keys the trainer reads."""
        if choice not in PRESET_CHOICES:
            raise ValueError(choice)
        if choice == "custom":
            targets = self.current_targets() or ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"]
            return self.update(peft_lora_target_modules=targets, slider_target_preset=None)
        return self.update(peft_lora_target_modules=None, slider_target_preset=choice,
                           slider_lora_target=choice != "default")

    def set_custom_targets(self, text: str) -> bool:
        """One target per line or comma-separated; an empty list is refused (it would match nothing)."""
        targets = [t.strip() for line in text.splitlines() for t in line.split(",") if t.strip()]
        if not targets:
            self.notice.emit("peft_lora_target_modules: a custom preset needs at least one target name")
            return False
        return self.update(peft_lora_target_modules=targets, slider_target_preset=None)

    def set_adapter_type(self, lora_type: str) -> bool:
        """Switching to LyCORIS writes a starter preset file if the project has none yet."""
        if lora_type == "lycoris" and not self.config.lycoris_config:
            path = self._pvm.project.root / LYCORIS_FILE
            if not path.exists():
                self._write_lycoris(path, template("lokr", self.current_targets()))
            return self.update(lora_type="lycoris", lycoris_config=LYCORIS_FILE)
        return self.update(lora_type=lora_type)

    # --- LyCORIS preset ----------------------------------------------------------------
    def lycoris_path(self) -> Path | None:
        name = self.config.lycoris_config
        return self._pvm.project.resolve(name) if name else None

    def lycoris_text(self) -> str:
        path = self.lycoris_path()
        if path is None or not path.exists():
            return json.dumps(template("lokr", self.current_targets()), indent=2)
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            self.notice.emit(f"{path}: cannot read ({exc})")
            return ""

    def check_lycoris(self, text: str) -> LycorisCheck:
        return validate_lycoris(text)

    def save_lycoris(self, text: str) -> LycorisCheck:
        """Validate, then write atomically; an invalid preset is never written."""
        check = validate_lycoris(text)
        path = self.lycoris_path() or self._pvm.project.root / LYCORIS_FILE
        if check.ok:
            self._write_lycoris(path, check.data)        # the table is resolved again once it is on disk
            if self.config.lycoris_config is None:
                self.update(lycoris_config=str(path.relative_to(self._pvm.project.root)))
        return check

    def _write_lycoris(self, path: Path, data: dict) -> None:
        """On the app's file-writer thread (an fsync must not stall the window)."""
        self._pvm.writer.submit(f"{LYCORIS_LABEL}{path}", lambda: atomic.write_json(path, data))

    def _file_written(self, label: str) -> None:
        if label.startswith(LYCORIS_LABEL):
            self._lycoris_writes += 1
            self.schedule_resolve()                       # target resolution reads the preset file

    def _file_failed(self, label: str, exc: object) -> None:
        if label.startswith(LYCORIS_LABEL):
            self.notice.emit(f"{label.removeprefix(LYCORIS_LABEL)}: could not be written ({exc})")

    # --- family detection ----------------------------------------------------------------
    def detect_family(self) -> None:
        """Read the chosen model's family from its files; the picker follows what they say."""
        if not self._pvm.is_open:
            return
        model = self.config.pretrained_model_name_or_path
        self._tasks.submit(lambda: detect_model_family(model), lambda found, m=model: self._family_detected(m, found))

    def _family_detected(self, model: str, detection: Any) -> None:
        if not self._pvm.is_open or model != self.config.pretrained_model_name_or_path or not detection.known:
            return  # the path changed meanwhile, or the files cannot tell: the user's choice stands
        if detection.accepts(self.config.model_family):
            return
        if self.update(model_family=detection.family):
            self.notice.emit(f"Model family set to '{detection.family}': the {detection.how} of the model says so")
        self.familyDetected.emit(detection.family)

    # --- target resolution -------------------------------------------------------------
    def _target_request(self) -> tuple[str, str, str | list[str], Path | None]:
        """What to resolve; a LyCORIS preset file is named, not read: the task reads it."""
        config = self.config
        preset: str | list[str] = self.choice if self.choice != "custom" else list(config.peft_lora_target_modules)
        lycoris = self.lycoris_path() if config.lora_type == "lycoris" else None
        return config.model_family, config.pretrained_model_name_or_path, preset, lycoris

    def schedule_resolve(self) -> None:
        self._debouncer.throttle()

    def resolve_now(self) -> None:
        if not self._pvm.is_open:
            return
        family, model, preset, lycoris = self._target_request()
        # a re-resolve after the preset file was written must not be mistaken for the older request
        stamp = self._lycoris_writes
        key = (family, model, tuple(preset) if isinstance(preset, list) else preset, str(lycoris or ""), stamp)
        self._pending = key
        self.targetsResolving.emit()
        self._tasks.submit(lambda: resolve_for_table(family, model, preset, lycoris, key), self._resolved,
                           lambda exc, k=key: self._resolve_failed(k, exc))

    @property
    def resolving(self) -> bool:
        return self._pending is not None

    def _resolved(self, result: TargetResult) -> None:
        if result.request != self._pending:
            return  # an older request; a newer one is on its way
        self._pending = None
        self.result = result
        self.targetsResolved.emit(result)

    def _resolve_failed(self, key: tuple, exc: Exception) -> None:
        if key != self._pending:
            return
        self._pending = None
        message = exc.message if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        self.result = TargetResult(None, message, key)
        self.targetsResolved.emit(self.result)
