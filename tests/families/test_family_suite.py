"""One suite over the family registry: every registered family gets the same checks on its tiny model.

Per family (ids from `registry.FAMILIES`, expectations from `cases.py`): aliases resolve, the slider
preset selects exactly the expected modules and none of the text path, the other presets' totals,
strength 0 is the base model and per-sample strengths equal separate forwards, training's prediction
drives the pipeline's own sampler (flow families), and the traits that replaced core's family tables.
Family-specific checks run from `extras.py` in the same parametrized way. A family module that is not
registered, or a registered family without expectations, fails here.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

import sliderstudio.families as families_package
from sliderstudio.adapters.targets import resolve_targets, text_path_modules
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import FAMILIES, FAMILY_MODULES, discover, get_family
from sliderstudio.app.selfcheck import attach_random_slider, per_sample_scale_error
from sliderstudio.families.text_path import on_text_path
from tests.families import flow_checks
from tests.families.cases import CASES
from tests.families.extras import EXTRAS, Context
from tests.families.family_checks import check_matches_pipeline_step, check_per_sample_scale, check_slider_targets

IDS = sorted(FAMILIES)
WITH_CASE = [f for f in IDS if f in CASES]


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> Callable[[str, Callable[[Path], Path]], Path]:
    """(name, builder) → a tiny model folder the builder wrote, built once for the whole suite."""
    built: dict[str, Path] = {}

    def model(name: str, build: Callable[[Path], Path]) -> Path:
        if name not in built:
            built[name] = build(tmp_path_factory.mktemp(name) / "model")
        return built[name]
    return model


@pytest.fixture(scope="module")
def tiny(variant) -> Callable[[str], Path]:
    """family id → its tiny model folder (`Family.build_tiny`), built once for the whole suite."""
    return lambda family_id: variant(family_id, FAMILIES[family_id].build_tiny)


@pytest.fixture(scope="module")
def shared_pipes(tiny) -> Callable[[str], Any]:
    """family id → its tiny pipeline, loaded once, for the checks that only read it."""
    loaded: dict[str, Any] = {}

    def pipe(family_id: str) -> Any:
        if family_id not in loaded:
            loaded[family_id] = load_pipeline(FAMILIES[family_id], str(tiny(family_id)))
        return loaded[family_id]
    return pipe


# --- the registry ----------------------------------------------------------------------------------
def declared_family_modules() -> set[str]:
    """Modules of the package that assign FAMILIES at top level (read as source, nothing imported)."""
    found = set()
    for path in Path(families_package.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = [t for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                   for t in (node.targets if isinstance(node, ast.Assign) else [node.target])]
        if any(isinstance(t, ast.Name) and t.id == "FAMILIES" for t in targets) and path.stem != "registry":
            found.add(path.stem)
    return found


def test_every_family_module_is_registered():
    assert declared_family_modules() == set(FAMILY_MODULES)


def test_every_registered_family_has_expectations():
    assert set(FAMILIES) == set(CASES), "write the family's expectations in tests/families/cases.py"


def test_registry_ids_are_unique_and_resolve_to_themselves():
    assert len({f.id for f in FAMILIES.values()}) == len(FAMILIES) == 17
    assert all(get_family(family_id) is family for family_id, family in FAMILIES.items())


THROWAWAY = '''
"""A family module written by the test: an SD 1.x family under another id."""
from dataclasses import replace

from sliderstudio.families.sd import SD1X

THROWAWAY = replace(SD1X, id="throwaway", label="Throwaway", aliases=("throw-away",))
FAMILIES = (THROWAWAY,)
'''


def write_throwaway_package(root: Path) -> Path:
    package = root / "extra_families"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "throwaway.py").write_text(textwrap.dedent(THROWAWAY))
    return root


def test_a_new_family_module_is_registered_by_its_declaration(tmp_path, monkeypatch):
    """`discover` imports the named modules and collects what they declare in FAMILIES."""
    monkeypatch.syspath_prepend(str(write_throwaway_package(tmp_path)))
    found = discover(("throwaway",), "extra_families")
    assert list(found) == ["throwaway"] and found["throwaway"].label == "Throwaway"
    with pytest.raises(ModuleNotFoundError):
        discover(("no_such_family",), "extra_families")


RUN_WITH_THROWAWAY = '''
import sys
import pytest
from sliderstudio.families import registry
registry.FAMILIES.update(registry.discover(("throwaway",), "extra_families"))
sys.exit(pytest.main(["-v", "-p", "no:cacheprovider", "-k", "throwaway or every_registered_family", sys.argv[1]]))
'''


def test_the_suite_picks_up_a_newly_registered_family(tmp_path):
    """With one more family in the registry, each per-family test of this suite runs for it and fails until its
    expectations are written in cases.py (a fresh interpreter: the registry is read when the suite is collected)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(write_throwaway_package(tmp_path)), str(root)])}
    run = subprocess.run([sys.executable, "-c", RUN_WITH_THROWAWAY, str(Path(__file__))], capture_output=True,
                         text=True, env=env, cwd=root, timeout=300)
    for test in ("test_aliases_resolve", "test_slider_preset_targets", "test_slider_mechanics", "test_family_traits"):
        assert f"{test}[throwaway] FAILED" in run.stdout, run.stdout[-3000:]
    assert "test_every_registered_family_has_expectations FAILED" in run.stdout
    assert "no expectations for family 'throwaway'" in run.stdout and run.returncode == 1


