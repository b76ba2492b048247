"""The slider sampler: cycle order, probabilities, exhaustion, pairing, determinism, resume."""
from collections import Counter

from sliderstudio.engine.sampler import SamplerBucket, SliderSampler


def bucket(id, role, strength, n, probability=1.0, repeats=0, stems=None):
    return SamplerBucket(id, role, strength, probability, repeats, tuple(stems or [f"{id}{i}" for i in range(n)]))


def test_cycle_is_positive_negative_neutral():
    s = SliderSampler([bucket("p", "positive", 1, 4), bucket("n", "negative", -1, 4),
                       bucket("z", "neutral", 0, 4)], seed=0)
    roles = [mb.role for mb in s.take(12)]
    assert roles == ["positive", "negative", "neutral"] * 4


def test_empty_groups_are_skipped_and_exhausted_buckets_drop_out():
    s = SliderSampler([bucket("p", "positive", 1, 3), bucket("n", "negative", -1, 1)], seed=0)
    epoch = [mb for mb in s.take(s.epoch_length())]
    assert [mb.role for mb in epoch] == ["positive", "negative", "positive", "positive"]
    assert Counter(mb.bucket_id for mb in epoch) == {"p": 3, "n": 1}
    assert all(mb.epoch == 0 for mb in epoch)


def test_every_image_once_per_pass_and_repeats():
    s = SliderSampler([bucket("p", "positive", 1, 5, repeats=1), bucket("n", "negative", -1, 5)], seed=3)
    epoch = s.take(s.epoch_length())
    assert sorted(i for mb in epoch if mb.bucket_id == "p" for i in mb.items) == sorted(list(range(5)) * 2)
    assert sorted(i for mb in epoch if mb.bucket_id == "n" for i in mb.items) == list(range(5))


def test_probabilities_within_a_group():
    big = [bucket("a", "positive", 1, 1000, probability=3.0), bucket("b", "positive", 1, 1000, probability=1.0)]
    first = SliderSampler(big, seed=1).take(400)
    share = sum(mb.bucket_id == "a" for mb in first) / len(first)
    assert 0.68 < share < 0.82  # expected 0.75; 400 draws give a standard error of about 0.022


def test_neutral_strength_alternates_with_signed_magnitudes():
    s = SliderSampler([bucket("p", "positive", 0.5, 6), bucket("n", "negative", -0.5, 6),
                       bucket("z", "neutral", 0, 6)], seed=0)
    neutral = [mb for mb in s.take(18) if mb.role == "neutral"]
    assert [mb.strength for mb in neutral] == [0.5, -0.5] * 3
    assert all(mb.preserve for mb in neutral)


def test_paired_negative_uses_counterparts():
    stems = ["x", "y", "z", "w"]
    s = SliderSampler([bucket("p", "positive", 1, 4, stems=stems), bucket("n", "negative", -1, 4, stems=stems[::-1])],
                      seed=5, batch_size=2, pair_map={"p": "n"})
    batches = s.take(4)
    assert [mb.role for mb in batches] == ["positive", "negative"] * 2
    for pos, neg in zip(batches[::2], batches[1::2]):
        assert neg.paired and neg.stems == pos.stems
        assert [stems[::-1][i] for i in neg.items] == list(pos.stems)


def test_same_seed_same_order_and_resume_mid_stream():
    make = lambda seed: SliderSampler([bucket("p", "positive", 1, 7), bucket("n", "negative", -1, 7),
                                       bucket("z", "neutral", 0, 3)], seed=seed, batch_size=2)
    a, b = make(11).take(40), make(11).take(40)
    assert a == b
    assert make(12).take(40) != a
    assert make(11).take(15, start=25) == a[25:40]
    assert {mb.epoch for mb in a} == {0, 1, 2, 3}
