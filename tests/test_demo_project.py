"""The demo project writer produces a complete, paired, valid project folder."""

import json
from pathlib import Path

import numpy as np
import pytest

import sliderstudio
from sliderstudio.kernel.resources import toy_model_dir
from sliderstudio.toy.metrics import measure_image
from sliderstudio.toy.demo_project import concept_attribute, write_demo_project
from sliderstudio.toy.world import SHAPE_COLOURS, ShapeSpec, caption
from PIL import Image

CONFIG_KEYS = {
    "model_family", "pretrained_model_name_or_path", "data_backend_config", "output_dir", "model_type",
    "lora_type", "lora_rank", "lora_alpha", "slider_lora_target", "learning_rate", "lr_scheduler",
    "lr_warmup_steps", "max_train_steps", "train_batch_size", "gradient_accumulation_steps",
    "mixed_precision", "seed", "resolution", "validation_steps", "validation_num_inference_steps",
    "validation_guidance", "validation_seed", "user_prompt_library", "checkpointing_steps",
    "slider_pairing", "slider_neutral_mode", "slider_step_mode", "slider_preserve_weight",
}


def _stems(folder, ext):
    return sorted(p.stem for p in folder.glob(f"*.{ext}"))


def test_size_project_files_and_pairs(tmp_path):
    root = write_demo_project(tmp_path / "p", pairs=5, seed=3, max_train_steps=123)
    big, small, neutral = (root / "data" / n for n in ("bigger", "smaller", "neutral"))
    assert _stems(big, "png") == _stems(small, "png") == _stems(big, "txt") == [f"pair_{i:03d}" for i in range(5)]
    assert len(_stems(neutral, "png")) >= 4 and _stems(neutral, "png") == _stems(neutral, "txt")
    for stem in _stems(big, "png"):
        a, b = Image.open(big / f"{stem}.png"), Image.open(small / f"{stem}.png")
        assert a.size == b.size == (64, 64)
        ma, mb = measure_image(a), measure_image(b)
        assert ma.area > 2 * mb.area
        assert ma.shape_colour == mb.shape_colour and ma.background_colour == mb.background_colour
        assert np.hypot(ma.centroid[0] - mb.centroid[0], ma.centroid[1] - mb.centroid[1]) < 0.03
        assert (big / f"{stem}.txt").read_text() == (small / f"{stem}.txt").read_text()
        # the shared caption is the pair's middle's (width 0.54-0.62: the plain class, at its ends "slightly
        # small" / "slightly large"), never either half's ("tiny" / "small", "large" / "huge")
        words = (big / f"{stem}.txt").read_text().split()
        size_words = words[1:next(i for i, w in enumerate(words) if w in SHAPE_COLOURS)]
        assert size_words in ([], ["slightly", "small"], ["slightly", "large"]), words


def test_size_pairs_sit_where_the_world_places_every_shape():
    """World 6 draws every centre from the box the largest shape allows; the demo's pairs do too, so both
    twins share one centre that the world could have drawn for either, whatever their sizes."""
    import random

    from sliderstudio.toy.demo_project import LEVELS, _size_pairs
    from sliderstudio.toy.world import SIZE_MAX, WORLD, WORLDS, centre_range

    assert WORLDS[WORLD].placement == "central"
    rng = random.Random(4)
    for _ in range(40):
        pairs = _size_pairs(rng, LEVELS)
        centres = {(s.cx, s.cy) for pair in pairs for s in pair}
        assert len(centres) == 1
        (cx, cy), kind = centres.pop(), pairs[0][0].kind
        (xlo, xhi), (ylo, yhi) = centre_range(SIZE_MAX, kind)
        assert xlo - 1e-4 <= cx <= xhi + 1e-4 and ylo - 1e-4 <= cy <= yhi + 1e-4, (kind, cx, cy)


def test_a_pair_is_captioned_by_its_middle():
    """The caption names the size half-way in area between the halves (strength 0), not either half."""
    from sliderstudio.toy.demo_project import pair_caption

    small, big = ShapeSpec("circle", "red", "blue", 0.25), ShapeSpec("circle", "red", "blue", 0.75)
    assert caption(small).split()[1] == "tiny" and caption(big).split()[1] == "huge"
    assert pair_caption(big, small) == "a red circle on a blue background"            # middle width 0.559
    assert pair_caption(big.with_(size=0.65), small.with_(size=0.22)) == \
        "a slightly small red circle on a blue background"                           # middle width 0.485
    bright, dark = big.with_(size=0.5, shade=0.8), big.with_(size=0.5, shade=-0.8)   # a brightness pair
    assert pair_caption(bright, dark) == caption(bright) == "a slightly small red circle on a blue background"


