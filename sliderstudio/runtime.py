"""The GPU runtime: a PyTorch build that matches this machine's NVIDIA GPU, kept beside the app.

Why: the installer bundles the CPU build of PyTorch, so it stays small (CUDA builds weigh several
GB) and the demo works offline. `sliderstudio runtime install` (or the GUI's menu entry, through
`plan_install` + `install_runtime`) detects the GPU with `nvidia-smi`, picks the CUDA build the
driver can run, and pip-installs that torch into a side folder of the user's data directory.
At the next start, `activate()` puts that folder first on `sys.path`, ahead of the bundled torch.
Removing the folder (`sliderstudio runtime remove`) returns to the bundled CPU build.

No Qt here, and no torch import except in `runtime_status`: `activate()` must run before torch is
imported, and `remove` must work even when the installed runtime is broken.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

RUNTIME_DIR_ENV = "SLIDERSTUDIO_RUNTIME_DIR"
DISABLE_ENV = "SLIDERSTUDIO_NO_GPU_RUNTIME"
#: argv[1] that makes the frozen app run pip instead of Slider Studio (it has no `python -m pip`).
PIP_FLAG = "--runtime-pip"
TORCH_INDEX = "https://download.pytorch.org/whl"
MANIFEST = "runtime.json"
Driver = tuple[int, ...]


@dataclass(frozen=True)
class CudaBuild:
    """One CUDA build of PyTorch on the PyTorch wheel index, and what it needs from the machine."""

    tag: str                # wheel index folder and local version label: "cu128"
    cuda: str               # "12.8"
    linux_driver: Driver    # minimum NVIDIA driver (CUDA toolkit release notes, Linux / Windows)
    windows_driver: Driver
    min_capability: float = 0.0    # oldest GPU architecture the build still compiles for
    max_capability: float = 99.0   # newest one it knows (Blackwell needs CUDA >= 12.8)

    @property
    def index_url(self) -> str:
        return f"{TORCH_INDEX}/{self.tag}"


#: The CUDA builds published for the pinned torch, newest first: update with the torch pin (the
#: index folders, and the GPU architectures each build compiles for, are in torch's release notes).
#: CUDA 13 dropped Maxwell/Pascal/Volta; torch's 12.8 builds dropped Maxwell/Pascal and added
#: Blackwell; the 12.6 builds keep Maxwell..Hopper.
CUDA_BUILDS: tuple[CudaBuild, ...] = (
    CudaBuild("cu130", "13.0", (580, 65, 6), (580, 88), min_capability=7.5),
    CudaBuild("cu128", "12.8", (570, 26), (570, 65), min_capability=7.0),
    CudaBuild("cu126", "12.6", (560, 28, 3), (560, 76), min_capability=5.0, max_capability=9.0),
)
#: CUDA 12 minor-version compatibility: any 12.x build runs on a driver from 525.60.13 on.
CUDA12_COMPAT_DRIVER = {"linux": (525, 60, 13), "windows": (527, 41)}


@dataclass(frozen=True)
class Gpu:
    name: str
    driver: str
    capability: float | None = None
    memory_mib: int | None = None


@dataclass
class InstallPlan:
    """What `install` would do on this machine; `summary` is the text for a confirmation dialog."""

    action: str                      # "install", "none" (nothing to do) or "unsupported"
    summary: str
    gpus: list[Gpu] = field(default_factory=list)
    build: CudaBuild | None = None
    torch_version: str = ""
    index_url: str | None = None
    find_links: str | None = None

    def pip_args(self, target: Path) -> list[str]:
        """pip arguments that install this plan's torch (and its CUDA libraries) into `target`."""
        source = ["--no-index", "--find-links", self.find_links] if self.find_links else \
            ["--index-url", self.index_url or ""]
        return ["install", "--target", str(target), "--only-binary=:all:", "--upgrade",
                "--disable-pip-version-check", "--no-warn-script-location", "--progress-bar", "off",
                *source, f"torch=={self.torch_version}"]


# --- where things live ---------------------------------------------------------------------------

def os_kind() -> str:
    """"linux", "windows" or "macos"."""
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")


def runtime_dir() -> Path:
    """The per-user folder that holds the GPU runtime (overridable for tests and portable installs)."""
    override = os.environ.get(RUNTIME_DIR_ENV)
    if override:
        return Path(override)
    if os_kind() == "windows":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "SliderStudio"
    elif os_kind() == "macos":
        base = Path.home() / "Library" / "Application Support" / "SliderStudio"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "sliderstudio"
    return base / "gpu-runtime"


