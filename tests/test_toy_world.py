"""The toy world renderer, captions and tokenizer are deterministic and self-consistent."""

import numpy as np
import pytest
from transformers import CLIPTokenizer

from sliderstudio.toy.vocab import BOS, EOS, MAX_LENGTH, build_tokenizer, world_words
from sliderstudio.toy.world import (
    BACKGROUND_COLOURS, SHAPE_COLOURS, SIZE_MAX, SIZE_MIN, WORLDS, ShapeSpec, caption, centre_range, random_specs,
    render, named_size, shape_rgb, size_word,
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


@pytest.mark.parametrize("world", [2, 4])
def test_random_specs_keep_the_border_clear_and_colours_distinct(world):
    for spec in random_specs(3, 200, world=world):
        assert spec.colour != spec.background
        arr = np.asarray(render(spec, 32)).astype(int)
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        assert (border == BACKGROUND_COLOURS[spec.background]).all()


def test_caption_words_and_size_classes():
    """World 2's five classes and world 4's seven name the same widths by their own words."""
    two = [caption(ShapeSpec("circle", "red", "blue", w), world=2).split()[1:-6] for w in (0.8, 0.25, 0.6, 0.5, 0.7)]
    assert two == [["large"], ["small"], [], ["slightly", "small"], ["slightly", "large"]]
    four = [caption(ShapeSpec("circle", "red", "blue", w), world=4).split()[1:-6]
            for w in (0.25, 0.4, 0.5, 0.6, 0.65, 0.72, 0.8)]
    assert four == [["tiny"], ["small"], ["slightly", "small"], [], ["slightly", "large"], ["large"], ["huge"]]
    assert caption(ShapeSpec("square", "cyan", "gray", 0.6), world=4) == "a cyan square on a gray background"


def test_the_first_world_keeps_its_three_classes():
    """World 1 replays the first toy model's captions (its log's reproduce command says --world 1)."""
    words = [size_word(w, world=1) for w in (0.25, 0.34, 0.35, 0.36, 0.5, 0.64, 0.65, 0.66, 0.8)]
    assert words == ["small", "small", None, None, None, None, None, "large", "large"]
    assert caption(ShapeSpec("circle", "red", "blue", 0.5), world=1) == "a red circle on a blue background"


@pytest.mark.parametrize("world, order", [
    (2, ["small", "slightly small", None, "slightly large", "large"]),
    (4, ["tiny", "small", "slightly small", None, "slightly large", "large", "huge"]),
    (5, ["tiny", "small", "slightly small", None, "slightly large", "large", "huge"]),
])
def test_size_classes_are_ordered_and_equal_in_area(world, order):
    """Classes of equal area: the caption names size in steps an area dial can follow."""
    classes = WORLDS[world].classes
    bounds = np.array([SIZE_MIN] + [upper for _, upper in classes[:-1]] + [SIZE_MAX])
    assert np.allclose(np.diff(bounds ** 2), (SIZE_MAX ** 2 - SIZE_MIN ** 2) / len(order), atol=2e-4)
    words = [size_word(s, world) for s in np.linspace(SIZE_MIN, SIZE_MAX - 1e-6, 61)]
    assert [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]] == order


def test_world_4_draws_centres_independently_of_size():
    """Relative placement (world 2) puts big shapes near the middle in proportion to their size;
    clamped placement (world 4) draws every centre from the smallest shape's box and moves it only
    as far as the border forces, so the centre keeps no more of the size than the frame imposes."""
    def spread(world: int, lo: float, hi: float) -> float:
        xs = [s.cx for s in random_specs(9, 6000, world=world) if lo <= s.size < hi]
        return float(np.std(xs))

    for world in (2, 4, 5):
        for spec in random_specs(9, 400, world=world):
            (xlo, xhi), (ylo, yhi) = centre_range(spec.size, spec.kind)
            assert xlo - 1e-4 <= spec.cx <= xhi + 1e-4 and ylo - 1e-4 <= spec.cy <= yhi + 1e-4
    assert spread(4, 0.45, 0.55) > 1.3 * spread(2, 0.45, 0.55)
    assert spread(4, 0.7, 0.8) > 1.3 * spread(2, 0.7, 0.8)
    # world 5 is world 4's classes with world 2's placement: the same centres as world 2's
    assert [(s.cx, s.cy) for s in random_specs(9, 50, world=5)] == [(s.cx, s.cy) for s in random_specs(9, 50, world=2)]
    # a centre sits on its box's edge exactly as often as a draw from the smallest shape's box
    # falls outside it
    (flo, fhi), _ = centre_range(SIZE_MIN)
    for lo, hi in ((0.45, 0.55), (0.7, 0.8)):
        band = [s for s in random_specs(9, 6000, world=4) if lo <= s.size < hi]
        edge = np.mean([min(abs(s.cx - e) for e in centre_range(s.size, s.kind)[0]) < 1e-3 for s in band])
        outside = np.mean([1 - np.subtract(*centre_range(s.size)[0][::-1]) / (fhi - flo) for s in band])
        assert abs(edge - outside) < 0.04, (lo, edge, outside)
    # the same seed draws the same kinds, colours and sizes in both worlds of equal size sampling
    assert [(s.kind, s.size) for s in random_specs(5, 50, world=4)] == \
        [(s.kind, s.size) for s in random_specs(5, 50, world=2)]


