"""Every registered family passes the offline selfcheck: targets, training, saving, reloading, preview."""
import json

import pytest

from sliderstudio.families.registry import FAMILIES
from sliderstudio.app.selfcheck import check_family


@pytest.mark.parametrize("family_id", sorted(FAMILIES))
def test_family_selfcheck(family_id, tmp_path):
    result = check_family(FAMILIES[family_id], tmp_path)
    assert result.error is None, result.error
    assert result.targets > 0 and result.train and result.reload and result.preview and result.ok


@pytest.mark.parametrize("family_id", sorted(FAMILIES))
def test_family_selfcheck_with_a_lycoris_slider(family_id, tmp_path):
    result = check_family(FAMILIES[family_id], tmp_path, lycoris="lokr")
    assert result.error is None, result.error
    assert result.train and result.reload and result.preview and result.ok


def test_selfcheck_json_shape(capsys):
    from sliderstudio.cli import main

    assert main(["selfcheck", "--family", "sdxl", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [set(r) for r in rows] == [{"family", "targets", "train", "reload", "preview", "ok", "seconds"}]
    assert rows[0]["family"] == "sdxl" and rows[0]["ok"] is True and rows[0]["targets"] == 27


def test_selfcheck_unknown_family_exits_2(capsys):
    from sliderstudio.cli import main

    assert main(["selfcheck", "--family", "sd9"]) == 2
    assert "unknown model family 'sd9'" in capsys.readouterr().err
