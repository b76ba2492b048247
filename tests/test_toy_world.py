"""The toy world renderer, captions and tokenizer are deterministic and self-consistent."""

import numpy as np
import pytest
from transformers import CLIPTokenizer

from sliderstudio.toy.vocab import BOS, EOS, MAX_LENGTH, build_tokenizer, world_words
from sliderstudio.toy.world import (
    BACKGROUND_COLOURS, SHAPE_COLOURS, ShapeSpec, caption, random_specs, render, shape_rgb,
)


def test_same_seed_same_specs_and_pixels():
    a, b = random_specs(7, 20), random_specs(7, 20)
    assert a == b
    assert random_specs(8, 20) != a
    assert all(np.array_equal(np.asarray(render(x, 32)), np.asarray(render(y, 32))) for x, y in zip(a, b))


def test_render_size_and_colours():
    spec = ShapeSpec("square", "red", "white", 0.5)
    arr = np.asarray(render(spec, 64))
    assert arr.shape == (64, 64, 3)
    assert tuple(arr[32, 32]) == SHAPE_COLOURS["red"]
    assert tuple(arr[0, 0]) == BACKGROUND_COLOURS["white"]


def test_random_specs_keep_the_border_clear_and_colours_distinct():
    for spec in random_specs(3, 200):
        assert spec.colour != spec.background
        arr = np.asarray(render(spec, 32)).astype(int)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        assert (border == BACKGROUND_COLOURS[spec.background]).all()


def test_caption_words_and_size_extremes():
    assert caption(ShapeSpec("circle", "red", "blue", 0.8)) == "a large red circle on a blue background"
    assert caption(ShapeSpec("triangle", "green", "black", 0.25)) == "a small green triangle on a black background"
    assert caption(ShapeSpec("square", "cyan", "gray", 0.5)) == "a cyan square on a gray background"


def test_shade_moves_colour_towards_white_or_black():
    base = ShapeSpec("circle", "blue", "gray", 0.5)
    bright, dark = shape_rgb(base.with_(shade=1.0)), shape_rgb(base.with_(shade=-1.0))
    assert sum(bright) > sum(SHAPE_COLOURS["blue"]) > sum(dark)


def test_invalid_spec_is_rejected():
    with pytest.raises(ValueError):
        ShapeSpec("hexagon", "red", "white", 0.5)
    with pytest.raises(ValueError):
        ShapeSpec("circle", "red", "white", 1.5)


def test_every_word_is_one_token():
    tok = build_tokenizer()
    ids = {w: tok(w).input_ids for w in world_words()}
    assert all(len(v) == 3 for v in ids.values()), ids
    singles = {v[1] for v in ids.values()}
    assert len(singles) == len(world_words())  # no two words share a token
    assert tok.convert_ids_to_tokens(tok("a red circle").input_ids) == [BOS, "a</w>", "red</w>", "circle</w>", EOS]


def test_tokenizer_round_trip(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(str(tmp_path))
    again = CLIPTokenizer.from_pretrained(str(tmp_path))
    assert again.model_max_length == MAX_LENGTH
    for spec in random_specs(1, 30):
        text = caption(spec)
        a = tok(text, padding="max_length", max_length=MAX_LENGTH).input_ids
        assert a == again(text, padding="max_length", max_length=MAX_LENGTH).input_ids
        assert len(a) == MAX_LENGTH and a[0] == tok.bos_token_id
        assert len(text.split()) + 2 <= MAX_LENGTH
        assert tok.unk_token_id not in a[1:len(text.split()) + 1]
