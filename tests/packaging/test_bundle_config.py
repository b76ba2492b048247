"""Fast checks of the installer build's inputs (no PyInstaller run): what bundle_config keeps and
drops, the toy-model guard, the icon, the .desktop file and install.sh."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import bundle_config  # noqa: E402
import make_icon  # noqa: E402


def test_toy_model_guard_names_the_override(tmp_path, monkeypatch):
    monkeypatch.setenv(bundle_config.TOY_MODEL_ENV, str(tmp_path / "nothing"))
    with pytest.raises(SystemExit, match="SLIDERSTUDIO_TOY_MODEL"):
        bundle_config.toy_model_dir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_index.json").write_text("{}")
    monkeypatch.setenv(bundle_config.TOY_MODEL_ENV, str(tmp_path / "model"))
    assert bundle_config.toy_model_dir() == tmp_path / "model"


def test_submodule_filter_keeps_only_the_named_model_packages():
    accept = bundle_config.submodule_filter("transformers", "models", {"clip", "t5"})
    assert accept("transformers.models.clip.modeling_clip")
    assert accept("transformers.models.t5")
    assert not accept("transformers.models.bert.modeling_bert")
    assert not accept("transformers.models.auto.modeling_auto")
    assert accept("transformers.modeling_utils") and accept("transformers.models")
    assert not accept("transformers.commands.serving")


def test_model_packages_follow_the_families():
    modules = {"diffusers.pipelines.flux.pipeline_flux", "transformers.models.clip.modeling_clip",
               "transformers.models.t5.tokenization_t5", "diffusers.models.autoencoders.autoencoder_kl"}
    assert {"clip", "t5", "auto", "qwen3"} <= bundle_config.transformers_models(modules)
    assert {"flux", "stable_diffusion"} <= bundle_config.diffusers_pipelines(modules)


def test_annotation_modules_reads_unions():
    from pathlib import PurePath

    assert bundle_config._annotation_modules(PurePath | None) == {"pathlib", "builtins"}


def test_strip_lists_drop_test_libraries_cuda_and_headers():
    binaries = [("torch/lib/libtorch_cpu.so", "/x/libtorch_cpu.so", "BINARY"),
                ("torch/lib/libtorchbind_test.so", "/x/libtorchbind_test.so", "BINARY"),
                ("nvidia/cublas/lib/libcublas.so.12", "/x/libcublas.so.12", "BINARY")]
    assert [b[0] for b in bundle_config.strip_binaries(binaries)] == ["torch/lib/libtorch_cpu.so"]
    datas = [("torch/include/ATen/ATen.h", "/x", "DATA"), ("sliderstudio/presets/targets/sd1x.json", "/y", "DATA"),
             ("PySide6/Qt/translations/qt_de.qm", "/z", "DATA"), ("torch/_C/__init__.pyi", "/w", "DATA")]
    datas += [("torch/bin/torch_shm_manager", "/v", "DATA"), ("torch/bin/test_jit", "/v", "DATA"),
              ("torch/test/atest", "/v", "DATA")]
    assert [d[0] for d in bundle_config.strip_datas(datas)] == ["sliderstudio/presets/targets/sd1x.json",
                                                                "torch/bin/torch_shm_manager"]


def test_app_version_matches_the_package():
    from sliderstudio import __version__

    assert bundle_config.app_version() == __version__


def test_pyinstaller_pin_is_exact():
    lines = [ln for ln in (PACKAGING / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines and all("==" in ln for ln in lines)
    assert any(ln.startswith("pyinstaller==") for ln in lines)


def test_icon_draws_and_the_svg_parses(tmp_path):
    image = make_icon.draw(64)
    assert image.size == (64, 64) and image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((32, 32))[3] == 255  # rounded corners
    root = ET.fromstring(make_icon.svg())
    assert root.tag.endswith("svg") and root.get("viewBox") == "0 0 1024 1024"


def test_desktop_file_has_the_required_keys():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(PACKAGING / "linux" / "sliderstudio.desktop")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Name"] == "Slider Studio"
    assert entry["Exec"].startswith("sliderstudio") and entry["Icon"] == "sliderstudio"
    assert entry["Categories"].endswith(";") and entry["Terminal"] == "false"


@pytest.mark.skipif(sys.platform == "win32" or shutil.which("sh") is None, reason="POSIX shell script")
def test_install_sh_installs_and_uninstalls_for_the_user(tmp_path):
    bundle = tmp_path / "Slider Studio bundle"   # a space in the path on purpose
    (bundle / "icons").mkdir(parents=True)
    (bundle / "sliderstudio").write_text("#!/bin/sh\necho fake\n")
    (bundle / "sliderstudio").chmod(0o755)
    shutil.copy2(PACKAGING / "linux" / "sliderstudio.desktop", bundle)
    shutil.copy2(PACKAGING / "linux" / "install.sh", bundle)
    for n in (16, 24, 32, 48, 64, 128, 256, 512):
        (bundle / "icons" / f"sliderstudio-{n}.png").write_bytes(b"png")
    (bundle / "icons" / "sliderstudio.svg").write_text("<svg/>")
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", str(bundle / "install.sh")], env=env, check=True, capture_output=True)
    desktop = (tmp_path / "home/.local/share/applications/sliderstudio.desktop").read_text()
    assert f'Exec="{bundle}/sliderstudio" gui' in desktop
    assert f"Icon={bundle}/icons/sliderstudio-256.png" in desktop
    assert (tmp_path / "home/.local/bin/sliderstudio").resolve() == (bundle / "sliderstudio").resolve()
    subprocess.run(["sh", str(bundle / "install.sh"), "--uninstall"], env=env, check=True, capture_output=True)
    assert not (tmp_path / "home/.local/share/applications/sliderstudio.desktop").exists()
    assert not (tmp_path / "home/.local/bin/sliderstudio").exists()


def test_the_bundle_carries_the_face_crop_cascade():
    """crop_style 'face' reads cv2.data.haarcascades/haarcascade_frontalface_default.xml in the bundle too."""
    pytest.importorskip("PyInstaller")

    import cv2

    entries = bundle_config.face_detector_datas()
    assert [(Path(src).name, dest) for src, dest in entries] == [("haarcascade_frontalface_default.xml", "cv2/data")]
    assert Path(entries[0][0]) == Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