# --- the same checks for every family ---------------------------------------------------------------
def case_of(family_id: str):
    if family_id not in CASES:
        pytest.fail(f"no expectations for family '{family_id}' in tests/families/cases.py")
    return CASES[family_id]


@pytest.mark.parametrize("family_id", IDS)
def test_aliases_resolve(family_id):
    case = case_of(family_id)
    assert case.aliases and all(get_family(name) is FAMILIES[family_id] for name in case.aliases)


@pytest.mark.parametrize("family_id", IDS)
def test_slider_preset_targets(family_id, tiny):
    case = case_of(family_id)
    check_slider_targets(FAMILIES[family_id], tiny(family_id), case)


@pytest.mark.parametrize("family_id,preset", [(f, p) for f in WITH_CASE for p in CASES[f].presets])
def test_other_presets(family_id, preset, tiny):
    expected = CASES[family_id].presets[preset]
    report = resolve_targets(FAMILIES[family_id], str(tiny(family_id)), preset, strict=False)
    assert (report.module_names if isinstance(expected, list) else report.total) == expected


@pytest.mark.parametrize("family_id", IDS)
def test_slider_mechanics(family_id, tiny):
    """Strength 0 is the base model and per-sample strengths in one batch equal separate forwards."""
    family, case, model = FAMILIES[family_id], case_of(family_id), tiny(family_id)
    if case.mechanics == "flow":
        pipe, denoiser = flow_checks.pipeline_with_slider(family, model)
        flow_checks.check_zero_is_base_and_signs_oppose(family, pipe, denoiser)
        flow_checks.check_per_sample_scale(family, pipe, denoiser)
    elif case.mechanics == "batched":
        check_per_sample_scale(family, str(model), case.latent_shape)
    else:
        pipe = load_pipeline(family, str(model))
        attach_random_slider(family, pipe)
        error, effect = per_sample_scale_error(family, pipe)
        assert effect > 1e-4 and error < 1e-5


@pytest.mark.parametrize("family_id", [f for f in WITH_CASE if CASES[f].step])
def test_training_prediction_drives_the_pipelines_own_sampler(family_id, tiny):
    """Timestep convention, latent layout and caption encoding agree with the diffusers pipeline."""
    step = CASES[family_id].step
    check_matches_pipeline_step(FAMILIES[family_id], tiny(family_id), step.to_ours, size_context=step.size_context,
                                guidance=step.guidance)


@pytest.mark.parametrize("family_id", IDS)
def test_family_traits(family_id):
    """The traits that replaced core's family tables keep their values; on the published full-size denoiser the
    family's text-path markers flag as many modules as before and exactly what all families' markers flag."""
    from sliderstudio.families.full_size import full_size_skeleton

    family, case = FAMILIES[family_id], case_of(family_id)
    assert (family.comfy_lycoris, family.lycoris_group) == (case.comfy_lycoris, case.lycoris_group)
    names = [n for n, _ in full_size_skeleton(family_id).named_modules() if n]
    union = tuple({m for f in FAMILIES.values() for m in f.text_path_markers})
    ours = text_path_modules(names, family)
    assert len(ours) == case.text_path_full_size
    assert ours == [n for n in names if on_text_path(n, union)]


# --- family-specific checks, in the same parametrized structure ---------------------------------------
@pytest.mark.parametrize("family_id,check", [(f, c) for f in IDS for c in EXTRAS.get(f, ())],
                         ids=lambda value: value if isinstance(value, str) else value.__name__)
def test_family_specific(family_id, check, tiny, shared_pipes, variant, tmp_path, monkeypatch):
    check(Context(FAMILIES[family_id], lambda: tiny(family_id), lambda: shared_pipes(family_id), variant, tmp_path,
                  monkeypatch))


def test_the_mechanics_check_fails_for_a_slider_without_effect(tiny):
    """A slider whose lora_B is zero changes nothing: the flow mechanics check must say so."""
    family = FAMILIES["sd3"]
    pipe, denoiser = flow_checks.pipeline_with_slider(family, tiny("sd3"), b_std=0.0)
    with pytest.raises(AssertionError):
        flow_checks.check_zero_is_base_and_signs_oppose(family, pipe, denoiser)
