"""One syntax-error wording and one did-you-mean, through every real loader (issue 13, config layer).

config.json, config.toml, the dataloader JSON, a prompt library, a LyCORIS config, the shipped
LyCORIS and target presets: a file that does not parse is a FileSyntaxError naming the file, the
line, the column and what the parser expected. Every refused key or value that has a close spelling
gets the same "; did you mean 'x'?" from kernel/suggest.py, at its one cut-off.
"""
import json
import re

import pytest

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.config import lycoris_config
from sliderstudio.kernel import resources, suggest
from sliderstudio.kernel.config_files import parse_json, parse_toml
from sliderstudio.kernel.errors import ConfigError, FileSyntaxError
from sliderstudio.config.lycoris_config import lycoris_preset, validate_lycoris_config
from sliderstudio.engine.project import load_project
from sliderstudio.families import base as family_base
from sliderstudio.families.registry import get_family

WORDING = re.compile(r"invalid (JSON|TOML) at line (\d+), column (\d+): \S")
BAD_JSON = '{\n  "a": 1,\n  "b": ,\n}'          # line 3, column 8: a value was expected
BAD_LIST = '[\n  {"id": "pos"},\n  {"id": }\n]'   # line 3, column 10


def project(tmp_path, config=None):
    return make_project(tmp_path / "p", "sliderstudio:toy", pairs=1, neutral=0, config=config)


def load_error(root) -> FileSyntaxError:
    with pytest.raises(FileSyntaxError) as err:
        load_project(root)
    return err.value


def test_the_wording_carries_line_column_and_what_was_expected():
    with pytest.raises(FileSyntaxError) as err:
        parse_json(BAD_JSON, "x.json")
    assert str(err.value) == "x.json: invalid JSON at line 3, column 8: Expecting value"
    assert (err.value.line, err.value.column, err.value.file) == (3, 8, "x.json")
    with pytest.raises(FileSyntaxError) as err:
        parse_toml('model_family = "sd3"\nlora_rank = \n', "c.toml")
    assert str(err.value) == "c.toml: invalid TOML at line 2, column 13: Invalid value"
    assert (err.value.line, err.value.column) == (2, 13)
    with pytest.raises(FileSyntaxError) as err:   # tomllib says only "end of document": the last line
        parse_toml('a = [1,\n', "c.toml")
    assert (err.value.line, err.value.column) == (2, 1)
    assert parse_json('{"a": [1, 2]}') == {"a": [1, 2]} and parse_toml("a = 2") == {"a": 2}


def test_config_json_and_toml(tmp_path):
    root = project(tmp_path)
    (root / "config.json").write_text(BAD_JSON)
    err = load_error(root)
    assert err.file == str(root / "config.json") and (err.line, err.column) == (3, 8)
    assert WORDING.search(str(err)).groups() == ("JSON", "3", "8")
    (root / "config.json").unlink()
    (root / "config.toml").write_text('model_family = "sd1x"\nlora_rank = \n')
    err = load_error(root)
    assert err.file == str(root / "config.toml") and WORDING.search(str(err)).groups() == ("TOML", "2", "13")


def test_dataloader_prompt_library_and_lycoris_files(tmp_path):
    root = project(tmp_path, {"user_prompt_library": "prompts.json", "lora_type": "lycoris",
                              "lycoris_config": "lycoris.json"})
    (root / "prompts.json").write_text('{"a": "a cat"}')
    (root / "lycoris.json").write_text('{"algo": "lokr"}')
    assert load_project(root).lycoris.algo == "lokr"
    for name, text, where in (("multidatabackend.json", BAD_LIST, (3, 10)), ("prompts.json", BAD_JSON, (3, 8)),
                              ("lycoris.json", '{"algo": "lokr",}', (1, 17))):
        good = (root / name).read_text()
        (root / name).write_text(text)
        err = load_error(root)
        assert err.file == str(root / name) and (err.line, err.column) == where, name
        assert WORDING.search(str(err)).groups() == ("JSON", *map(str, where)), name
        (root / name).write_text(good)


def test_the_cli_exits_2_with_the_same_message(tmp_path, capsys):
    root = project(tmp_path)
    (root / "multidatabackend.json").write_text(BAD_LIST)
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert str(root / "multidatabackend.json") in err and "invalid JSON at line 3, column 10: Expecting value" in err