def test_world_6_draws_every_centre_where_the_largest_shape_could_sit():
    """Central placement: one box for every size (the largest shape's), so the centre's spread is the
    same for small and big shapes, every shape of any size fits, and kinds, colours and sizes are
    world 5's for the same seed (only the centres change)."""
    specs = random_specs(9, 6000, world=6)
    for spec in specs:
        (xlo, xhi), (ylo, yhi) = centre_range(SIZE_MAX, spec.kind)
        assert xlo - 1e-4 <= spec.cx <= xhi + 1e-4 and ylo - 1e-4 <= spec.cy <= yhi + 1e-4
        (xlo, xhi), (ylo, yhi) = centre_range(spec.size, spec.kind)
        assert xlo - 1e-4 <= spec.cx <= xhi + 1e-4 and ylo - 1e-4 <= spec.cy <= yhi + 1e-4
    small = [s.cx for s in specs if s.size < 0.4]
    big = [s.cx for s in specs if s.size >= 0.7]
    assert abs(np.mean(small) - 0.5) < 0.005 and abs(np.mean(big) - 0.5) < 0.005
    assert abs(np.std(small) - np.std(big)) < 0.004
    assert abs(np.std(small) - 0.12 / 12 ** 0.5) < 0.003  # uniform over the largest shape's 0.12-wide box
    relative = [s.cx for s in random_specs(9, 6000, world=5) if s.size < 0.4]
    assert np.std(relative) > 4 * np.std(small)  # world 5 spreads small shapes over the frame
    assert [(s.kind, s.colour, s.size) for s in random_specs(5, 50, world=6)] == \
        [(s.kind, s.colour, s.size) for s in random_specs(5, 50, world=5)]


def test_sizes_are_uniform_in_area_now_and_in_width_in_the_first_world():
    area = np.array([s.size for s in random_specs(5, 4000, world=2)]) ** 2
    width = np.array([s.size for s in random_specs(5, 4000, world=1)])
    mid_area, mid_width = (SIZE_MIN ** 2 + SIZE_MAX ** 2) / 2, (SIZE_MIN + SIZE_MAX) / 2
    assert abs(np.median(area) - mid_area) < 0.015 and abs(np.median(width) - mid_width) < 0.015
    assert abs(np.median(area ** 0.5) - mid_width) > 0.05  # uniform in area is not uniform in width
    counts = np.histogram(area, bins=5, range=(SIZE_MIN ** 2, SIZE_MAX ** 2))[0]
    assert np.abs(counts - len(area) / 5).max() < 0.1 * len(area) / 5
    assert [s.kind for s in random_specs(5, 50)] == [s.kind for s in random_specs(5, 50, world=1)]


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


def test_world_3_reads_sizes_with_a_fixed_error_per_spec():
    """World 3's captioner names a size near a class boundary by either neighbour (overlapping
    classes), the same way every time, and never skips a class."""
    specs = random_specs(11, 3000, world=3)
    classes = [w for w, _ in WORLDS[3].classes]
    index = lambda word: classes.index(word)  # noqa: E731
    exact = [index(size_word(s.size, world=3)) for s in specs]
    read = [index(size_word(named_size(s, world=3), world=3)) for s in specs]
    assert [caption(s, world=3) for s in specs[:50]] == [caption(s, world=3) for s in random_specs(11, 50, world=3)]
    off = np.abs(np.subtract(exact, read))
    assert 0.15 < np.mean(off > 0) < 0.4 and off.max() <= 2
    assert np.mean(off == 2) < 0.01
    middle = [abs(e - r) for s, e, r in zip(specs, exact, read) if abs(s.size - 0.58) < 0.01]
    assert middle and max(middle) <= 1
    assert all(named_size(s, world=2) == s.size for s in specs[:20])
