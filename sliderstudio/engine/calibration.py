"""Calibrated strength: the measured response to the dial, the recommended range and the polarity.

Why: "strength 1" means nothing by itself. One slider saturates at 0.8, another turns images to
noise at -1.5, a third was trained the wrong way round. After training (and at each checkpoint)
the trainer renders the validation prompts over a sweep that goes beyond +-1, measures each render
(`response_measures` for any model, a registered `attribute_meters` meter where the model's world
has one, e.g. the toy world's attributes), and keeps:

- the *response curve*: per strength, the mean response, the distance to strength 0, how many
  renders broke down;
- the *recommended range*: from 0 outwards on each side, the strengths where the response still
  moves the same way by at least MIN_GAIN of its average slope inside [-1, 1] and no render broke;
- the *polarity*: does +1 add what the positive buckets show ("positive"), the opposite
  ("reversed"), or is it unclear.

These go into the adapter's metadata (`sliderstudio.recommended_range`, `sliderstudio.polarity`,
`sliderstudio.calibration`); `recommended_range(path)` reads them back for the preview's dials.
Other tools ignore the keys, and an adapter without them loads everywhere as before.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from sliderstudio.engine.response_measures import (
    breakdown_reason, image_stats, latent_distance, pixel_distance,
)
from sliderstudio.engine.attribute_meters import AttributeMeter
from sliderstudio.engine.sweep_stats import spearman

#: A step counts as a response when it moves at least this fraction of the average slope in [-1, 1].
MIN_GAIN = 0.15
#: Relative loss margin below which the polarity is called "unclear".
POLARITY_MARGIN = 1e-3
#: The metadata keys (written with the `sliderstudio.` prefix by adapter_io).
RANGE_KEY, POLARITY_KEY, CALIBRATION_KEY = "recommended_range", "polarity", "calibration"

RenderFn = Callable[[str, int, list[float]], list[Any]]


@dataclass
class Sweep:
    """One prompt and seed rendered at every strength (same noise), with the decoded latents if caught."""

    prompt: str
    seed: int
    strengths: list[float]
    images: list[Any]
    latents: list[np.ndarray] | None = None


@dataclass
class CurvePoint:
    """The response at one strength, averaged over the sweeps."""

    strength: float
    response: float  # the measure, oriented so that it rises with the slider's own direction
    pixel: float  # mean RMS pixel distance to the strength-0 render
    latent: float | None  # mean relative latent distance, when the latents were caught
    broken: int  # renders that broke down (toy world: collapsed) at this strength
    reasons: list[str] = field(default_factory=list)
    attribute: float | None = None  # toy world: the mean attribute value (not oriented)


@dataclass
class Calibration:
    measure: str  # "attribute:area", "latent distance" or "pixel distance"
    curve: list[CurvePoint]
    recommended: tuple[float, float]
    saturates: dict[str, float | None]  # first strength past the range where the response stalls, per side
    breaks: dict[str, float | None]  # first strength past the range where a render broke, per side
    polarity: str  # positive | reversed | unclear | unknown
    evidence: dict[str, Any]
    prompts: list[str]
    seeds: list[int]
    sweeps: list[dict[str, Any]]
    images: int = 0
    seconds: float = 0.0
    step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recommended"] = list(self.recommended)
        return d


# ----------------------------------------------------------------------------------- rendering

def sweep_strengths(strengths: Sequence[float]) -> list[float]:
    """Sorted, unique, and always with 0 (the reference every distance is taken from)."""
    return sorted({float(s) for s in strengths} | {0.0})


@contextmanager
def capture_latents(pipe: Any) -> Iterator[list[np.ndarray]]:
    """Record what the pipeline hands its VAE to decode: the final latents, at no extra cost.

    Pipelines without a `vae.decode` (or wrapped ones) record nothing; the caller then falls back
    to pixel distances.
    """
    vae = getattr(pipe, "vae", None)
    decode = getattr(vae, "decode", None)
    record: list[np.ndarray] = []
    if decode is None:
        yield record
        return
    own = "decode" in vars(vae)

    def recording(latents, *args, **kwargs):
        record.append(latents.detach().float().cpu().numpy())
        return decode(latents, *args, **kwargs)

    vae.decode = recording
    try:
        yield record
    finally:
        if own:
            vae.decode = decode
        else:
            del vae.decode


def split_latents(record: list[np.ndarray], count: int) -> list[np.ndarray] | None:
    """One latent per image when the decode calls add up to exactly `count`, else None."""
    if not record:
        return None
    stacked = np.concatenate(record, axis=0)
    return list(stacked) if stacked.shape[0] == count else None


def render_sweeps(render: RenderFn, prompts: Sequence[str], seeds: Sequence[int], strengths: Sequence[float],
                  pipe: Any = None, batch: int = 0) -> list[Sweep]:
    """Render every prompt x seed over `strengths`, catching the latents from `pipe`.

    `batch` > 0 renders at most that many strengths per call: every image of a call starts from
    the same seeded noise (Family.render), so the split changes no pixel, only the peak memory.
    """
    strengths = sweep_strengths(strengths)
    size = batch if batch > 0 else len(strengths)
    sweeps = []
    for prompt in prompts:
        for seed in seeds:
            images: list[Any] = []
            with capture_latents(pipe) as record:
                for i in range(0, len(strengths), size):
                    images += list(render(prompt, seed, strengths[i:i + size]))
            sweeps.append(Sweep(prompt, seed, list(strengths), images, split_latents(record, len(images))))
    return sweeps


# ----------------------------------------------------------------------------------- measuring

def choose_attribute(meter: AttributeMeter, sweeps: Sequence[Sweep], measures: list[list[Any]]) -> str:
    """The meter's attribute the slider moves most monotonically inside [-1, 1] (ties: the larger move)."""
    def score(attribute: str) -> tuple[float, float]:
        rhos, moves = [], []
        for sw, ms in zip(sweeps, measures):
            inner = [i for i, s in enumerate(sw.strengths) if abs(s) <= 1.0]
            vals = [meter.value(ms[i], attribute) for i in inner]
            rhos.append(abs(spearman([sw.strengths[i] for i in inner], vals)))
            scale = 360.0 if attribute == "hue" else 1.0
            moves.append(abs(vals[-1] - vals[0]) / scale)
        return float(np.mean(rhos)), float(np.mean(moves))

    return max(meter.attributes, key=score)


