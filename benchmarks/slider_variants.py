"""Train one image-pair size slider variant in the toy world and measure it (issue #16 item 1).

    python benchmarks/slider_variants.py --label today --levels 1 --full-strength 0.5 --steps 400
    python benchmarks/slider_variants.py --label cycle --mode cycle --levels 0.5,1 --steps 140
    python benchmarks/slider_variants.py --label text --text            # the demo's text-pair slider
    python benchmarks/slider_variants.py --label other --model DIR      # on another toy model folder
    python benchmarks/slider_variants.py --label late --timestep-bias later:0.5:3   # SimpleTuner's timestep bias

One variant per call, so every figure in docs/TRAINING.md's table comes from one fresh process:
write the demo project with the variant's data (intensity levels, strength of the full pair) and
config (step mode, anchor weight, rank, learning rate, steps), train it with the product's Trainer,
then sweep 8 held-out prompts × 3 held-out seeds × 9 strengths (−1 … +1) plus ±1.5 and ±2, scored
by the product's metric (toy.metrics) and the independent pixel metric of
toy.sweep_check. Prints one JSON object: the figures, which targets miss, training seconds and
ms per optimizer step (and per micro-batch), the load average before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def train(root: Path) -> tuple[Path, dict]:
    """Train the project; return the adapter and the step timing read from metrics.jsonl."""
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer

    project = load_project(root)
    t0 = time.perf_counter()
    adapter = Trainer(project).run()
    seconds = time.perf_counter() - t0
    rows = [json.loads(line) for line in (project.output_dir / "metrics.jsonl").read_text().splitlines()]
    steady = sorted(r["seconds"] for r in rows[5:]) or [r["seconds"] for r in rows]
    median = steady[len(steady) // 2]
    micro = sum(len(r["buckets"]) for r in rows) / len(rows)
    return adapter, {"train_s": round(seconds, 1), "steps": len(rows), "micro_batches_per_step": micro,
                     "ms_per_step": round(1000 * median, 1), "ms_per_micro_batch": round(1000 * median / micro, 1),
                     "final_loss_mean_last20": round(sum(r["loss"] for r in rows[-20:]) / min(20, len(rows)), 5)}


def measure(adapter: Path, beyond: bool, model: str = "sliderstudio:toy") -> dict:
    from sliderstudio.engine.preview import PreviewRenderer
    from sliderstudio.families.registry import get_family
    from sliderstudio.toy.sweep_check import BEYOND, check_slider

    renderer = PreviewRenderer(get_family("sd1x"), model, adapter)
    base = PreviewRenderer(get_family("sd1x"), model)
    t0 = time.perf_counter()
    result = check_slider(renderer, base, beyond=BEYOND if beyond else (), identity_sweeps=3,
                          progress=lambda line: print(f"[{time.perf_counter() - t0:6.1f} s] {line}", file=sys.stderr))
    return {"figures": result.figures(), "misses": result.misses(), "beyond": result.beyond,
            "per_sweep": [{"prompt": s.prompt, "seed": s.seed, "spearman": round(s.metrics.spearman, 3),
                           "smoothness": round(s.metrics.smoothness, 3), "range": round(s.metrics.range, 3),
                           "pixel_spearman": round(s.pixel_spearman, 3), "collapsed": s.collapsed,
                           "area": [round(v, 3) for v in s.metrics.values]}
                          for s in result.sweeps],
            "measure_s": round(time.perf_counter() - t0, 1)}


def speed(root: Path, reps: int) -> dict:
    """ms per cycle (positive, paired negative, anchor) for one fused forward against one forward
    each, forward + backward, interleaved so that a change of machine load hits both alike."""
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.training_setup import prepare_session

    session = prepare_session(load_project(root), lambda *a: None, "cpu")
    step = session.step
    cycle = next(session.sampler.groups_from(0, 3))
    assert step.fusable(cycle), "the demo's cycle should fuse"

    def fused() -> None:
        step.fused_loss(cycle).backward()

    def separate() -> None:
        for mb in cycle:
            (step.loss(mb) / len(cycle)).backward()

    times: dict[str, list[float]] = {"fused": [], "separate": []}
    for i in range(reps + 2):
        for name, fn in (("fused", fused), ("separate", separate)):
            t0 = time.perf_counter()
            fn()
            if i >= 2:  # the first two are warm-up
                times[name].append(time.perf_counter() - t0)
            session.optimizer.zero_grad(set_to_none=True)
    med = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
    return {"cycle": [mb.bucket_id for mb in cycle], "reps": reps,
            "ms_fused_cycle": round(med["fused"], 1), "ms_separate_cycle": round(med["separate"], 1),
            "speedup": round(med["separate"] / med["fused"], 2)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="variant")
    ap.add_argument("--levels", default="0.5,1", help="pair intensities, comma separated, in (0, 1]")
    ap.add_argument("--full-strength", type=float, default=1.0, help="slider strength of the intensity-1 pair")
    ap.add_argument("--mode", choices=("micro_batch", "cycle"), default="micro_batch")
    ap.add_argument("--preserve-weight", type=float, default=1.0, help="0: neutral bucket off")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--lr", type=float, help="learning rate (default 0.001; --text: the demo's)")
    ap.add_argument("--steps", type=int, help="optimizer steps (default 400; --text: the demo's)")
    ap.add_argument("--text", action="store_true",
                    help="train the demo's text-pair slider ('large' vs 'small', toy.text_demo) instead")
    ap.add_argument("--guidance", type=float, help="--text: η towards 'large' (default: the demo's)")
    ap.add_argument("--negative-guidance", type=float, help="--text: η towards 'small' (default: the demo's)")
    ap.add_argument("--samples", type=int, help="--text: base renders per pair (default: the demo's)")
    ap.add_argument("--words", metavar="POSITIVE:NEGATIVE",
                    help="--text: the size words of the pair's prompts (default: the demo's, large:small)")
    ap.add_argument("--model", default="sliderstudio:toy", help="the toy model folder to train and sweep on")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0, help="the demo data's seed (and the training seed)")
    ap.add_argument("--train-seed", type=int, help="only the training seed (init, noise, timesteps): the data "
                                                   "stays that of --seed; how much a figure moves by chance")
    ap.add_argument("--strength-power", type=float, default=1.0,
                    help="train intensity m at strength m**P (1: linear, the default)")
    ap.add_argument("--widths", help="size pair widths 'small_lo,small_hi,big_lo,big_hi' "
                                     "(default demo_project.SMALL_WIDTHS/BIG_WIDTHS)")
    ap.add_argument("--timestep-bias", metavar="STRATEGY:PORTION:MULTIPLIER",
                    help="SimpleTuner's timestep bias, e.g. later:0.5:3 (timestep_bias_* keys; default none)")
    ap.add_argument("--snr-gamma", type=float, help="SimpleTuner's snr_gamma (Min-SNR-γ weighting; default off)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="any other config key, e.g. lr_scheduler=\"cosine\" or train_batch_size=2 (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-beyond", action="store_true", help="skip the ±1.5 / ±2 renders")
    ap.add_argument("--speed", type=int, metavar="REPS", help="only time a fused cycle against separate "
                                                                 "forwards (REPS interleaved repetitions)")
    ap.add_argument("--keep", type=Path, help="write the project here instead of a temporary folder")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    return ap.parse_args(argv)


def config_for(a: argparse.Namespace) -> dict:
    cfg = {"lora_rank": a.rank, "lora_alpha": a.rank, "learning_rate": a.lr or 1e-3, "slider_step_mode": a.mode,
           "validation_steps": 0, "checkpointing_steps": 0, "lora_format": "diffusers",
           "pretrained_model_name_or_path": a.model}
    if a.preserve_weight == 0:
        cfg["slider_neutral_mode"] = "off"
    else:
        cfg["slider_preserve_weight"] = a.preserve_weight
    return {**cfg, **timestep_keys(a)}


def timestep_keys(a: argparse.Namespace) -> dict:
    """--timestep-bias later:0.5:3, --snr-gamma 5, --train-seed and --set → their config keys."""
    keys: dict = {"seed": a.train_seed} if a.train_seed is not None else {}
    keys.update(set_keys(a.set))
    if a.snr_gamma is not None:
        keys["snr_gamma"] = a.snr_gamma
    if a.timestep_bias:
        strategy, portion, multiplier = a.timestep_bias.split(":")
        keys.update(timestep_bias_strategy=strategy, timestep_bias_portion=float(portion),
                    timestep_bias_multiplier=float(multiplier))
    return keys


def set_keys(items: list[str]) -> dict:
    """--set KEY=JSON items as config keys; a value that is not JSON is taken as a string."""
    keys = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            keys[key] = json.loads(value)
        except json.JSONDecodeError:
            keys[key] = value
    return keys


def widths_of(text: str | None) -> tuple[tuple[float, float], tuple[float, float]] | None:
    if not text:
        return None
    lo_s, hi_s, lo_b, hi_b = (float(x) for x in text.split(","))
    return (lo_s, hi_s), (lo_b, hi_b)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    import torch

    from sliderstudio.toy.demo_project import write_demo_project

    torch.set_num_threads(a.threads)
    levels = tuple(float(x) for x in a.levels.split(","))
    load_before = os.getloadavg()[0]
    if a.text:
        return text_variant(a, load_before)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_demo_project(a.keep or Path(tmp) / "project", pairs=a.pairs, seed=a.seed,
                                  max_train_steps=a.steps or 400, levels=levels, full_strength=a.full_strength,
                                  config=config_for(a), size_widths=widths_of(a.widths),
                                  strength_power=a.strength_power)
        if a.speed:
            result = {"label": a.label, **speed(root, a.speed), "load_before": round(load_before, 2),
                      "load_after": round(os.getloadavg()[0], 2)}
            print(json.dumps(result, indent=1))
            if a.out:
                a.out.write_text(json.dumps(result, indent=1) + "\n")
            return 0
        adapter, timing = train(root)
        result = {"label": a.label, "model": a.model, "levels": levels, "full_strength": a.full_strength, "mode": a.mode,
                  "preserve_weight": a.preserve_weight, "rank": a.rank, "lr": a.lr or 1e-3, "widths": a.widths,
                  "strength_power": a.strength_power, "timestep_bias": a.timestep_bias, "snr_gamma": a.snr_gamma,
                  "train_seed": a.train_seed, "set": set_keys(a.set),
                  "pairs": a.pairs, **timing,
                  **measure(adapter, not a.no_beyond, a.model),
                  "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    return report(result, a.out)


def report(result: dict, out: Path | None) -> int:
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        out.write_text(text + "\n")
    return 0


def text_settings_for(a: argparse.Namespace) -> "TextSliderSettings":  # noqa: F821
    """The demo's text-slider settings with the flags' overrides (unset flags keep the demo's)."""
    from dataclasses import replace

    from sliderstudio.toy.text_demo import TextSliderSettings

    words = a.words.split(":") if a.words else []
    if a.words and (len(words) != 2 or not all(words)):
        raise SystemExit(f"--words: expected POSITIVE:NEGATIVE, e.g. huge:tiny, got {a.words!r}")
    given = {"steps": a.steps, "learning_rate": a.lr, "guidance": a.guidance,
             "negative_guidance": a.negative_guidance, "rank": a.rank, "samples": a.samples,
             **dict(zip(("positive_word", "negative_word"), words))}
    return replace(TextSliderSettings(), **{k: v for k, v in given.items() if v is not None})


def text_variant(a: argparse.Namespace, load_before: float) -> int:
    """The demo's text-pair slider with the given overrides, measured like an image variant."""
    from dataclasses import asdict

    from sliderstudio.toy.text_demo import write_text_project

    settings = text_settings_for(a)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_text_project(a.keep or Path(tmp) / "text-project", settings)
        config = json.loads((root / "config.json").read_text())
        config.update(pretrained_model_name_or_path=a.model, **timestep_keys(a))
        (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        adapter, timing = train(root)
        result = {"label": a.label, "text": asdict(settings), "model": a.model, "timestep_bias": a.timestep_bias,
                  "snr_gamma": a.snr_gamma, "train_seed": a.train_seed, "set": set_keys(a.set), **timing,
                  **measure(adapter, not a.no_beyond, a.model),
                  "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    return report(result, a.out)


if __name__ == "__main__":
    raise SystemExit(main())
