"""Helpers shared by the packaging tests: a stand-in torch wheel and a fake nvidia-smi.

No __init__.py in this folder on purpose: as a package it would be imported as `packaging.*`,
clashing with the PyPI `packaging` distribution that pytest itself imports.
"""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

DUMMY_MARKER = "slider-studio dummy torch"


def write_dummy_torch_wheel(folder: Path, version: str) -> Path:
    """A few-KB `torch` wheel that stands in for a multi-GB CUDA build (pure Python, py3-none-any)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"torch-{version}.dist-info"
    files = {
        "torch/__init__.py": f'"""{DUMMY_MARKER}"""\n__version__ = "{version}"\nDUMMY = True\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: sliderstudio-tests\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
        f"{info}/top_level.txt": "torch\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"torch-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


def write_fake_nvidia_smi(folder: Path, rows: str, compute_cap: bool = True) -> Path:
    """An `nvidia-smi` script printing `rows` for --query-gpu; without compute_cap it fails like an old driver."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    old_driver = "" if compute_cap else (
        'case "$*" in *compute_cap*) echo \'Field "compute_cap" is not a valid field to query.\' >&2; exit 2;; esac\n')
    script.write_text("#!/bin/sh\n" + old_driver + f"cat <<'ROWS'\n{rows.strip()}\nROWS\n")
    script.chmod(0o755)
    return script