def _distances(sweep: Sweep, zero: int) -> tuple[list[float], list[float] | None]:
    pix = [pixel_distance(im, sweep.images[zero]) for im in sweep.images]
    lat = None if sweep.latents is None else [latent_distance(z, sweep.latents[zero]) for z in sweep.latents]
    return pix, lat


def _breakdowns(sweep: Sweep, zero: int, measures: list[Any] | None) -> list[str | None]:
    """Per render: why it broke down, or None. Toy world: the collapse detector; else image statistics."""
    if measures is not None:
        return [m.collapsed for m in measures]
    stats = [image_stats(im) for im in sweep.images]
    return [breakdown_reason(st, stats[zero]) for st in stats]


def measure(sweeps: Sequence[Sweep], meter: AttributeMeter | None = None, expected: dict[str, float] | None = None,
            loss_evidence: dict[str, Any] | None = None) -> Calibration:
    """The calibration of one slider from its sweeps (all over the same strengths, 0 included).

    `meter`: measure the world's attributes (and collapse) instead of distances alone (toy world).
    `expected`: with a meter, attribute -> how much it rises from the negative to the positive bucket
    images (`bucket_direction`), which says what "+1 adds the concept" means in pixels.
    `loss_evidence`: the denoising-loss polarity test (`polarity.loss_polarity`), for any model.
    """
    if not sweeps:
        raise ValueError("no sweeps to calibrate on")
    strengths = sweeps[0].strengths
    if any(sw.strengths != strengths for sw in sweeps) or 0.0 not in strengths:
        raise ValueError("every sweep needs the same strengths, 0 included")
    zero = strengths.index(0.0)
    measures = [[meter.measure(im) for im in sw.images] for sw in sweeps] if meter else None
    distances = [_distances(sw, zero) for sw in sweeps]
    broken = [_breakdowns(sw, zero, measures[k] if measures else None) for k, sw in enumerate(sweeps)]
    use_latent = all(lat is not None for _, lat in distances)
    attribute = choose_attribute(meter, sweeps, measures) if meter and measures else None
    if attribute:
        raw = np.array([[meter.value(m, attribute) for m in ms] for ms in measures])
        if attribute == "hue":
            raw = np.degrees(np.unwrap(np.radians(raw), axis=1))
        name = f"attribute:{attribute}"
    else:
        raw = np.array([lat if use_latent else pix for pix, lat in distances]) * np.sign(strengths)
        name = "latent distance" if use_latent else "pixel distance"
    direction = _direction(strengths, raw)
    responses = raw * (direction or 1.0)
    bad = np.array([[r is not None for r in row] for row in broken])
    lo, hi, saturates, breaks = find_range(strengths, responses, bad)
    polarity, evidence = decide_polarity(attribute, direction, expected, loss_evidence)
    curve = [CurvePoint(
        strength=s, response=float(responses[:, i].mean()),
        pixel=float(np.mean([pix[i] for pix, _ in distances])),
        latent=float(np.mean([lat[i] for _, lat in distances])) if use_latent else None,
        broken=int(bad[:, i].sum()), reasons=sorted({row[i] for row in broken if row[i]}),
        attribute=float(raw[:, i].mean()) if attribute else None) for i, s in enumerate(strengths)]
    per_sweep = [{"prompt": sw.prompt, "seed": sw.seed, "response": [float(v) for v in responses[k]],
                  "broken": [r for r in broken[k]]} for k, sw in enumerate(sweeps)]
    return Calibration(name, curve, (lo, hi), saturates, breaks, polarity, evidence,
                       sorted({sw.prompt for sw in sweeps}, key=[sw.prompt for sw in sweeps].index),
                       sorted({sw.seed for sw in sweeps}), per_sweep, images=sum(len(sw.images) for sw in sweeps))


