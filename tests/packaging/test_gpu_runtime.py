"""The GPU runtime (sliderstudio/runtime.py): detection with a fake nvidia-smi, the CUDA build per
driver, the side folder's precedence over the bundled torch, and a real pip install of a stand-in
torch wheel from a local folder. Fast: no download, no real torch replaced in this process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pack_helpers import DUMMY_MARKER, write_dummy_torch_wheel, write_fake_nvidia_smi

from sliderstudio import runtime
from sliderstudio.runtime import Gpu, build_for_version, choose_build, parse_driver, parse_gpus

TORCH = runtime.base_version(runtime.bundled_torch_version())
ROWS_4090 = "NVIDIA GeForce RTX 4090, 570.86.15, 8.9, 24564"


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """Put a fake nvidia-smi first on PATH (and nothing else of the real PATH's nvidia-smi)."""
    def install(rows: str, compute_cap: bool = True) -> Path:
        folder = tmp_path / "fakebin"
        write_fake_nvidia_smi(folder, rows, compute_cap)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/usr/bin{os.pathsep}/bin")
        return folder
    return install


@pytest.fixture
def runtime_home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "gpu-runtime"
    monkeypatch.setenv(runtime.RUNTIME_DIR_ENV, str(folder))
    monkeypatch.delenv(runtime.DISABLE_ENV, raising=False)
    return folder


# --- detection -----------------------------------------------------------------------------------

def test_parse_gpus_reads_rows_and_tolerates_missing_columns():
    gpus = parse_gpus("NVIDIA A100-SXM4-80GB, 550.54.15, 8.0, 81920\nTesla T4, 535.104.05\n\n")
    assert gpus == [Gpu("NVIDIA A100-SXM4-80GB", "550.54.15", 8.0, 81920), Gpu("Tesla T4", "535.104.05")]


def test_parse_driver():
    assert parse_driver("570.86.15") == (570, 86, 15)
    assert parse_driver("560.76") == (560, 76)
    assert parse_driver("not a version") == ()


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a shell script")
def test_detect_with_fake_nvidia_smi(fake_smi):
    fake_smi(ROWS_4090 + "\nNVIDIA RTX A2000, 570.86.15, 8.6, 6138")
    gpus = runtime.detect_gpus()
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA RTX A2000"]
    assert gpus[0].capability == 8.9 and gpus[0].memory_mib == 24564


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a shell script")
def test_detect_falls_back_when_the_driver_cannot_report_compute_capability(fake_smi):
    fake_smi("Tesla K80, 470.82.01", compute_cap=False)
    assert runtime.detect_gpus() == [Gpu("Tesla K80", "470.82.01")]


def test_detect_without_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(runtime, "os_kind", lambda: "linux")
    assert runtime.detect_gpus() == []


# --- which CUDA build for which driver -----------------------------------------------------------

@pytest.mark.parametrize("driver, capability, system, expected", [
    ("580.95.05", 8.9, "linux", "cu130"),     # newest driver: newest build
    ("580.65.06", None, "linux", "cu130"),    # exactly the CUDA 13.0 minimum
    ("580.65.05", 8.9, "linux", "cu128"),     # one below it
    ("575.51.03", 8.9, "linux", "cu128"),
    ("570.26", 8.9, "linux", "cu128"),
    ("565.57.01", 8.9, "linux", "cu126"),
    ("560.28.03", 7.5, "linux", "cu126"),
    ("535.183.01", 8.0, "linux", "cu126"),    # CUDA 12 minor-version compatibility
    ("580.95.05", 6.1, "linux", "cu126"),     # Pascal: CUDA 13 and torch's 12.8 builds dropped it
    ("580.95.05", 7.0, "linux", "cu128"),     # Volta: not in CUDA 13
    ("570.86.15", 12.0, "linux", "cu128"),    # Blackwell: needs CUDA >= 12.8
    ("570.64", 8.9, "windows", "cu126"),      # Windows minimums differ (570.65 for 12.8)
    ("572.16", 8.9, "windows", "cu128"),
    ("581.15", 8.9, "windows", "cu130"),
])
def test_choose_build_per_driver(driver, capability, system, expected):
    build, why = choose_build(driver, capability, system)
    assert build is not None and build.tag == expected, why
    assert build.index_url == f"https://download.pytorch.org/whl/{expected}"


@pytest.mark.parametrize("driver, capability", [("520.61.05", 8.6), ("470.82.01", None), ("", None)])
def test_choose_build_refuses_too_old_drivers(driver, capability):
    build, why = choose_build(driver, capability, "linux")
    assert build is None and "too old" in why


def test_choose_build_refuses_a_gpu_no_build_supports():
    build, why = choose_build("580.95.05", 3.5, "linux")
    assert build is None and "compute capability 3.5" in why


def test_build_for_version_accepts_version_or_tag_and_names_the_choices():
    assert build_for_version("12.8").tag == "cu128" and build_for_version("cu126").cuda == "12.6"
    with pytest.raises(ValueError, match="12.6"):
        build_for_version("11.8")


def test_plan_install_uses_the_detected_gpu(monkeypatch, runtime_home):
    monkeypatch.setattr(runtime, "os_kind", lambda: "linux")
    plan = runtime.plan_install("auto", gpus=parse_gpus(ROWS_4090))
    assert plan.action == "install" and plan.build.tag == "cu128" and plan.torch_version == TORCH
    assert "RTX 4090" in plan.summary and "CUDA 12.8" in plan.summary
    args = plan.pip_args(runtime_home / "x")
    assert args[:3] == ["install", "--target", str(runtime_home / "x")]
    assert "--only-binary=:all:" in args and args[-1] == f"torch=={TORCH}"
    assert args[args.index("--index-url") + 1] == "https://download.pytorch.org/whl/cu128"


def test_plan_install_without_gpu_or_on_macos(monkeypatch):
    monkeypatch.setattr(runtime, "os_kind", lambda: "linux")
    assert runtime.plan_install("auto", gpus=[]).action == "unsupported"
    assert runtime.plan_install("none").action == "none"
    monkeypatch.setattr(runtime, "os_kind", lambda: "macos")
    assert "Metal" in runtime.plan_install("auto").summary


def test_plan_install_from_a_wheel_folder_uses_no_index(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "os_kind", lambda: "linux")
    plan = runtime.plan_install("12.6", find_links=str(tmp_path), gpus=[])
    args = plan.pip_args(tmp_path / "t")
    assert "--no-index" in args and args[args.index("--find-links") + 1] == str(tmp_path)


def test_pip_command_in_frozen_app_reruns_the_app(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/SliderStudio/sliderstudio")
    assert runtime.pip_command(["list"]) == ["/opt/SliderStudio/sliderstudio", runtime.PIP_FLAG, "list"]


def test_pip_command_on_windows_uses_the_console_twin(monkeypatch, tmp_path):
    (tmp_path / "Slider Studio.exe").write_bytes(b"")
    (tmp_path / "sliderstudio.exe").write_bytes(b"")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "Slider Studio.exe"))
    monkeypatch.setattr(runtime, "os_kind", lambda: "windows")
    assert runtime.pip_command(["list"])[0] == str(tmp_path / "sliderstudio.exe")


