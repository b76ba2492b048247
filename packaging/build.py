"""Build the installer for this platform: icons → PyInstaller bundle → the file a user downloads.

    python packaging/build.py [--skip-pyinstaller]

- Linux:   dist/SliderStudio-<version>-linux-<arch>.tar.gz (the folder, a .desktop file, icons
           and install.sh, which adds the app to the user's menu without root)
- Windows: dist/SliderStudio-<version>-windows-x64-setup.exe via Inno Setup (iscc on PATH or
           $ISCC), else a .zip of the folder
- macOS:   dist/SliderStudio-<version>-macos-<arch>.dmg via hdiutil (packaging/macos/make_dmg.sh)

Writes build/installer-report.json with the build time and sizes, so the figures in
packaging/README.md can be re-measured by anyone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bundle_config  # noqa: E402
from make_icon import write_icons  # noqa: E402

BUILD = ROOT / "build"
BUNDLE = BUILD / "bundle"
DIST = ROOT / "dist"


def arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


def run_pyinstaller() -> None:
    """The one-folder bundle in build/bundle/ (a clean rebuild: stale files never leak in)."""
    bundle_config.toy_model_dir()  # fail before a long build when the toy model is missing
    bundle_config.require_cpu_torch()
    env = {**os.environ, "SLIDERSTUDIO_ICON_DIR": str(BUILD / "icons")}
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
                    "--distpath", str(BUNDLE), "--workpath", str(BUILD / "pyinstaller"),
                    str(HERE / "sliderstudio.spec")], check=True, cwd=ROOT, env=env)


#: Big libraries that ship with full symbol tables (libtorch_cpu.so: ~90 MB of them). Only these:
#: libraries patched by auditwheel/patchelf (numpy.libs, pillow.libs, ...) can break when stripped.
STRIP_GLOBS = ("torch/lib/libtorch*.so*", "torch/lib/libc10*.so*", "libpython3*.so*")


def strip_symbols(internal: Path) -> int:
    """`strip --strip-unneeded` the libraries in STRIP_GLOBS (dynamic symbols stay); bytes saved."""
    strip = shutil.which("strip")
    if strip is None or sys.platform != "linux":
        return 0
    saved = 0
    for pattern in STRIP_GLOBS:
        for lib in internal.glob(pattern):
            if lib.is_file() and not lib.is_symlink():
                before = lib.stat().st_size
                subprocess.run([strip, "--strip-unneeded", str(lib)], check=True)
                saved += before - lib.stat().st_size
    return saved


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def package_linux(version: str) -> Path:
    """Add the desktop integration files to the folder and pack it as a .tar.gz."""
    folder = BUNDLE / "sliderstudio"
    shutil.copy2(HERE / "linux" / "sliderstudio.desktop", folder / "sliderstudio.desktop")
    shutil.copy2(HERE / "linux" / "install.sh", folder / "install.sh")
    (folder / "install.sh").chmod(0o755)
    shutil.copy2(HERE / "linux" / "README.txt", folder / "README.txt")
    icons = folder / "icons"
    icons.mkdir(exist_ok=True)
    for path in (BUILD / "icons").glob("sliderstudio*.png"):
        shutil.copy2(path, icons / path.name)
    shutil.copy2(BUILD / "icons" / "sliderstudio.svg", icons / "sliderstudio.svg")
    name = f"SliderStudio-{version}-linux-{arch()}"
    out = DIST / f"{name}.tar.gz"
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(folder, arcname=name)
    return out


def package_windows(version: str) -> Path:
    """Inno Setup installer when iscc is available, else a zip of the folder."""
    iscc = os.environ.get("ISCC") or shutil.which("iscc") or shutil.which("ISCC")
    if iscc:
        subprocess.run([iscc, f"/DAppVersion={version}", f"/DSourceDir={BUNDLE / 'sliderstudio'}",
                        f"/DIconFile={BUILD / 'icons' / 'sliderstudio.ico'}", f"/O{DIST}",
                        str(HERE / "windows" / "sliderstudio.iss")], check=True)
        return DIST / f"SliderStudio-{version}-windows-x64-setup.exe"
    out = DIST / f"SliderStudio-{version}-windows-x64.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((BUNDLE / "sliderstudio").rglob("*")):
            archive.write(path, Path(f"SliderStudio-{version}") / path.relative_to(BUNDLE / "sliderstudio"))
    return out


def package_macos(version: str) -> Path:
    out = DIST / f"SliderStudio-{version}-macos-{arch()}.dmg"
    subprocess.run(["bash", str(HERE / "macos" / "make_dmg.sh"), str(BUNDLE / "Slider Studio.app"), str(out)],
                   check=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-pyinstaller", action="store_true", help="only re-pack an existing build")
    args = parser.parse_args()
    version = bundle_config.app_version()
    started = time.monotonic()
    write_icons(BUILD / "icons")
    if not args.skip_pyinstaller:
        run_pyinstaller()
    stripped = strip_symbols(BUNDLE / "sliderstudio" / "_internal")
    bundled = time.monotonic()
    DIST.mkdir(exist_ok=True)
    packer = {"win32": package_windows, "darwin": package_macos}.get(sys.platform, package_linux)
    artifact = packer(version)
    done = time.monotonic()
    app = BUNDLE / ("Slider Studio.app" if sys.platform == "darwin" else "sliderstudio")
    report = {"artifact": str(artifact.relative_to(ROOT)), "artifact_bytes": artifact.stat().st_size,
              "unpacked_bytes": folder_size(app), "pyinstaller_seconds": round(bundled - started, 1),
              "stripped_bytes": stripped, "packing_seconds": round(done - bundled, 1), "total_seconds": round(done - started, 1),
              "platform": f"{sys.platform}-{arch()}", "python": platform.python_version(), "version": version}
    (BUILD / "installer-report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