def _direction(strengths: list[float], raw: np.ndarray) -> float:
    """+1 when the measure rises from -1 to +1 (the slider's own direction), -1 when it falls, 0 if flat."""
    inner = [i for i, s in enumerate(strengths) if abs(s) <= 1.0]
    move = float((raw[:, inner[-1]] - raw[:, inner[0]]).mean())
    return float(np.sign(move))


def find_range(strengths: Sequence[float], responses: np.ndarray,
               broken: np.ndarray) -> tuple[float, float, dict[str, float | None], dict[str, float | None]]:
    """(lo, hi, saturates, breaks): the widest range around 0 where the response rises and nothing broke.

    `responses[k, i]` is sweep k at strengths[i], oriented to rise with the strength. Walking out
    from 0 on each side, a strength joins the range when no render broke there, no sweep's step goes
    the wrong way, and on average they go the right way by at least MIN_GAIN x the mean slope inside
    [-1, 1].
    A slider with no measurable slope gets the range (0, 0).
    """
    s = np.asarray(strengths, float)
    zero = int(np.where(s == 0.0)[0][0])
    inner = np.where(np.abs(s) <= 1.0)[0]
    span = s[inner[-1]] - s[inner[0]]
    slope = float((responses[:, inner[-1]] - responses[:, inner[0]]).mean() / span) if span > 0 else 0.0
    ends: dict[str, float] = {}
    saturates: dict[str, float | None] = {"negative": None, "positive": None}
    breaks: dict[str, float | None] = {"negative": None, "positive": None}
    for side, order in (("positive", range(zero + 1, len(s))), ("negative", range(zero - 1, -1, -1))):
        sign, prev, end = (1.0 if side == "positive" else -1.0), zero, 0.0
        for i in order:
            if broken[:, i].any():
                breaks[side] = float(s[i])
                break
            steps = sign * (responses[:, i] - responses[:, prev]) / abs(s[i] - s[prev])
            # a sweep that steps back at all has stopped rising there, however little (a plateau
            # that dips by a hair at the end of the range is saturation, not response)
            if slope <= 0 or steps.mean() < MIN_GAIN * slope or (steps < 0).any():
                saturates[side] = float(s[i])
                break
            prev, end = i, float(s[i])
        ends[side] = end
    return ends["negative"], ends["positive"], saturates, breaks


