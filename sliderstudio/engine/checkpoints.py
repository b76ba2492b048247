"""Resumable checkpoints: adapter, optimizer, scheduler and loop position, published atomically.

A checkpoint is written into a hidden temp folder and renamed into place, so a folder named
`checkpoint-NNNNNN` is always complete. The sampler needs no saved state: its order is a pure function
of the seed, so the micro-batch index is enough to continue exactly where the run left off.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.kernel.file_modes import dir_mode

PREFIX = "checkpoint-"
STATE = "state.json"


@dataclass
class LoopState:
    step: int
    micro_index: int
    seed: int
    total_steps: int


def checkpoint_root(output_dir: Path) -> Path:
    return output_dir / "checkpoints"


def list_checkpoints(output_dir: Path) -> list[Path]:
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE).exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def find_resume(output_dir: Path, spec: str | None, project_root: Path) -> Path | None:
    """`resume_from_checkpoint`: 'latest' (none yet is fine: a fresh start) or a folder path."""
    if not spec:
        return None
    if spec == "latest":
        return latest_checkpoint(output_dir)
    path = Path(spec)
    path = path if path.is_absolute() else project_root / path
    if not (path / STATE).exists():
        raise ConfigError("not a checkpoint folder (no state.json)", key="resume_from_checkpoint", value=spec)
    return path


def write_checkpoint(output_dir: Path, state: LoopState, write_files: Callable[[Path], None],
                     keep: int | None = None) -> Path:
    """`write_files(folder)` writes the adapter etc.; state.json goes last, then the folder is renamed."""
    root = checkpoint_root(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state.step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        tmp.chmod(dir_mode())  # mkdtemp's 0o700 would survive the rename: other users could not read it
        write_files(tmp)
        (tmp / STATE).write_text(json.dumps(asdict(state), indent=2))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep:
        for old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(folder: Path) -> LoopState:
    return LoopState(**json.loads((folder / STATE).read_text()))


def save_torch(obj: Any, path: Path) -> None:
    import torch  # here, not at the top: listing checkpoints must not need the engine

    torch.save(obj, path)


def load_torch(path: Path) -> Any:
    """Optimizer and scheduler states hold only tensors and numbers: weights_only refuses anything else."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def clean_stale_temp(output_dir: Path) -> None:
    """Remove half-written temp folders left by a killed run."""
    root = checkpoint_root(output_dir)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(f".{PREFIX}"):
                shutil.rmtree(p, ignore_errors=True)
