"""Target presets resolved on meta skeletons: counts per entry, visual path only, zero-match error."""
import pytest

from sliderstudio.kernel.errors import TargetError
from sliderstudio.adapters.targets import on_meta, resolve_targets, text_path_modules
from sliderstudio.families.registry import FAMILIES, get_family


@pytest.mark.parametrize("family_id", ["sd1x", "sd2x", "sdxl"])
def test_slider_preset_matches_only_the_visual_path(tiny_models, family_id):
    report = resolve_targets(get_family(family_id), str(tiny_models[family_id]), "slider")
    counts = {e.pattern: e.count for e in report.entries}
    assert counts["attn1.to_q"] == 4 and counts["conv_in"] == 1 and counts["time_embedding.linear_2"] == 1
    assert "conv_out" not in counts and not any(n == "conv_out" for n in report.module_names)  # not a slider target
    assert report.total == 27
    assert text_path_modules(report.module_names, get_family(family_id)) == []
    assert not any("attn2" in n for n in report.module_names)


def test_reference_preset_reports_entries_that_match_nothing(tiny_models):
    report = resolve_targets(get_family("sd1x"), str(tiny_models["sd1x"]), "reference")
    counts = {e.pattern: e.count for e in report.entries}
    assert counts["to_qkv"] == 0 and counts["attn1.to_qkv"] == 0  # only exist after QKV fusion
    assert report.total == 28


def test_default_preset_includes_cross_attention(tiny_models):
    report = resolve_targets(get_family("sd1x"), str(tiny_models["sd1x"]), "default")
    assert report.total == 32 and any("attn2" in n for n in report.module_names)


def test_zero_match_is_an_error_naming_the_entries(tiny_models):
    with pytest.raises(TargetError) as err:
        resolve_targets(get_family("sd1x"), str(tiny_models["sd1x"]), ["attn3.to_q", "nothing"])
    assert "zero modules" in str(err.value) and "attn3.to_q, nothing" in str(err.value)


def test_module_list_is_unsupported_not_silently_used(tiny_models):
    report = resolve_targets(get_family("sd1x"), str(tiny_models["sd1x"]), ["attn1.to_out"], strict=False)
    assert report.total == 0 and report.entries[0].unsupported == {"ModuleList": 4}
    with pytest.raises(TargetError, match="only module types an adapter cannot wrap"):
        resolve_targets(get_family("sd1x"), str(tiny_models["sd1x"]), ["attn1.to_out"])


def test_skeleton_has_no_weights(tiny_models):
    assert on_meta(get_family("sd1x").skeleton(tiny_models["sd1x"]))


def test_every_family_ships_three_presets():
    for family in FAMILIES.values():
        assert set(family.presets) == {"reference", "slider", "default"} and family.presets["slider"]


def test_aliases():
    assert get_family("SD15").id == "sd1x" and get_family("sd-xl").id == "sdxl"
