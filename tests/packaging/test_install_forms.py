"""presets/ and resources/ sit at the repository's top level; every install form must still carry them.

pyproject.toml maps them into the package as `sliderstudio.presets` / `sliderstudio.resources`. Proved
here for the three forms: a wheel (`pip install .`), the editable install (`pip install -e .`, what
`make install` does) and the PyInstaller bundle (packaging/bundle_config.py). The installs go into
throwaway venvs under the test's tmp folder (never into the project's .venv) and are checked from a
folder outside the repository, so nothing can come from the checkout by accident.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "packaging"))

import bundle_config  # noqa: E402

SOURCE_ITEMS = ("pyproject.toml", "README.md", "sliderstudio", "presets", "resources")

#: Run inside an installed copy, from a folder outside the repository: every preset the repository
#: ships must be found through sliderstudio.kernel.resources and parse, and the toy model folder must be
#: real. Prints one JSON line the test compares with the repository.
CHECK_SCRIPT = r"""
import importlib.util, json, sys
import sliderstudio
from sliderstudio.kernel import resources
names = {kind: resources.preset_names(kind) for kind in resources.PRESET_KINDS}
for kind, stems in names.items():
    for stem in stems:
        assert isinstance(resources.read_preset(kind, stem), dict), (kind, stem)
toy = resources.toy_model_dir()
spec = importlib.util.find_spec("sliderstudio.presets")
print(json.dumps({"package": sliderstudio.__file__, "presets": names, "toy": str(toy),
                  "toy_files": sorted(str(p.relative_to(toy)) for p in toy.rglob("*") if p.is_file()),
                  "presets_origin": spec.origin, "root": str(resources.shipped_root("presets")),
                  "prompts": len(json.loads(resources.read_config_data("builtin_prompt_library.json")))}))
"""


def repo_presets() -> dict[str, list[str]]:
    return {kind: sorted(p.stem for p in (ROOT / "presets" / kind).glob("*.json"))
            for kind in ("targets", "lycoris", "full_size")}


def repo_toy_files() -> list[str]:
    toy = ROOT / "resources" / "toy-model"
    return sorted(str(p.relative_to(toy)) for p in toy.rglob("*") if p.is_file())


def copy_source(dest: Path) -> Path:
    """The files a build reads, copied, so the build's own build/ and egg-info never touch the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dest.mkdir(parents=True)
    for name in SOURCE_ITEMS:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    return dest


def make_venv(folder: Path) -> Path:
    """A bare venv without pip (0.1 s instead of ~5 s): nothing of this test's environment leaks in."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True,
                   timeout=300)
    return folder / "bin" / "python"


def pip_install(python: Path, wheel: Path) -> None:
    """Install with this environment's pip into the venv's site-packages (`--target` never touches the
    running environment); the editable wheel's .pth lands there too and is read at the venv's start."""
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", purelib,
                    str(wheel)], check=True, capture_output=True, text=True, timeout=300)


def run_check(python: Path, cwd: Path) -> dict:
    done = subprocess.run([str(python), "-c", CHECK_SCRIPT], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel .` of a copy of the checkout (no build isolation: setuptools comes from this venv)."""
    work = tmp_path_factory.mktemp("wheel")
    src = copy_source(work / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(work / "out"), str(src)], check=True, capture_output=True, timeout=600)
    (found,) = (work / "out").glob("sliderstudio-*.whl")
    return found


# --- the package list ----------------------------------------------------------------------------
def packages_on_disk(pyproject: dict) -> set[str]:
    """Every importable folder below sliderstudio/ and the mapped folders, as a dotted package name."""
    mapped = pyproject["tool"]["setuptools"]["package-dir"]
    roots = {"sliderstudio": ROOT / "sliderstudio", **{name: ROOT / folder for name, folder in mapped.items()}}
    found = set()
    for name, folder in roots.items():
        found.add(name)
        for sub in folder.rglob("*"):
            rel = sub.relative_to(folder).parts
            if sub.is_dir() and all(part.isidentifier() and part != "__pycache__" for part in rel):
                found.add(".".join((name, *rel)))
    return found


