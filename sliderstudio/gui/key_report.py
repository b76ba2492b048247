"""The "opened a SimpleTuner config" dialog: which keys were mapped, changed or ignored, and why.

Shown after File → Open when the config used SimpleTuner spellings or options Slider Studio does not
implement, so nothing is dropped silently. Non-blocking, like the app's error boxes.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from sliderstudio.config.simpletuner_keys import KeyNote

HEADINGS = (("mapped", "Mapped to Slider Studio's name"), ("changed", "Value changed"),
            ("ignored", "Ignored (SimpleTuner options Slider Studio does not implement)"))


def report_lines(notes: list[KeyNote]) -> list[str]:
    """Plain-text report grouped by kind, one key per line with its reason."""
    lines: list[str] = []
    for kind, heading in HEADINGS:
        group = [n for n in notes if n.kind == kind]
        if not group:
            continue
        lines.append(f"{heading} ({len(group)}):")
        for note in group:
            lines.append(f"  {note.key} → {note.detail}" if kind == "mapped" else f"  {note.key}: {note.detail}")
    return lines


def summary(notes: list[KeyNote]) -> str:
    counts = {kind: sum(n.kind == kind for n in notes) for kind, _ in HEADINGS}
    return (f"This config uses SimpleTuner keys: {counts['mapped']} mapped, {counts['changed']} changed, "
            f"{counts['ignored']} ignored. Details below; the run log lists them too.")


def show_key_report(parent: QWidget, title: str, notes: list[KeyNote]) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Information, title, summary(notes), QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("simpletunerKeyReport")
    box.setInformativeText("\n".join(report_lines(notes)[:12]) + ("\n…" if len(report_lines(notes)) > 12 else ""))
    box.setDetailedText("\n".join(report_lines(notes)))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