def decide_polarity(attribute: str | None, direction: float, expected: dict[str, float] | None,
                    loss_evidence: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The polarity from the strongest evidence at hand: in the toy world the attribute's move against
    the buckets' (pixels), else the denoising-loss test (any model), else 'unknown'."""
    evidence: dict[str, Any] = {}
    verdict = "unknown"
    if loss_evidence:
        evidence["loss"] = loss_evidence
        margin = float(loss_evidence.get("margin", 0.0))
        verdict = "unclear" if abs(margin) < POLARITY_MARGIN else ("positive" if margin > 0 else "reversed")
    if attribute and expected and expected.get(attribute):
        want = float(np.sign(expected[attribute]))
        evidence["attribute"] = {"attribute": attribute, "buckets_move": float(expected[attribute]),
                                 "slider_moves": direction}
        verdict = "unclear" if direction == 0 else ("positive" if direction == want else "reversed")
    return verdict, evidence


def bucket_direction(meter: AttributeMeter, positive_images: Sequence[Any],
                     negative_images: Sequence[Any]) -> dict[str, float]:
    """With a meter: attribute -> mean over the positive bucket images minus over the negative ones."""
    if not positive_images or not negative_images:
        return {}
    pos = [meter.measure(im) for im in positive_images]
    neg = [meter.measure(im) for im in negative_images]
    return {a: float(np.mean([meter.value(m, a) for m in pos]) - np.mean([meter.value(m, a) for m in neg]))
            for a in meter.attributes}


# ----------------------------------------------------------------------------------- metadata

def to_metadata(calibration: Calibration) -> dict[str, Any]:
    """The adapter metadata entries (adapter_io adds the `sliderstudio.` prefix)."""
    lo, hi = calibration.recommended
    return {RANGE_KEY: [lo, hi], POLARITY_KEY: calibration.polarity, CALIBRATION_KEY: calibration.to_dict()}


def read_calibration(path: str | Path) -> dict[str, Any] | None:
    """The calibration stored in an adapter file, or None when it has none (ModelLoadError if unreadable)."""
    from sliderstudio.adapters.adapter_io import read_metadata

    meta = read_metadata(Path(path))
    cal = meta.get(CALIBRATION_KEY)
    return cal if isinstance(cal, dict) else None


def recommended_range(adapter_path: str | Path) -> tuple[float, float] | None:
    """The calibrated dial range (lo, hi) of an adapter, or None when it was never calibrated.

    For the preview's dials: a file that cannot be read (or is not safetensors) also gives None,
    since a dial must still work on any adapter the user picks, and so does an empty range (0, 0),
    a slider whose calibration measured no response (the report still shows it). The rule lives in
    `engine.dial_range` (torch-free, so the app's UI thread calls the same one).
    """
    from sliderstudio.engine import dial_range

    return dial_range.recommended_range(adapter_path)


def timed(fn: Callable[[], Calibration]) -> Calibration:
    """Run a calibration and record how long it took (rendering included)."""
    t0 = time.perf_counter()
    cal = fn()
    cal.seconds = round(time.perf_counter() - t0, 3)
    return cal