def test_shipped_presets_are_read_through_the_same_reader(tmp_path, monkeypatch):
    for kind in ("lycoris", "targets"):
        (tmp_path / kind).mkdir()
    (tmp_path / "lycoris" / "transformer-lokr.json").write_text('{"algo": "lokr"\n "linear_dim": 4}')
    monkeypatch.setattr(resources, "presets_dir", lambda kind: tmp_path / kind)
    with pytest.raises(FileSyntaxError) as err:
        lycoris_preset("transformer", "lokr")
    assert err.value.file == str(tmp_path / "lycoris" / "transformer-lokr.json")
    assert (err.value.line, err.value.column) == (2, 2)
    assert "Expecting ',' delimiter" in str(err.value)
    (tmp_path / "targets" / "sd1x.json").write_text('{"slider": ["attn1"],,}')
    family = get_family("sd1x")
    with pytest.raises(FileSyntaxError) as err:
        type(family).presets.func(family)   # the property's own reader, past its per-instance cache
    assert err.value.file == str(tmp_path / "targets" / "sd1x.json") and WORDING.search(str(err.value))


def test_a_missing_file_is_reported_by_the_key_that_names_it(tmp_path):
    root = project(tmp_path, {"user_prompt_library": "nope.json"})
    with pytest.raises(ConfigError) as err:
        load_project(root)
    assert err.value.key == "user_prompt_library" and err.value.file == str(root / "nope.json")
    assert "file not found (named by the config key 'user_prompt_library')" in str(err.value)


# --- did you mean ----------------------------------------------------------------------------------
def misspellings(tmp_path):
    """(what was refused, how to trigger it through the real loader, the suggestion expected)."""
    def config():
        load_project(project(tmp_path / "c", {"lora_rnak": 4}))

    def dataloader():
        root = project(tmp_path / "d")
        (root / "multidatabackend.json").write_text(json.dumps([{"id": "a", "instance_data_dir": "data/pos",
                                                                 "slider_strenght": 1}]))
        load_project(root)

    def prompt_library():
        root = project(tmp_path / "l", {"user_prompt_library": "prompts.json"})
        (root / "prompts.json").write_text(json.dumps({"cat": {"promt": "a cat"}}))
        load_project(root)

    def lycoris(preset):
        def run():
            root = project(tmp_path / f"y{len(str(preset))}", {"lora_type": "lycoris", "lycoris_config": "l.json"})
            (root / "l.json").write_text(json.dumps(preset))
            load_project(root)
        return run

    def shipped_preset():
        lycoris_preset("sdxl", "lokrr")

    return [(config, "lora_rank"), (dataloader, "slider_strength"), (prompt_library, "prompt"),
            (lycoris({"algo": "lokrr"}), "lokr"), (lycoris({"algo": "lokr", "apply_preset": {"target_modul": []}}),
                                                    "target_module"), (shipped_preset, "lokr")]


def test_every_loader_suggests_through_the_one_helper(tmp_path, monkeypatch):
    cases = misspellings(tmp_path)
    for trigger, suggestion in cases:
        with pytest.raises(ConfigError) as err:
            trigger()
        assert f"; did you mean '{suggestion}'?" in str(err.value), trigger.__name__
    monkeypatch.setattr(suggest, "CUTOFF", 0.99)   # a loader with its own difflib call would still suggest
    for trigger, suggestion in misspellings(tmp_path / "strict"):
        with pytest.raises(ConfigError) as err:
            trigger()
        assert "did you mean" not in str(err.value), trigger.__name__


def test_the_cutoff_is_one_number_for_every_file():
    assert suggest.CUTOFF == 0.6
    assert suggest.did_you_mean("lokrr", ["lokr", "locon"]) == "; did you mean 'lokr'?"
    # 'lycoris' shares 0.55 of its letters with 'lokr': the LyCORIS checker's old 0.5 suggested it
    problems = validate_lycoris_config({"algo": "lycoris"})
    assert problems[0].message == "unsupported algorithm 'lycoris' (supported: lokr, locon, loha, full)"
    assert suggest.did_you_mean("ia3", ["lokr", "locon", "loha", "full"]) == ""