def test_pyproject_lists_every_package_and_maps_presets_and_resources():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = pyproject["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"sliderstudio.presets": "presets", "sliderstudio.resources": "resources"}
    on_disk = packages_on_disk(pyproject)
    listed = set(setuptools["packages"])
    assert on_disk - listed == set(), "packages missing from [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == set(), "pyproject.toml lists packages that are not there"
    assert not (ROOT / "sliderstudio" / "presets").exists() and not (ROOT / "sliderstudio" / "resources").exists()


# --- the wheel -----------------------------------------------------------------------------------
def test_wheel_carries_every_preset_and_the_toy_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind, stems in repo_presets().items():
        assert stems, kind
        assert {f"sliderstudio/presets/{kind}/{s}.json" for s in stems} <= names, kind
    assert {f"sliderstudio/resources/toy-model/{f}" for f in repo_toy_files()} <= names
    assert {"sliderstudio/presets/__init__.py", "sliderstudio/resources/__init__.py",
            "sliderstudio/config_data/simpletuner/fields.json"} <= names
    assert not [n for n in names if n.endswith(".pyc") or n.startswith(("presets/", "resources/"))]


def test_installed_wheel_finds_every_preset_from_outside_the_repo(wheel, tmp_path):
    python = make_venv(tmp_path / "venv")
    pip_install(python, wheel)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    seen = run_check(python, outside)
    site = Path(seen["package"]).parents[1]
    assert site.is_relative_to(tmp_path / "venv") and not site.is_relative_to(ROOT)
    assert seen["presets"] == repo_presets()
    assert seen["root"] == str(site / "sliderstudio" / "presets")
    assert seen["presets_origin"] == str(site / "sliderstudio" / "presets" / "__init__.py")
    assert seen["toy"] == str(site / "sliderstudio" / "resources" / "toy-model")
    assert seen["toy_files"] == repo_toy_files() and seen["prompts"] > 0


@pytest.mark.slow
def test_installed_wheel_loads_the_toy_model_with_diffusers(wheel, tmp_path):
    """The toy model's folder from the wheel is a real path `from_pretrained` reads (torch and diffusers
    come from the test's own environment, put on the path; sliderstudio comes from the wheel)."""
    python = make_venv(tmp_path / "venv")
    pip_install(python, wheel)
    script = ("import sliderstudio; from sliderstudio.kernel.resources import toy_model_dir\n"
              "from sliderstudio.families.detect import detect_model\n"
              "from diffusers import StableDiffusionPipeline\n"
              "pipe = StableDiffusionPipeline.from_pretrained(toy_model_dir(), local_files_only=True)\n"
              "print(sliderstudio.__file__, detect_model('sliderstudio:toy').family, type(pipe.unet).__name__)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": sysconfig.get_paths()["purelib"],
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    package, family, unet = done.stdout.split()[-3:]
    assert Path(package).is_relative_to(tmp_path / "venv") and family == "sd1x"
    assert unet == "UNet2DConditionModel"


# --- the editable install ------------------------------------------------------------------------
def test_editable_install_maps_both_folders_to_the_checkout(tmp_path):
    """`pip install -e .`: setuptools' editable finder maps sliderstudio.presets / .resources to the
    top-level folders (they are regular packages because the finder maps only those)."""
    src = copy_source(tmp_path / "src")
    build = ("import sys; from setuptools import build_meta; "
             "print(build_meta.build_editable(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", build, str(tmp_path / "out")], cwd=src, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wheel = tmp_path / "out" / done.stdout.split()[-1]
    finder = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("_finder.py"))
    mapping_line = next(line for line in zipfile.ZipFile(wheel).read(finder).decode().splitlines()
                        if line.startswith("MAPPING"))
    for name, folder in (("sliderstudio.presets", "presets"), ("sliderstudio.resources", "resources")):
        assert f"'{name}': '{src / folder}'" in mapping_line
    python = make_venv(tmp_path / "venv")
    pip_install(python, wheel)
    seen = run_check(python, tmp_path)
    assert seen["package"] == str(src / "sliderstudio" / "__init__.py")
    assert seen["presets_origin"] == str(src / "presets" / "__init__.py")  # found by the editable finder
    assert seen["root"] == str(src / "presets") and seen["presets"] == repo_presets()
    assert seen["toy"] == str(src / "resources" / "toy-model") and seen["toy_files"] == repo_toy_files()


# --- the PyInstaller bundle ----------------------------------------------------------------------
def test_bundle_datas_put_every_shipped_file_where_the_wheel_does(wheel, monkeypatch):
    """The spec's datas (bundle_config.datas → shipped_datas) lay presets/, resources/ and config_data/
    out exactly as the wheel does, so the frozen app's importlib.resources finds the same files."""
    monkeypatch.delenv(bundle_config.TOY_MODEL_ENV, raising=False)
    spec = (ROOT / "packaging" / "sliderstudio.spec").read_text(encoding="utf-8")
    assert "datas=cfg.datas()" in spec and "found = shipped_datas()" in Path(bundle_config.__file__).read_text()
    bundled = {f"{dest}/{Path(source).name}" for source, dest in bundle_config.shipped_datas()}
    shipped = ("sliderstudio/presets/", "sliderstudio/resources/", "sliderstudio/config_data/")
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith(shipped)}
    assert bundled == in_wheel
    assert all(Path(source).is_relative_to(ROOT) for source, _ in bundle_config.shipped_datas())


