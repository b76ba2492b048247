"""schema_version of the project config (config/config_migrations.py): old files read in today's form,
steps applied in order, the file rewritten only on save, a newer file refused with exit status 2."""
import json

import pytest

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.config import config_migrations
from sliderstudio.config.config import parse_train_config_report
from sliderstudio.config.config_migrations import CONFIG_SCHEMA_VERSION, migrate_config
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.engine.project import load_project, save_project


def _v1_to_v2(data: dict) -> dict:
    """A version-2 schema that renamed `rank` to lora_rank."""
    if "rank" in data:
        data["lora_rank"] = data.pop("rank")
    return data


def _v2_to_v3(data: dict) -> dict:
    """A version-3 schema that counts lora_alpha in halves of the rank; it needs lora_rank, so it must run after
    _v1_to_v2."""
    data["lora_alpha"] = data["lora_rank"] / 2
    return data


STEPS = {1: _v1_to_v2, 2: _v2_to_v3}


def project(tmp_path, config):
    return make_project(tmp_path / "p", "sliderstudio:toy", pairs=1, neutral=0, config=config)


def test_a_file_without_schema_version_is_today_s_version_1(tmp_path):
    assert CONFIG_SCHEMA_VERSION == config_migrations.current_version() == 1   # no schema change so far
    root = project(tmp_path, {})
    before = (root / "config.json").read_bytes()
    loaded = load_project(root)
    assert loaded.config.schema_version == 1 and not any("schema_version" in w for w in loaded.warnings)
    assert (root / "config.json").read_bytes() == before
    save_project(loaded)
    assert json.loads((root / "config.json").read_text())["schema_version"] == 1   # always written from now on


def test_an_old_file_is_migrated_in_order_and_rewritten_only_on_save(tmp_path, monkeypatch):
    monkeypatch.setattr(config_migrations, "MIGRATIONS", STEPS)
    root = project(tmp_path, {"schema_version": 1, "rank": 8})
    data = json.loads((root / "config.json").read_text())   # a version-1 file: `rank`, no lora_rank
    data.pop("lora_rank")
    (root / "config.json").write_text(json.dumps(data))
    before = (root / "config.json").read_bytes()
    loaded = load_project(root)
    assert (loaded.config.lora_rank, loaded.config.lora_alpha, loaded.config.schema_version) == (8, 4.0, 3)
    assert any("schema_version" in w and "version 1 file, read as version 3" in w for w in loaded.warnings)
    assert (root / "config.json").read_bytes() == before            # reading never writes
    save_project(loaded)
    saved = json.loads((root / "config.json").read_text())
    assert saved["schema_version"] == 3 and saved["lora_rank"] == 8 and "rank" not in saved
    again = load_project(root)
    assert again.config.lora_alpha == 4.0 and not any("schema_version" in w for w in again.warnings)


def test_only_the_steps_past_the_file_s_version_run():
    ran = []
    steps = {1: lambda d: ran.append(1) or d, 2: lambda d: ran.append(2) or d, 3: lambda d: ran.append(3) or d}
    data = {"schema_version": 2, "lora_rank": 4}
    out, notes = migrate_config(data, "c.json", steps)
    assert ran == [2, 3] and out["schema_version"] == 4 and data["schema_version"] == 2   # the input is untouched
    assert [(n.kind, n.key, n.value) for n in notes] == [("changed", "schema_version", 2)]
    ran.clear()
    assert migrate_config({"--schema_version": "4"}, "c.json", steps) == ({"schema_version": 4}, []) and ran == []


def test_a_newer_file_exits_2_naming_the_file_and_both_versions(tmp_path, capsys):
    root = project(tmp_path, {"schema_version": 7})
    before = (root / "config.json").read_bytes()
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert str(root / "config.json") in err and "key 'schema_version'" in err
    assert "config schema version 7; this version reads up to 1" in err
    assert (root / "config.json").read_bytes() == before


@pytest.mark.parametrize("bad", ["two", 0, True, 1.5])
def test_a_bad_schema_version_names_the_key(bad):
    with pytest.raises(ConfigError) as err:
        parse_train_config_report({"schema_version": bad}, "c.json")
    assert err.value.key == "schema_version" and err.value.value == bad and err.value.file == "c.json"
    assert "expected a whole number ≥ 1" in str(err.value)
