"""The slider sampler (SPEC §3): micro-batches cycle positive → negative → neutral, seeded.

The order is a pure function of (seed, buckets, batch size), so resuming at micro-batch N means
regenerating and skipping N entries: no hidden state to save, and the same seed always gives the
same order. Paired mode (SPEC §2.5) makes the negative slot after a paired positive batch use the
counterpart images; the trainer gives that batch the same noise and timesteps.

Aspect buckets: a micro-batch holds images of one training size only (one latent shape). Each bucket's
shuffled order is cut into batches per size, in order of first appearance, so a bucket whose images
all share a size batches exactly as before, and the order stays a pure function of the seed.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace
from typing import Iterator

from sliderstudio.engine.aspect_buckets import Size
from sliderstudio.engine.buckets import ScannedBucket
from sliderstudio.config.text_pairs import TextPair, active_pairs, negative_id, positive_id

ROLES = ("positive", "negative", "neutral")


@dataclass(frozen=True)
class SamplerBucket:
    id: str
    role: str
    strength: float
    probability: float
    repeats: int
    stems: tuple[str, ...]
    sizes: tuple[Size, ...] = ()  # training size per image; empty: all one size

    def size(self, item: int) -> Size | None:
        return self.sizes[item] if self.sizes else None


@dataclass(frozen=True)
class MicroBatch:
    index: int
    epoch: int
    bucket_id: str
    role: str
    strength: float
    items: tuple[int, ...]  # indices into the bucket's image list
    stems: tuple[str, ...]
    paired: bool = False  # a negative batch that reuses the previous positive batch's noise
    preserve: bool = False  # neutral batch: the target is the base model's own prediction
    size: Size | None = None  # the aspect bucket (width, height) all its images train at
    positions: tuple[int, ...] = ()  # this process's share: the items' places in the global micro-batch
    global_size: int = 0  # items in the global micro-batch (0: not split, `items` is all of it)

    @property
    def share(self) -> float:
        """This process's part of the global micro-batch: its loss weighs this much in the global mean."""
        return len(self.items) / self.global_size if self.global_size else 1.0


def split_for_rank(mb: MicroBatch, rank: int, world: int) -> MicroBatch:
    """This process's contiguous share of a global micro-batch (sizes differ by at most one).

    Why split rather than give each process its own micro-batches: the slider cycle stays global,
    so every process trains the same group at the same step, and the order of data is the same
    for any number of processes (a run resumes on another process count unchanged). A process
    whose share is empty (a batch smaller than the process count) sits that micro-batch out.
    """
    if world <= 1:
        return mb
    total = len(mb.items)
    base, extra = divmod(total, world)
    start = rank * base + min(rank, extra)
    stop = start + base + (1 if rank < extra else 0)
    return replace(mb, items=mb.items[start:stop], stems=mb.stems[start:stop],
                   positions=tuple(range(start, stop)), global_size=total)


def sampler_buckets(scanned: list[ScannedBucket], neutral_mode: str = "preserve") -> list[SamplerBucket]:
    """Buckets that take part: non-empty, probability > 0, neutral only when preserving."""
    out = []
    for s in scanned:
        b = s.bucket
        if s.count == 0 or b.probability <= 0:
            continue
        if b.role == "neutral" and neutral_mode == "off":
            continue
        out.append(SamplerBucket(b.id, b.role, b.slider_strength, b.probability, b.repeats, tuple(s.stems),
                                 tuple(s.targets)))
    return out


def batches_by_size(order: list[int], bucket: SamplerBucket, batch_size: int) -> list[tuple[int, ...]]:
    """Cut a shuffled order into batches whose images share one size; partial batches come last,
    in order of their size's first appearance."""
    open_batches: dict[Size | None, list[int]] = {}
    out: list[tuple[int, ...]] = []
    for item in order:
        batch = open_batches.setdefault(bucket.size(item), [])
        batch.append(item)
        if len(batch) == batch_size:
            out.append(tuple(batch))
            batch.clear()
    out += [tuple(batch) for batch in open_batches.values() if batch]
    return out