def read_manifest(folder: Path | None = None) -> dict | None:
    """The installed runtime's manifest, or None when none is installed (or it is unreadable)."""
    path = (folder or runtime_dir()) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def bundled_torch_version() -> str:
    """The torch this app was built with, from metadata, ignoring the GPU runtime's copy.

    Read without importing torch: it runs before activation, and when the runtime is broken.
    """
    from importlib.metadata import distributions

    side = runtime_dir().resolve()
    paths = [p for p in sys.path if not _is_below(Path(p or "."), side)]
    for dist in distributions(name="torch", path=paths):
        return str(dist.version)
    return ""


def _is_below(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except OSError:
        return False


def base_version(text: str) -> str:
    """"2.13.0+cpu" → "2.13.0": the version every CUDA build of the same release shares."""
    return text.split("+", 1)[0]


# --- activation at start-up ----------------------------------------------------------------------

def activate(folder: Path | None = None, warn: Callable[[str], None] | None = None) -> Path | None:
    """Put an installed GPU runtime first on sys.path; return its site folder, or None.

    Called at the very start of the app, before anything imports torch. Skipped (with a one-line
    warning) when the runtime was made for another Python or another torch release, so an app
    update never starts on a mismatched torch.
    """
    warn = warn or (lambda text: print(f"warning: {text}", file=sys.stderr))
    if os.environ.get(DISABLE_ENV):
        return None
    folder = folder or runtime_dir()
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    site = folder / str(manifest.get("site", ""))
    problem = _activation_problem(manifest, site)
    if problem:
        warn(f"GPU runtime not used: {problem}; run `sliderstudio runtime install` again "
             "or `sliderstudio runtime remove`")
        return None
    if "torch" in sys.modules:
        warn("GPU runtime not used: torch was already imported")
        return None
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    return site


def _activation_problem(manifest: dict, site: Path) -> str | None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest.get("python") != python:
        return f"it was installed for Python {manifest.get('python')}, this app runs {python}"
    bundled = base_version(bundled_torch_version())
    if bundled and base_version(str(manifest.get("torch", ""))) != bundled:
        return f"it holds torch {manifest.get('torch')}, this app needs {bundled}"
    if not (site / "torch").is_dir():
        return f"{site} has no torch package"
    return None


# --- GPU detection -------------------------------------------------------------------------------

def find_nvidia_smi() -> str | None:
    """nvidia-smi on PATH, or where the Windows driver installs it."""
    found = shutil.which("nvidia-smi")
    if found or os_kind() != "windows":
        return found
    for candidate in (Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32" / "nvidia-smi.exe",
                      Path(os.environ.get("ProgramFiles", r"C:\Program Files")) / "NVIDIA Corporation" /
                      "NVSMI" / "nvidia-smi.exe"):
        if candidate.is_file():
            return str(candidate)
    return None


def _query(smi: str, fields: str) -> str | None:
    try:
        done = subprocess.run([smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_gpus(text: str) -> list[Gpu]:
    """Rows of `name, driver_version[, compute_cap[, memory.total]]` → Gpu records."""
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 2 or not cells[0]:
            continue
        gpus.append(Gpu(cells[0], cells[1], _number(cells, 2, float), _number(cells, 3, int)))
    return gpus


def _number(cells: list[str], i: int, kind: type) -> float | int | None:
    try:
        return kind(float(cells[i])) if kind is int else kind(cells[i])
    except (IndexError, ValueError):
        return None


def detect_gpus() -> list[Gpu]:
    """NVIDIA GPUs on this machine (empty when there is no driver). Old drivers lack compute_cap."""
    smi = find_nvidia_smi()
    if smi is None:
        return []
    text = _query(smi, "name,driver_version,compute_cap,memory.total")
    if text is None:
        text = _query(smi, "name,driver_version")
    return parse_gpus(text or "")


def parse_driver(text: str) -> Driver:
    """"570.86.15" → (570, 86, 15); unparseable parts end the tuple."""
    parts = []
    for piece in text.strip().split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


# --- choosing the build --------------------------------------------------------------------------

def choose_build(driver: str, capability: float | None = None, system: str | None = None,
                 builds: Sequence[CudaBuild] = CUDA_BUILDS) -> tuple[CudaBuild | None, str]:
    """The newest CUDA build this driver (and GPU architecture) can run, and why it was chosen."""
    system = system or os_kind()
    have = parse_driver(driver)
    fits_gpu = [b for b in builds if capability is None or b.min_capability <= capability <= b.max_capability]
    if not fits_gpu:
        return None, f"no CUDA build of PyTorch supports this GPU (compute capability {capability})"
    for build in fits_gpu:
        need = build.windows_driver if system == "windows" else build.linux_driver
        if have >= need:
            return build, f"driver {driver} runs CUDA {build.cuda} (needs {_dotted(need)})"
    compat = [b for b in reversed(fits_gpu) if b.cuda.startswith("12.")]
    need = CUDA12_COMPAT_DRIVER["windows" if system == "windows" else "linux"]
    if compat and have >= need:
        return compat[0], (f"driver {driver} runs CUDA {compat[0].cuda} through CUDA 12 minor-version "
                           f"compatibility (needs {_dotted(need)}); a driver update is recommended")
    oldest = min((b.windows_driver if system == "windows" else b.linux_driver) for b in fits_gpu)
    return None, f"driver {driver} is too old for any CUDA build (update it to {_dotted(oldest)} or newer)"


def build_for_version(cuda: str, builds: Sequence[CudaBuild] = CUDA_BUILDS) -> CudaBuild:
    """`--cuda 12.8` / `--cuda cu128` → that build; a ValueError lists the known ones."""
    wanted = cuda.strip().lower()
    for build in builds:
        if wanted in (build.cuda, build.tag):
            return build
    known = ", ".join(b.cuda for b in builds)
    raise ValueError(f"unknown CUDA version '{cuda}' (this release offers {known}, or auto, or none)")


def _dotted(version: Driver) -> str:
    return ".".join(str(v) for v in version)


def plan_install(cuda: str = "auto", index_url: str | None = None, find_links: str | None = None,
                 gpus: list[Gpu] | None = None) -> InstallPlan:
    """Decide what `install_runtime` would do here. Cheap: no download, no torch import.

    `cuda`: "auto" (detect), a version such as "12.8", or "none" (use the bundled CPU build).
    `index_url` / `find_links` replace the PyTorch index (a mirror, or a folder of wheels for
    machines without internet).
    """
    torch_version = base_version(bundled_torch_version())
    if cuda.strip().lower() == "none":
        return InstallPlan("none", "use the bundled CPU build of PyTorch (the GPU runtime is removed)")
    if os_kind() == "macos":
        return InstallPlan("none", "macOS: the bundled PyTorch already uses the GPU through Metal (MPS); "
                                   "there is no CUDA on macOS")
    gpus = detect_gpus() if gpus is None else gpus
    if cuda.strip().lower() == "auto":
        build, why = _auto_build(gpus)
    else:
        build, why = build_for_version(cuda), f"CUDA {cuda} requested"
    if build is None:
        return InstallPlan("unsupported", why, gpus)
    url = index_url or build.index_url
    source = find_links or url
    summary = (f"{_gpu_words(gpus)}: {why}. Install PyTorch {torch_version} for CUDA {build.cuda} "
               f"from {source} into {runtime_dir()} (a download of about 1-3 GB); "
               "Slider Studio uses it from its next start.")
    return InstallPlan("install", summary, gpus, build, torch_version, None if find_links else url, find_links)


def _auto_build(gpus: list[Gpu]) -> tuple[CudaBuild | None, str]:
    if not gpus:
        return None, "no NVIDIA GPU found (nvidia-smi is missing or sees no GPU); the CPU build stays in use"
    capabilities = [g.capability for g in gpus if g.capability is not None]
    # several GPUs: the build must suit the newest architecture; the driver is shared
    return choose_build(gpus[0].driver, max(capabilities) if capabilities else None)


def _gpu_words(gpus: list[Gpu]) -> str:
    if not gpus:
        return "no NVIDIA GPU detected"
    return ", ".join(f"{g.name} (driver {g.driver})" for g in gpus)


# --- installing and removing ---------------------------------------------------------------------

def pip_command(args: Sequence[str]) -> list[str]:
    """How to run pip from this app: the frozen app re-runs itself with PIP_FLAG (it has no -m).

    On Windows the windowed "Slider Studio.exe" has no console streams; its console twin
    sliderstudio.exe (same folder) runs pip instead.
    """
    if not getattr(sys, "frozen", False):
        return [sys.executable, "-m", "pip", *args]
    exe = Path(sys.executable)
    console = exe.with_name("sliderstudio.exe")
    if os_kind() == "windows" and console.is_file():
        exe = console
    return [str(exe), PIP_FLAG, *args]


def run_pip(args: Sequence[str]) -> int:
    """pip's own entry point, in this process (the frozen app's PIP_FLAG lands here)."""
    from pip._internal.cli.main import main as pip_main

    return int(pip_main(list(args)) or 0)


def install_runtime(plan: InstallPlan, on_line: Callable[[str], None] | None = None,
                    cancel: threading.Event | None = None) -> Path:
    """Run the plan: pip-install torch into a fresh side folder, then switch the manifest to it.

    Blocks for the whole download; the GUI calls it from a worker thread, streams `on_line` into
    a log view and sets `cancel` to stop. The previous runtime stays in use until the new one is
    complete (the manifest is replaced atomically last), so a failed or cancelled install changes
    nothing. Returns the new site folder; raises RuntimeError when pip fails or is cancelled.
    """
    if plan.action != "install" or plan.build is None:
        raise ValueError(f"nothing to install: {plan.summary}")
    on_line = on_line or (lambda line: print(line, flush=True))
    folder = runtime_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"torch-{plan.torch_version}-{plan.build.tag}"
    partial = folder / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    _run_streaming(pip_command(plan.pip_args(partial)), on_line, cancel)
    version = _installed_torch_version(partial)
    if base_version(version) != plan.torch_version:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"pip installed torch {version or '(nothing)'}, expected {plan.torch_version}")
    final = folder / name
    old = read_manifest(folder)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    _write_manifest(folder, {"site": name, "torch": version, "cuda": plan.build.cuda, "tag": plan.build.tag,
                             "python": f"{sys.version_info.major}.{sys.version_info.minor}",
                             "source": plan.find_links or plan.index_url,
                             "gpus": [asdict(g) for g in plan.gpus]})
    if old and old.get("site") and old["site"] != name:
        shutil.rmtree(folder / str(old["site"]), ignore_errors=True)
    on_line(f"GPU runtime ready: torch {version} in {final}; restart Slider Studio to use it")
    return final


def _run_streaming(command: list[str], on_line: Callable[[str], None],
                   cancel: threading.Event | None) -> None:
    no_window = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # Windows: no console pops up behind the app
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               encoding="utf-8", errors="replace", bufsize=1, creationflags=no_window,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"})
    watcher = None
    if cancel is not None:
        watcher = threading.Thread(target=_kill_on_cancel, args=(process, cancel), daemon=True)
        watcher.start()
    assert process.stdout is not None
    for line in process.stdout:
        on_line(line.rstrip())
    code = process.wait()
    if cancel is not None and cancel.is_set():
        raise RuntimeError("GPU runtime install cancelled")
    if code != 0:
        raise RuntimeError(f"pip failed (exit status {code}); see the lines above")


def _kill_on_cancel(process: subprocess.Popen, cancel: threading.Event) -> None:
    while process.poll() is None:
        if cancel.wait(0.2):
            process.terminate()
            return


def _installed_torch_version(site: Path) -> str:
    for info in site.glob("torch-*.dist-info"):
        for line in (info / "METADATA").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return ""


def _write_manifest(folder: Path, data: dict) -> None:
    """Temp file + rename: the manifest names a complete runtime or the previous one, never half."""
    temp = folder / f".{MANIFEST}.tmp"
    temp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(temp, folder / MANIFEST)


def remove_runtime() -> bool:
    """Delete the GPU runtime (the bundled CPU torch is used from the next start). True if one was there."""
    folder = runtime_dir()
    if not folder.exists():
        return False
    (folder / MANIFEST).unlink(missing_ok=True)  # first, so a half-deleted folder is never activated
    shutil.rmtree(folder, ignore_errors=True)
    return True


def runtime_status() -> dict:
    """What is in use now: app location, torch version and file, CUDA, the installed runtime, GPUs."""
    import sliderstudio

    info: dict = {"frozen": bool(getattr(sys, "frozen", False)), "app": str(Path(sliderstudio.__file__).parent),
                  "python": platform.python_version(), "runtime_dir": str(runtime_dir()),
                  "installed": read_manifest(), "bundled_torch": bundled_torch_version(),
                  "gpus": [asdict(g) for g in detect_gpus()]}
    try:
        import torch

        info["torch"] = str(getattr(torch, "__version__", "?"))
        info["torch_file"] = str(getattr(torch, "__file__", "?"))
        cuda = getattr(torch, "cuda", None)
        info["cuda_available"] = bool(cuda.is_available()) if cuda is not None else False
    except Exception as exc:  # a broken runtime must still be reportable (and removable)
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    return info
