"""sliderstudio/kernel/resources.py: the one way to the shipped presets, the toy model and config_data."""
from __future__ import annotations

import importlib.machinery
import json
import sys
import zipfile
from importlib import resources as importlib_resources
from pathlib import Path

import pytest

import sliderstudio
from sliderstudio.kernel import resources
from sliderstudio.kernel.errors import ResourceMissingError

ROOT = Path(sliderstudio.__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fresh_lookup():
    """shipped_root is cached per process; each test decides where things are from scratch."""
    resources.shipped_root.cache_clear()
    yield
    resources.shipped_root.cache_clear()


@pytest.mark.parametrize("kind", resources.PRESET_KINDS)
def test_every_preset_on_disk_is_listed_and_parses(kind):
    on_disk = sorted(p.stem for p in (ROOT / "presets" / kind).glob("*.json"))
    assert len(on_disk) >= 16 and resources.preset_names(kind) == on_disk
    for name in on_disk:
        assert resources.read_preset(kind, name) == json.loads((ROOT / "presets" / kind / f"{name}.json").read_text())
        assert resources.has_preset(kind, name)


def test_a_missing_preset_names_its_file_and_exits_2():
    assert not resources.has_preset("targets", "no_such_family")
    with pytest.raises(ResourceMissingError) as caught:
        resources.read_preset("targets", "no_such_family")
    err = caught.value
    assert err.exit_code == 2 and err.key == "targets" and err.value == "no_such_family"
    assert err.file == str(ROOT / "presets" / "targets" / "no_such_family.json")
    with pytest.raises(ValueError, match="not a preset kind: 'target'"):
        resources.preset_names("target")


def test_the_checkout_reads_its_own_top_level_folders():
    assert resources.shipped_root("presets") == ROOT / "presets"
    toy = resources.toy_model_dir()
    assert toy == ROOT / "resources" / "toy-model" and (toy / "model_index.json").is_file()
    library = json.loads(resources.read_config_data("builtin_prompt_library.json"))
    assert library == json.loads((ROOT / "sliderstudio/config_data/builtin_prompt_library.json").read_text())
    assert not (ROOT / "sliderstudio" / "presets").exists()  # moved, not copied


def test_another_checkouts_mapping_is_not_used(monkeypatch, tmp_path):
    """A venv holding the editable install of another checkout maps `sliderstudio.presets` there; this
    checkout's own folder must win (else a worktree's tests read main's presets)."""
    other = tmp_path / "other-checkout" / "presets"
    other.mkdir(parents=True)
    seen = []

    def foreign_spec(name, *args):
        seen.append(name)
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(other)]
        return spec

    monkeypatch.setattr(resources.importlib.util, "find_spec", foreign_spec)
    assert resources.shipped_root("presets") == ROOT / "presets"
    assert seen == ["sliderstudio.presets"]


def test_no_mapping_and_no_checkout_is_a_named_error(monkeypatch, tmp_path):
    def missing(name, *args):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(resources.importlib.util, "find_spec", missing)
    monkeypatch.setattr(resources, "package_dir", lambda: tmp_path / "site-packages" / "sliderstudio")
    with pytest.raises(ResourceMissingError, match="'sliderstudio.resources' is missing") as caught:
        resources.toy_model_dir()
    assert caught.value.file == str(tmp_path / "site-packages" / "sliderstudio" / "resources")


def test_real_path_extracts_a_file_from_a_zipped_package(tmp_path, monkeypatch):
    """A zipped install has no paths: as_file extracts, and the copy outlives the call."""
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped_pkg_w13/__init__.py", "")
        zf.writestr("zipped_pkg_w13/data/model.json", '{"ok": 1}')
    monkeypatch.syspath_prepend(str(archive))
    try:
        item = importlib_resources.files("zipped_pkg_w13") / "data" / "model.json"
        assert not isinstance(item, Path)
        path = resources.real_path(item)
        assert isinstance(path, Path) and path.is_file() and json.loads(path.read_text()) == {"ok": 1}
        assert not path.is_relative_to(archive)
    finally:
        sys.modules.pop("zipped_pkg_w13", None)
    real = ROOT / "presets" / "targets" / "sd1x.json"
    assert resources.real_path(real) is real