class SliderSampler:
    def __init__(self, buckets: list[SamplerBucket], seed: int, batch_size: int = 1,
                 pair_map: dict[str, str] | None = None):
        self.buckets = {b.id: b for b in buckets}
        self.seed = seed
        self.batch_size = batch_size
        self.pair_map = {p: n for p, n in (pair_map or {}).items() if p in self.buckets and n in self.buckets}
        self._slaved = set(self.pair_map.values())
        self.magnitudes = sorted({abs(b.strength) for b in buckets if b.role != "neutral"}) or [1.0]

    @property
    def paired(self) -> bool:
        return bool(self.pair_map)

    def _queues(self, rng: random.Random) -> dict[str, list[tuple[int, ...]]]:
        queues = {}
        for b in self.buckets.values():
            if b.id in self._slaved:
                continue
            order: list[int] = []
            for _ in range(b.repeats + 1):
                idx = list(range(len(b.stems)))
                rng.shuffle(idx)
                order += idx
            queues[b.id] = batches_by_size(order, b, self.batch_size)
        return queues

    def _epoch(self, epoch: int, start_index: int, neutral_count: list[int]) -> Iterator[MicroBatch]:
        rng = random.Random(f"{self.seed}:{epoch}")
        queues = self._queues(rng)
        pending: tuple[str, tuple[int, ...]] | None = None
        index = start_index
        for role in itertools.cycle(ROLES):
            if not any(queues.values()) and pending is None:
                return
            if role == "negative" and pending is not None:
                neg_id, pos_items = pending
                pending = None
                yield self._paired_negative(index, epoch, neg_id, pos_items)
                index += 1
                continue
            candidates = [b for b in self.buckets.values() if b.role == role and queues.get(b.id)]
            if not candidates:
                continue
            bucket = rng.choices(candidates, weights=[b.probability for b in candidates])[0]
            items = queues[bucket.id].pop(0)
            strength, preserve = bucket.strength, False
            if role == "neutral":
                sign = 1.0 if neutral_count[0] % 2 == 0 else -1.0
                strength, preserve = sign * rng.choice(self.magnitudes), True
                neutral_count[0] += 1
            if bucket.id in self.pair_map:
                pending = (self.pair_map[bucket.id], items)
            yield MicroBatch(index, epoch, bucket.id, role, strength, items,
                             tuple(bucket.stems[i] for i in items), preserve=preserve, size=bucket.size(items[0]))
            index += 1

    def _paired_negative(self, index: int, epoch: int, neg_id: str, pos_items: tuple[int, ...]) -> MicroBatch:
        """The counterpart images of the positive batch, matched by file stem."""
        pos_id = next(p for p, n in self.pair_map.items() if n == neg_id)
        stems = tuple(self.buckets[pos_id].stems[i] for i in pos_items)
        neg = self.buckets[neg_id]
        lookup = {s: i for i, s in enumerate(neg.stems)}
        items = tuple(lookup[s] for s in stems)
        return MicroBatch(index, epoch, neg_id, "negative", neg.strength, items, stems, paired=True,
                          size=neg.size(items[0]))

    def __iter__(self) -> Iterator[MicroBatch]:
        return self.iter_from(0)

    def iter_from(self, start: int) -> Iterator[MicroBatch]:
        """Micro-batches from position `start` on, over as many epochs as asked for."""
        neutral_count = [0]
        index = 0
        for epoch in itertools.count():
            produced = 0
            for mb in self._epoch(epoch, index, neutral_count):
                produced += 1
                if mb.index >= start:
                    yield mb
            if produced == 0:
                return
            index += produced

    def groups_from(self, start: int, size: int) -> Iterator[list[MicroBatch]]:
        """Micro-batches from `start` in groups that share an optimizer step (`slider_step_mode: cycle`).

        A group opens at a positive micro-batch and takes what follows (its paired negative, a
        neutral) up to `size`, so each step holds one whole cycle even where a short bucket runs out
        at an epoch's end; a group always starts at a positive when one follows, so a resume from a
        group boundary regroups exactly as the uninterrupted run.
        """
        stream = self.iter_from(start)
        pending = next(stream, None)
        while pending is not None:
            group = [pending]
            pending = next(stream, None)
            while pending is not None and len(group) < size and pending.role != "positive":
                group.append(pending)
                pending = next(stream, None)
            yield group

    def cycle_length(self) -> int:
        """Micro-batches in one positive → negative → neutral cycle: the roles that have a bucket."""
        return max(1, len({b.role for b in self.buckets.values()}))

    def epoch_length(self) -> int:
        return sum(1 for _ in self._epoch(0, 0, [0]))

    def take(self, n: int, start: int = 0) -> list[MicroBatch]:
        return list(itertools.islice(self.iter_from(start), n))


def text_sampler_entries(pairs: list[TextPair]) -> tuple[list[SamplerBucket], dict[str, str]]:
    """Sampler entries of the active pairs and their pair map (+ entry → − entry)."""
    entries: list[SamplerBucket] = []
    pair_map: dict[str, str] = {}
    for name, pair in active_pairs(pairs).items():
        stems = tuple(f"render{k:03d}" for k in range(pair.samples))
        entries.append(SamplerBucket(positive_id(name), "positive", pair.strength, pair.probability, 0, stems))
        entries.append(SamplerBucket(negative_id(name), "negative", -pair.strength, pair.probability, 0, stems))
        pair_map[positive_id(name)] = negative_id(name)
    return entries, pair_map
