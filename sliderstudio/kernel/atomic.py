"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A crash (or a full disk) at any point leaves either the old file or the new one, never a truncated one.
The temp file is private (mkstemp's 0o600); before the rename it gets the mode the user's umask gives
any new file, so other users' programs (ComfyUI, a render server) can read the outputs.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from sliderstudio.kernel.errors import OutputError
from sliderstudio.kernel.file_modes import file_mode


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `target`; on success it replaces `target`, on failure it is removed."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except PermissionError as exc:
        raise OutputError("the folder is not writable", file=target.parent) from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())  # path, not fd: os.fchmod is missing on Windows before 3.13
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise OutputError("no space left on the device while writing; the previous file is kept",
                              file=target) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | Path, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_with(target: str | Path, writer: Callable[[Path], None]) -> None:
    """Let a library write to a temp path (safetensors, torch.save, PIL) and publish it atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