def test_bundle_takes_a_stand_in_toy_model(tmp_path, monkeypatch):
    stand_in = tmp_path / "model"
    (stand_in / "unet").mkdir(parents=True)
    (stand_in / "model_index.json").write_text("{}")
    (stand_in / "unet" / "config.json").write_text("{}")
    monkeypatch.setenv(bundle_config.TOY_MODEL_ENV, str(stand_in))
    toy = [(s, d) for s, d in bundle_config.shipped_datas() if d.startswith(bundle_config.TOY_MODEL_DEST)]
    assert sorted(toy) == [(str(stand_in / "model_index.json"), bundle_config.TOY_MODEL_DEST),
                           (str(stand_in / "unet" / "config.json"), bundle_config.TOY_MODEL_DEST + "/unet")]


@pytest.mark.slow
def test_a_frozen_app_with_the_bundles_datas_finds_every_shipped_file(tmp_path):
    """A small PyInstaller one-folder build of the check script with shipped_datas(), run from outside
    the repository: the frozen import of `sliderstudio.presets` (its __init__.py bundled as data) and
    importlib.resources behave as in the full bundle (`make installer-test` runs that one)."""
    pyinstaller = pytest.importorskip("PyInstaller.__main__")
    entry = tmp_path / "frozencheck.py"
    entry.write_text(CHECK_SCRIPT, encoding="utf-8")
    args = ["--noconfirm", "--onedir", "--distpath", str(tmp_path / "dist"), "--workpath", str(tmp_path / "work"),
            "--specpath", str(tmp_path), "--paths", str(ROOT), "--log-level", "WARN"]
    for source, dest in bundle_config.shipped_datas():
        args += ["--add-data", f"{source}{os.pathsep}{dest}"]
    pyinstaller.run([*args, str(entry)])
    internal = tmp_path / "dist" / "frozencheck" / "_internal"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    done = subprocess.run([str(tmp_path / "dist" / "frozencheck" / "frozencheck")], cwd=outside, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(outside)})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["presets"] == repo_presets() and seen["toy_files"] == repo_toy_files()
    assert seen["presets_origin"] == str(internal / "sliderstudio" / "presets" / "__init__.py")
    assert seen["toy"] == str(internal / "sliderstudio" / "resources" / "toy-model")
