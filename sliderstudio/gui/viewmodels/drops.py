"""What a drop onto the dataset pane accepts: folders become buckets, anything else is explained.

Pure path logic (no Qt) so the exact refusal messages are tested directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sliderstudio.engine.buckets import IMAGE_EXTENSIONS


@dataclass
class DropVerdict:
    folders: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)

    def message(self) -> str:
        """One line per refused path, for the pane's notice banner."""
        return "\n".join(f"{path.name or path}: {reason}" for path, reason in self.refused)


def refusal_reason(path: Path) -> str:
    """Why a non-folder cannot become a bucket, worded to say what to do instead."""
    if not path.exists():
        return "does not exist (was it moved or on a disconnected drive?)"
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ("is a single image; a bucket is a folder of images — drop the folder that "
                "holds it, or put the images in a folder first")
    return "is a file, not a folder; only folders of images can become buckets"


def judge_drop(paths: list[Path], known_folders: list[Path]) -> DropVerdict:
    """Split dropped paths into new bucket folders and refusals (files, duplicates, missing)."""
    verdict = DropVerdict()
    seen = {p.resolve() for p in known_folders}
    for path in paths:
        if path.is_dir():
            resolved = path.resolve()
            if resolved in seen:
                verdict.refused.append((path, "is already a bucket in this project"))
                continue
            seen.add(resolved)
            verdict.folders.append(path)
        else:
            verdict.refused.append((path, refusal_reason(path)))
    return verdict