# --- the side folder goes first -------------------------------------------------------------------

def _side_runtime(folder: Path, version: str, python: str | None = None) -> Path:
    site = folder / "torch-site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text(f'"""{DUMMY_MARKER}"""\n__version__ = "{version}"\n')
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    (folder / runtime.MANIFEST).write_text(json.dumps({"site": "torch-site", "torch": version, "python": python}))
    return site


def _which_torch(env_extra: dict[str, str], load: bool = False) -> subprocess.CompletedProcess:
    """Where `import torch` resolves after activation (found, not imported, unless `load`)."""
    code = ("from sliderstudio.runtime import activate; activate(); import torch; "
            "print(torch.__version__); print(torch.__file__)") if load else \
        ("import importlib.util; from sliderstudio.runtime import activate; activate(); "
         "print(importlib.util.find_spec('torch').origin)")
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_side_folder_takes_precedence_over_the_installed_torch(runtime_home):
    site = _side_runtime(runtime_home, f"{TORCH}+cu128")
    done = _which_torch({runtime.RUNTIME_DIR_ENV: str(runtime_home)}, load=True)
    assert done.returncode == 0, done.stderr
    version, file = done.stdout.split()
    assert version == f"{TORCH}+cu128" and Path(file).parent.parent == site


def test_side_folder_is_skipped_for_another_python_or_torch_release_or_when_disabled(runtime_home):
    _side_runtime(runtime_home, f"{TORCH}+cu128", python="3.9")
    done = _which_torch({runtime.RUNTIME_DIR_ENV: str(runtime_home)})
    assert str(runtime_home) not in done.stdout and "installed for Python 3.9" in done.stderr
    manifest = json.loads((runtime_home / runtime.MANIFEST).read_text())
    (runtime_home / runtime.MANIFEST).write_text(json.dumps({**manifest, "python": f"{sys.version_info.major}."
                                                             f"{sys.version_info.minor}", "torch": "1.0.0+cu118"}))
    done = _which_torch({runtime.RUNTIME_DIR_ENV: str(runtime_home)})
    assert str(runtime_home) not in done.stdout and "holds torch 1.0.0+cu118" in done.stderr
    _side_runtime(runtime_home / "again", f"{TORCH}+cu128")
    done = _which_torch({runtime.RUNTIME_DIR_ENV: str(runtime_home / "again"), runtime.DISABLE_ENV: "1"})
    assert done.returncode == 0 and str(runtime_home) not in done.stdout


def test_activate_without_runtime_changes_nothing(runtime_home):
    before = list(sys.path)
    assert runtime.activate() is None and sys.path == before


# --- a real install (pip, local wheel folder) through the command line -----------------------------

def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sliderstudio.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env, "PIP_CONFIG_FILE": os.devnull}, timeout=300)


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a shell script")
def test_install_status_remove_with_a_stand_in_wheel(tmp_path, runtime_home):
    wheels = tmp_path / "wheels"
    write_dummy_torch_wheel(wheels, f"{TORCH}+cu128")
    fakebin = write_fake_nvidia_smi(tmp_path / "fakebin", ROWS_4090).parent
    env = {runtime.RUNTIME_DIR_ENV: str(runtime_home), "PATH": f"{fakebin}{os.pathsep}{os.environ['PATH']}"}

    dry = _cli("runtime", "install", "--find-links", str(wheels), "--dry-run", env=env)
    assert dry.returncode == 0 and "CUDA 12.8" in dry.stdout and "--no-index" in dry.stdout, dry.stderr

    done = _cli("runtime", "install", "--find-links", str(wheels), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = runtime.read_manifest(runtime_home)
    assert manifest["torch"] == f"{TORCH}+cu128" and manifest["tag"] == "cu128"
    assert not list(runtime_home.glob("*.partial"))

    status = json.loads(_cli("runtime", "status", "--json", env=env).stdout)
    assert status["torch"] == f"{TORCH}+cu128" and status["bundled_torch"].split("+")[0] == TORCH
    assert "+cu128" not in status["bundled_torch"]
    assert Path(status["torch_file"]).is_relative_to(runtime_home)
    assert status["gpus"][0]["name"] == "NVIDIA GeForce RTX 4090"

    assert _cli("runtime", "remove", env=env).returncode == 0
    assert not runtime_home.exists()
    assert str(runtime_home) not in _which_torch(env).stdout


def test_failed_install_keeps_the_previous_runtime(tmp_path, runtime_home):
    site = _side_runtime(runtime_home, f"{TORCH}+cu126")
    plan = runtime.plan_install("12.8", find_links=str(tmp_path / "empty"), gpus=[])
    (tmp_path / "empty").mkdir()
    lines: list[str] = []
    with pytest.raises(RuntimeError, match="pip failed"):
        runtime.install_runtime(plan, on_line=lines.append)
    assert lines and runtime.read_manifest(runtime_home)["torch"] == f"{TORCH}+cu126" and site.is_dir()


def test_cancel_stops_the_install_process():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RuntimeError, match="cancelled"):
        runtime._run_streaming([sys.executable, "-c", "import time; time.sleep(30)"], lambda line: None, cancel)


def test_remove_runtime(runtime_home):
    _side_runtime(runtime_home, f"{TORCH}+cu128")
    assert runtime.remove_runtime() is True and not runtime_home.exists()
    assert runtime.remove_runtime() is False