def test_config_files(tmp_path):
    root = write_demo_project(tmp_path, pairs=2, seed=3, max_train_steps=123)
    cfg = json.loads((root / "config.json").read_text())
    assert set(cfg) == CONFIG_KEYS
    assert cfg["max_train_steps"] == 123 and cfg["seed"] == 3 and cfg["slider_preserve_weight"] == 1.0
    # 400 steps at 0.0015 by default (docs/TRAINING.md, "World 6"); a validated checkpoint every 100 steps
    # but no more often than halfway, so the demo's 400 steps calibrate once on the way, as its 200 did
    assert cfg["learning_rate"] == 0.0015 and cfg["validation_steps"] == cfg["checkpointing_steps"] == 100
    default = json.loads((write_demo_project(tmp_path / "default", pairs=2) / "config.json").read_text())
    assert default["max_train_steps"] == 400 and default["checkpointing_steps"] == 200
    assert cfg["pretrained_model_name_or_path"] == "sliderstudio:toy" and cfg["resolution"] == 32
    backends = json.loads((root / cfg["data_backend_config"]).read_text())
    # the size concept's intensities m train at 0.6·m^0.7 (docs/TRAINING.md, "World 6")
    assert [(b["id"], b["slider_strength"]) for b in backends] == [
        ("bigger_025", 0.2274), ("smaller_025", -0.2274), ("bigger_050", 0.3693), ("smaller_050", -0.3693),
        ("bigger_075", 0.4906), ("smaller_075", -0.4906), ("bigger", 0.6), ("smaller", -0.6), ("neutral", 0.0)]
    for b in backends:
        assert (root / b["instance_data_dir"]).is_dir()
        assert b["type"] == "local" and b["caption_strategy"] == "textfile"
    library = json.loads((root / cfg["user_prompt_library"]).read_text())
    assert library and all(isinstance(v, str) and v.endswith("background") for v in library.values())


def test_brightness_concept(tmp_path):
    root = write_demo_project(tmp_path, concept="brightness", pairs=3)
    assert concept_attribute("brightness") == "brightness" and concept_attribute("size") == "area"
    strengths = [b["slider_strength"] for b in json.loads((root / "multidatabackend.json").read_text())]
    assert strengths == [0.25, -0.25, 0.5, -0.5, 0.75, -0.75, 1.0, -1.0, 0.0]  # linear, full pair at ±1
    explicit = write_demo_project(tmp_path / "linear", pairs=1, full_strength=1.0, strength_power=1.0)
    assert [b["slider_strength"] for b in json.loads((explicit / "multidatabackend.json").read_text())] == strengths
    for stem in _stems(root / "data" / "brighter", "png"):
        a = measure_image(Image.open(root / "data" / "brighter" / f"{stem}.png"))
        b = measure_image(Image.open(root / "data" / "darker" / f"{stem}.png"))
        assert a.brightness > b.brightness + 0.2
        assert a.area == pytest.approx(b.area, abs=0.01)


def test_deterministic_and_rejects_unknown_concept(tmp_path):
    a = write_demo_project(tmp_path / "a", pairs=2, seed=9)
    b = write_demo_project(tmp_path / "b", pairs=2, seed=9)
    assert (a / "data/bigger/pair_001.png").read_bytes() == (b / "data/bigger/pair_001.png").read_bytes()
    with pytest.raises(ValueError):
        write_demo_project(tmp_path / "c", concept="smell")


def test_toy_model_dir_is_the_checkouts_top_level_resources():
    p = toy_model_dir()
    root = Path(sliderstudio.__file__).resolve().parents[1]
    assert p == root / "resources" / "toy-model" and (p / "model_index.json").is_file()


def _subject_of(caption_text: str) -> tuple[str, str, str]:
    words = caption_text.split()
    colour = next(w for w in words if w in SHAPE_COLOURS)
    return words[words.index(colour) + 1], colour, words[words.index("on") + 2]


@pytest.mark.parametrize("concept", ["size", "brightness"])
def test_no_demo_caption_is_a_held_out_subject(tmp_path, concept):
    """The slider checks' held-out prompts are never training captions, whatever the data seed: seed 0's
    size data once drew "a yellow triangle on a gray background", one of the eight held-out prompts."""
    from sliderstudio.toy.sweep_check import HELD_OUT_PROMPTS
    from sliderstudio.toy.world import EVAL_SUBJECTS, plain_prompt

    assert HELD_OUT_PROMPTS == tuple(plain_prompt(*s) for s in EVAL_SUBJECTS)
    assert "a yellow triangle on a gray background" in HELD_OUT_PROMPTS
    drawn = set()
    for seed in range(12):
        root = write_demo_project(tmp_path / f"{concept}{seed}", concept=concept, pairs=8, seed=seed,
                                  levels=(1.0,))
        captions = [p.read_text() for p in (root / "data").rglob("*.txt")]
        assert len(captions) == 8 * 2 + 8
        drawn |= {_subject_of(c) for c in captions}
    assert not drawn & set(EVAL_SUBJECTS)
    assert len(drawn) > 40  # the rest of the world is still drawn: only the evaluation subjects are kept out


def test_the_size_demo_data_of_seed_0_keeps_its_subjects_apart_from_the_held_out_prompts(tmp_path):
    """Regression: the documented figures train on seed 0's data (docs/TRAINING.md)."""
    from sliderstudio.toy.sweep_check import HELD_OUT_PROMPTS

    root = write_demo_project(tmp_path / "p", seed=0)
    plain = {" ".join(w for w in p.read_text().split() if w not in {"tiny", "small", "slightly", "large", "huge"})
             for p in (root / "data").rglob("*.txt")}
    assert not plain & set(HELD_OUT_PROMPTS)
