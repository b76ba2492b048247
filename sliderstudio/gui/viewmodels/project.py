"""The open project as a document: load, edit through validated updates, save, save as, new.

Every edit goes through `update_config` / `replace_buckets`, which re-validate with core's
pydantic models, so the GUI can never hold (or save) a config the CLI would reject.

Saving hands a detached copy of the project to the app's `FileWriter`: the atomic writes (and
their fsyncs, which can wait a second on a busy disk) happen on the writer's thread, never on
the UI thread. `saved` fires once the files are on disk, `saveFailed` if they could not be
written (the project is then marked unsaved again); `flush()` waits for pending saves.
"""
from __future__ import annotations

import copy
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from sliderstudio.config.config import BucketConfig, TrainConfig, build
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.engine.project import Project, load_project, save_project
from sliderstudio.gui.workers.file_writer import FileWriter

PROMPT_LIBRARY_NAME = "prompt_library.json"


def new_project(root: Path) -> Project:
    """An empty project with defaults (in memory; `ProjectViewModel.create` saves it at once,
    so the CLI can open the folder right away)."""
    config = TrainConfig(user_prompt_library=PROMPT_LIBRARY_NAME, max_train_steps=200)
    return Project(root=root.resolve(), config=config, buckets=[])


def rebase_buckets(buckets: list[BucketConfig], old_root: Path, new_root: Path) -> list[BucketConfig]:
    """Keep bucket folders pointing at the same images when the project moves (Save As)."""
    out = []
    for bucket in buckets:
        if not bucket.instance_data_dir:
            out.append(bucket)
            continue
        folder = Path(bucket.instance_data_dir).expanduser()
        absolute = folder if folder.is_absolute() else (old_root / folder).resolve()
        try:
            shown = str(absolute.relative_to(new_root.resolve()))
        except ValueError:
            shown = str(absolute)
        out.append(bucket.model_copy(update={"instance_data_dir": shown}))
    return out


class ProjectViewModel(QObject):
    """Holds the current `Project`; emits when it is replaced, edited or saved."""

    projectLoaded = Signal()          # a different project (or a re-read one) is now current
    configChanged = Signal(str)       # one config key changed (the key name)
    bucketsChanged = Signal()         # the bucket list was replaced or edited
    dirtyChanged = Signal(bool)
    saved = Signal(str)               # project folder: its files are on disk
    saveFailed = Signal(str)          # why a save could not be written (names the file)

    def __init__(self, parent: QObject | None = None, writer: FileWriter | None = None):
        super().__init__(parent)
        self._project: Project | None = None
        self._dirty = False
        self.writer = writer or FileWriter(self)
        self.last_save: Future | None = None    # the newest save's Future (training waits on it)
        self.writer.written.connect(self._written)
        self.writer.failed.connect(self._write_failed)

    # --- state -------------------------------------------------------------------------
    @property
    def project(self) -> Project:
        if self._project is None:
            raise RuntimeError("no project is open")
        return self._project

    @property
    def is_open(self) -> bool:
        return self._project is not None

    @property
    def config(self) -> TrainConfig:
        return self.project.config

    @property
    def dirty(self) -> bool:
        return self._dirty

    def _set_dirty(self, value: bool) -> None:
        if value != self._dirty:
            self._dirty = value
            self.dirtyChanged.emit(value)

    # --- documents ---------------------------------------------------------------------
    def open(self, path: str | Path) -> Project:
        """Load a project folder (or its config.json); raises InputError with file and key."""
        self.set_project(load_project(path))
        return self.project

    def create(self, root: str | Path) -> Project:
        self.set_project(new_project(Path(root)))
        self.save()
        return self.project

    def set_project(self, project: Project) -> None:
        self._project = project
        self._set_dirty(False)
        self.projectLoaded.emit()

    def save(self) -> Future:
        """Queue the project's files for writing; returns the write's Future (done once on disk)."""
        copy_ = copy.deepcopy(self.project)    # every field; the writer thread must not see later edits
        self.last_save = self.writer.submit(f"project:{copy_.root}", lambda: save_project(copy_))
        self._set_dirty(False)
        return self.last_save

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait for queued saves (closing the window, tests); False if they did not finish in time."""
        return self.writer.flush(timeout)

    def _written(self, label: str) -> None:
        if label.startswith("project:"):
            self.saved.emit(label.removeprefix("project:"))

    def _write_failed(self, label: str, exc: object) -> None:
        if label.startswith("project:"):
            self._set_dirty(True)
            self.saveFailed.emit(str(exc))

    def save_as(self, root: str | Path) -> None:
        """Write the project into another folder; bucket folders keep pointing at the same images."""
        new_root = Path(root).resolve()
        old = self.project
        moved = Project(root=new_root, config=old.config.model_copy(),
                        buckets=rebase_buckets(old.buckets, old.root, new_root),
                        prompts=list(old.prompts), warnings=list(old.warnings),
                        passthrough=dict(old.passthrough))  # SimpleTuner keys we ignore stay in the config
        if moved.config.user_prompt_library is None:
            moved.config = moved.config.model_copy(update={"user_prompt_library": PROMPT_LIBRARY_NAME})
        self._project = moved
        self.save()
        self.projectLoaded.emit()

    def snapshot(self, **config_changes: Any) -> Project:
        """A detached copy for a worker thread, so edits in the UI never race a running job."""
        project = self.project
        return Project(root=project.root, config=project.config.model_copy(update=config_changes),
                       buckets=[b.model_copy() for b in project.buckets],
                       prompts=copy.deepcopy(project.prompts), warnings=list(project.warnings),
                       config_file=project.config_file, key_notes=list(project.key_notes))

    # --- edits -------------------------------------------------------------------------
    def update_config(self, **changes: Any) -> str | None:
        """Apply changes atomically; returns the validation message (nothing changes) or None."""
        current = self.config.model_dump()
        merged = {**current, **changes}
        try:
            config = build(TrainConfig, merged, file=str(self.project.config_path))
        except ConfigError as exc:
            return str(exc.message if not exc.key else f"{exc.key}: {exc.message}")
        changed = [k for k in changes if current.get(k) != getattr(config, k)]
        if not changed:
            return None
        self.project.config = config
        self._set_dirty(True)
        for key in changed:
            self.configChanged.emit(key)
        return None

    def replace_buckets(self, buckets: list[BucketConfig]) -> None:
        self.project.buckets = list(buckets)
        self._set_dirty(True)
        self.bucketsChanged.emit()

    def validate_bucket(self, bucket: BucketConfig, **changes: Any) -> BucketConfig:
        """A changed copy of `bucket`, validated; raises InputError naming the key."""
        data = {**bucket.model_dump(), **changes}
        return build(BucketConfig, data, file=str(self.project.dataloader_path), where=f"{bucket.id}.")

