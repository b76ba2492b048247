"""The dataset pane's state: buckets (from the dataloader JSON), their scans, balance and notices.

Scans (file listing, header checks, thumbnails) run on the task pool; results are matched to
the request that produced them so a slow, stale scan never overwrites a newer one.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSize, Signal
from PySide6.QtGui import QImage, QImageReader

from sliderstudio.engine.buckets import Balance, ScannedBucket, balance, scan_bucket
from sliderstudio.config.config import BucketConfig
from sliderstudio.kernel.errors import InputError
from sliderstudio.engine.project import Project
from sliderstudio.gui.viewmodels.drops import DropVerdict, judge_drop
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.viewmodels.roles import default_strength, snap, strength_for_role
from sliderstudio.gui.workers.tasks import TaskRunner

THUMBNAILS_PER_BUCKET = 8
THUMBNAIL_HEIGHT = 48


@dataclass
class BucketScan:
    """What the pane shows for one bucket once its folder has been read."""

    scanned: ScannedBucket
    thumbnails: list[QImage] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [str(p) for p in self.scanned.problems]


def load_thumbnails(paths: list[Path], height: int = THUMBNAIL_HEIGHT) -> list[QImage]:
    """Decode small previews only (QImageReader scales while decoding; QImage is thread-safe)."""
    out = []
    for path in paths:
        reader = QImageReader(str(path))
        size = reader.size()
        if size.isValid() and size.height() > 0:
            width = max(1, round(size.width() * height / size.height()))
            reader.setScaledSize(QSize(width, height))
        image = reader.read()
        if not image.isNull():
            out.append(image)
    return out


def scan_with_thumbnails(project: Project, bucket: BucketConfig) -> BucketScan:
    scanned = scan_bucket(project, bucket)
    thumbs = load_thumbnails([r.path for r in scanned.images[:THUMBNAILS_PER_BUCKET]])
    return BucketScan(scanned=scanned, thumbnails=thumbs)


def unique_id(name: str, taken: set[str]) -> str:
    """A bucket id from a folder name: readable, unique within the project."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "bucket"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def folder_entry(folder: Path, root: Path) -> str:
    """Store folders inside the project relative to it (the project stays movable)."""
    try:
        return str(folder.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(folder.resolve())


class DatasetViewModel(QObject):
    bucketsReset = Signal()            # rows added/removed/reordered: rebuild the list
    bucketChanged = Signal(str)        # one bucket's fields changed (id)
    bucketScanned = Signal(str)        # a scan result arrived (id)
    balanceChanged = Signal(object)    # Balance | None
    notice = Signal(str)               # a message for the banner (refused drops, edit errors)

    def __init__(self, project_vm: ProjectViewModel, tasks: TaskRunner, parent: QObject | None = None):
        super().__init__(parent)
        self._pvm = project_vm
        self._tasks = tasks
        self._scans: dict[str, BucketScan] = {}
        self._tickets: dict[str, int] = {}
        self._remembered: dict[str, float] = {}
        self.balance: Balance | None = None
        project_vm.projectLoaded.connect(self.reload)

    @property
    def project_vm(self) -> ProjectViewModel:
        """The document this view-model edits (panes listen to its projectLoaded)."""
        return self._pvm

    # --- reading -----------------------------------------------------------------------
    @property
    def buckets(self) -> list[BucketConfig]:
        """Image buckets, in file order (text-embedding entries are kept but not shown)."""
        if not self._pvm.is_open:
            return []
        return [b for b in self._pvm.project.buckets if b.dataset_type == "image"]

    def bucket(self, bucket_id: str) -> BucketConfig:
        for b in self._pvm.project.buckets:
            if b.id == bucket_id:
                return b
        raise KeyError(bucket_id)

    def scan(self, bucket_id: str) -> BucketScan | None:
        return self._scans.get(bucket_id)

    def folder_of(self, bucket_id: str) -> Path:
        return self._pvm.project.bucket_dir(self.bucket(bucket_id))

    @property
    def scanning(self) -> bool:
        return bool(self._tickets)

    # --- project events ----------------------------------------------------------------
    def reload(self) -> None:
        self._scans.clear()
        self._tickets.clear()
        self._remembered.clear()
        self.bucketsReset.emit()
        for b in self.buckets:
            self.rescan(b.id)
        self._update_balance()

    # --- adding and removing -----------------------------------------------------------
    def add_folders(self, paths: list[Path]) -> DropVerdict:
        """Add each folder as a bucket (role filling the missing side); explain refusals."""
        project = self._pvm.project
        verdict = judge_drop(paths, [project.bucket_dir(b) for b in self.buckets])
        buckets = list(project.buckets)
        taken = {b.id for b in buckets}
        for folder in verdict.folders:
            bucket = BucketConfig(id=unique_id(folder.name, taken),
                                  instance_data_dir=folder_entry(folder, project.root),
                                  slider_strength=default_strength([b.slider_strength for b in buckets]))
            taken.add(bucket.id)
            buckets.append(bucket)
        if verdict.folders:
            self._pvm.replace_buckets(buckets)
            self.bucketsReset.emit()
            for folder in verdict.folders:
                self.rescan(next(b.id for b in buckets if project.bucket_dir(b).resolve() == folder.resolve()))
        if verdict.refused:
            self.notice.emit("Not added:\n" + verdict.message())
        return verdict

    def remove_bucket(self, bucket_id: str) -> None:
        self._pvm.replace_buckets([b for b in self._pvm.project.buckets if b.id != bucket_id])
        self._scans.pop(bucket_id, None)
        self._tickets.pop(bucket_id, None)
        self.bucketsReset.emit()
        self._update_balance()

    # --- editing -----------------------------------------------------------------------
    def set_strength(self, bucket_id: str, value: float) -> float:
        """The dial moved: snap to 0.05; the role follows the sign."""
        strength = snap(value)
        if strength:
            self._remembered[bucket_id] = abs(strength)
        self.set_field(bucket_id, slider_strength=strength)
        return strength

    def set_role(self, bucket_id: str, role: str) -> float:
        """The role toggle: keep the magnitude, set the sign (neutral is 0)."""
        current = self.bucket(bucket_id).slider_strength
        if current:
            self._remembered[bucket_id] = abs(current)
        strength = strength_for_role(role, current, self._remembered.get(bucket_id, 0.5))
        self.set_field(bucket_id, slider_strength=strength)
        return strength

    def set_field(self, bucket_id: str, **changes: Any) -> str | None:
        """Validated edit of one bucket; returns the error shown to the user, or None."""
        try:
            updated = self._pvm.validate_bucket(self.bucket(bucket_id), **changes)
        except InputError as exc:
            self.notice.emit(str(exc))
            return str(exc)
        buckets = [updated if b.id == bucket_id else b for b in self._pvm.project.buckets]
        self._pvm.replace_buckets(buckets)
        self.bucketChanged.emit(bucket_id)
        if {"caption_strategy", "instance_prompt", "instance_data_dir"} & set(changes):
            self.rescan(bucket_id)
        self._update_balance()
        return None

    # --- scanning ----------------------------------------------------------------------
    def rescan(self, bucket_id: str) -> None:
        ticket = self._tickets.get(bucket_id, 0) + 1
        self._tickets[bucket_id] = ticket
        project, bucket = self._pvm.project, self.bucket(bucket_id)
        self._tasks.submit(lambda: scan_with_thumbnails(project, bucket),
                           lambda result, i=bucket_id, t=ticket: self._on_scanned(i, t, result),
                           lambda exc, i=bucket_id, t=ticket: self._on_scan_failed(i, t, exc))

    def rescan_all(self) -> None:
        for b in self.buckets:
            self.rescan(b.id)

    def _on_scanned(self, bucket_id: str, ticket: int, result: BucketScan) -> None:
        if self._tickets.get(bucket_id) != ticket:
            return  # stale (re-scanned or removed since)
        del self._tickets[bucket_id]
        self._scans[bucket_id] = result
        self.bucketScanned.emit(bucket_id)
        self._update_balance()

    def _on_scan_failed(self, bucket_id: str, ticket: int, exc: Exception) -> None:
        if self._tickets.get(bucket_id) == ticket:
            del self._tickets[bucket_id]
            self.notice.emit(f"Could not read bucket '{bucket_id}': {exc}")

    def _update_balance(self) -> None:
        """Balance from the latest scans, with each bucket's *current* strength (role edits)."""
        if not self._pvm.is_open:
            return
        current = {b.id: b for b in self.buckets if not b.disabled}
        scanned = [dataclasses.replace(s.scanned, bucket=current[i])
                   for i, s in self._scans.items() if i in current]
        self.balance = balance(self._pvm.project, scanned) if scanned else None
        self.balanceChanged.emit(self.balance)
