"""Train the bundled toy diffusion model from scratch and save it as a Stable Diffusion 1.x folder.

    python -m sliderstudio.toy.train_base --out DIR [--minutes M | --steps N] [--seed S] [--device cpu|cuda]

Why this exists: nothing can be downloaded where Slider Studio runs, yet the demo and the tests
need a real text-to-image diffusion model. This script builds one in ~20-30 CPU minutes from
procedurally drawn shapes (`sliderstudio.toy.world`):

1. a tiny AutoencoderKL (4x downsampling, 32x32 RGB -> 4x8x8 latents, ~0.95 M params);
2. a UNet2DConditionModel with cross-attention (~4.2 M params) and a 2-layer CLIP text encoder
   (hidden 64), trained jointly with the epsilon loss, a cosine noise schedule, 10 % caption
   dropout (for classifier-free guidance) and an EMA of the weights.

The output loads with `StableDiffusionPipeline.from_pretrained(DIR, local_files_only=True)`.
Its scheduler is DDIM with "leading" spacing and steps_offset=1: "trailing" spacing starts at
t=999 where the cosine schedule has alpha_bar ~ 0 and the samples come out as garbage.

Reproducible: with `--minutes` the step counts are fixed after a short speed calibration and
written to training_log.json; rerunning with `--vae-steps K --steps N --seed S` on the same
device and thread count retraces the same run.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sliderstudio.toy.vocab import MAX_LENGTH, build_tokenizer, world_words
from sliderstudio.toy.world import WORLD, WORLDS, caption, random_specs, render

RESOLUTION = 32
#: Training specs come from seed `seed`; quality.py evaluates on a far-away seed range.
POOL_SIZE = 20000
VAE_BATCH = 32
UNET_BATCH = 64
CAPTION_DROPOUT = 0.1
EMA_DECAY = 0.995
CALIBRATION_STEPS = 15


# ----------------------------------------------------------------------------- model configs


def text_encoder_config(vocab_size: int) -> "CLIPTextConfig":  # noqa: F821
    """2 layers, hidden 64: captions are at most 9 words from an 18-word vocabulary."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_LENGTH, projection_dim=64,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )


def build_vae() -> "AutoencoderKL":  # noqa: F821
    """Three blocks = two downsamplings: 32 px -> 8x8 latents, enough detail for the shape kinds."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4, layers_per_block=1, norm_num_groups=32, sample_size=RESOLUTION,
    )


def build_unet() -> "UNet2DConditionModel":  # noqa: F821
    """Cross-attention in every down/up block so the caption can steer colour, kind and size.

    The module names (attn1, attn2, proj_in, conv_in, time_embedding, ...) are the SD 1.x ones,
    so slider target presets match this model like a real one.
    """
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=RESOLUTION // 4, in_channels=4, out_channels=4, block_out_channels=(64, 128),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
        attention_head_dim=8, norm_num_groups=32,
    )


def noise_scheduler_config() -> dict:
    return {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "epsilon", "clip_sample": False}


def inference_scheduler() -> "DDIMScheduler":  # noqa: F821
    """DDIM, leading spacing, offset 1 (see the module docstring for why not trailing)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**noise_scheduler_config(), timestep_spacing="leading", steps_offset=1,
                         set_alpha_to_one=False)


# ----------------------------------------------------------------------------- data


@dataclass
class Pool:
    """Pre-rendered training images and tokenised captions (rendering is cheap, but not free)."""

    images: torch.Tensor  # (N, 3, H, W) in [-1, 1]
    input_ids: torch.Tensor  # (N, MAX_LENGTH)
    empty_ids: torch.Tensor  # (MAX_LENGTH,) the unconditional caption ""


def build_pool(seed: int, n: int, tokenizer, world: int = WORLD) -> Pool:
    """`n` specs of `world` from `seed`, rendered, with their captions tokenised."""
    specs = random_specs(seed, n, world=world)
    arr = np.stack([np.asarray(render(s, RESOLUTION)) for s in specs])
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    tok = lambda texts: tokenizer(texts, padding="max_length", max_length=MAX_LENGTH,  # noqa: E731
                                  truncation=True, return_tensors="pt").input_ids
    return Pool(images, tok([caption(s, world) for s in specs]), tok([""])[0])


# ----------------------------------------------------------------------------- training helpers


@dataclass
class PhaseLog:
    steps: int = 0
    batch: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        tail = self.losses[-50:] or [float("nan")]
        return {"steps": self.steps, "batch": self.batch, "minutes": round(self.seconds / 60, 2),
                "final_loss": round(float(np.mean(tail)), 5)}


def lr_at(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 10 % of `base` at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def plan_steps(fixed: int | None, budget_s: float, done: int, elapsed: float) -> int:
    """The phase's total step count: given, or what the measured speed fits in the time budget."""
    if fixed is not None:
        return fixed
    rate = done / max(elapsed, 1e-6)
    return max(done, int(done + rate * max(0.0, budget_s - elapsed)))


def run_phase(name: str, step_fn, fixed_steps: int | None, budget_s: float, log: PhaseLog,
              on_step=None) -> None:
    """Call `step_fn(step, total)` until the step count (fixed, or fitted to the budget) is reached.

    `on_step(done, total, log)` runs after every step (snapshots); returning True stops early."""
    start = time.perf_counter()
    total = fixed_steps if fixed_steps is not None else 10**9
    step = 0
    while step < total:
        if fixed_steps is None and step == CALIBRATION_STEPS:
            total = plan_steps(None, budget_s, step, time.perf_counter() - start)
            print(f"[{name}] {step / (time.perf_counter() - start):.2f} steps/s -> {total} steps", flush=True)
        log.losses.append(step_fn(step, total))
        step += 1
        log.steps, log.seconds = step, time.perf_counter() - start
        if step % 50 == 0 or step == total:
            print(f"[{name}] step {step}/{total} loss {np.mean(log.losses[-50:]):.5f} "
                  f"{step / log.seconds:.2f} it/s {log.seconds / 60:.1f} min", flush=True)
        if on_step is not None and on_step(step, total, log):
            break


def train_vae(vae, pool: Pool, gen: torch.Generator, steps: int | None, budget_s: float, device: str) -> PhaseLog:
    """Reconstruction (MSE) with a tiny KL term: sharp edges matter more than a smooth prior."""
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    log = PhaseLog(batch=VAE_BATCH)

    def step_fn(step: int, total: int) -> float:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, 1e-3, warmup=50)
        idx = torch.randint(0, len(pool.images), (VAE_BATCH,), generator=gen)
        x = pool.images[idx].to(device)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    vae.train()
    run_phase("vae", step_fn, steps, budget_s, log)
    vae.eval()
    return log


@torch.no_grad()
def encode_pool(vae, images: torch.Tensor, device: str, rescale: bool = True) -> torch.Tensor:
    """Latent means for the whole pool, scaled to unit std; records the factor in the VAE config.

    `rescale=False` keeps the VAE's recorded factor: a continued run must see latents on the
    scale its denoiser was trained on."""
    means = torch.cat([vae.encode(images[i:i + 256].to(device)).latent_dist.mean.cpu()
                       for i in range(0, len(images), 256)])
    if rescale:
        vae.register_to_config(scaling_factor=float(1.0 / means.std()))
    return means * float(vae.config.scaling_factor)


class Ema:
    """Exponential moving average of parameters, with the usual warm-up of the decay."""

    def __init__(self, modules: list[torch.nn.Module], decay: float) -> None:
        self.shadow = [copy.deepcopy(m).eval().requires_grad_(False) for m in modules]
        self.live, self.decay = modules, decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, m in zip(self.shadow, self.live):
            torch._foreach_lerp_(list(s.parameters()), list(m.parameters()), 1 - d)


def train_denoiser(unet, text_encoder, latents: torch.Tensor, pool: Pool, gen: torch.Generator,
                   steps: int | None, budget_s: float, device: str, lr: float = 8e-4,
                   on_step=None) -> tuple[PhaseLog, Ema]:
    """Joint UNet + text encoder epsilon-prediction training with caption dropout and EMA."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(**noise_scheduler_config())
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ema = Ema([unet, text_encoder], EMA_DECAY)
    log = PhaseLog(batch=UNET_BATCH)

    def step_fn(step: int, total: int) -> float:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, lr)
        idx = torch.randint(0, len(latents), (UNET_BATCH,), generator=gen)
        ids = pool.input_ids[idx].clone()
        drop = torch.rand(UNET_BATCH, generator=gen) < CAPTION_DROPOUT
        ids[drop] = pool.empty_ids
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (UNET_BATCH,), generator=gen)
        noisy = sched.add_noise(x0, noise, t)
        cond = text_encoder(ids.to(device))[0]
        pred = unet(noisy.to(device), t.to(device), encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, noise.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        return loss.item()

    unet.train()
    text_encoder.train()
    run_phase("unet", step_fn, steps, budget_s, log, on_step=lambda *a: on_step(ema, *a) if on_step else None)
    return log, ema


# ----------------------------------------------------------------------------- saving


def folder_size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet, words: list[str] | None = None) -> None:
    """A complete SD 1.x pipeline folder in safetensors, without safety checker."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=inference_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    for config in out.glob("*/config.json"):  # a continued run's parts remember the folder they came from
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    _write_slow_tokenizer_files(out / "tokenizer", tokenizer, words or world_words())


def _write_slow_tokenizer_files(folder: Path, tokenizer, words: list[str]) -> None:
    """Also write vocab.json + merges.txt (of the tokenizer's `words`), which older tools expect
    next to tokenizer.json."""
    from sliderstudio.toy.vocab import learn_merges

    (folder / "vocab.json").write_text(json.dumps(tokenizer.get_vocab(), indent=0, sort_keys=True))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in learn_merges(words)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- entry point


def load_parts(folder: Path, device: str) -> tuple:
    """(vae, text_encoder, unet, training log) of a model this script saved: the start of a continued run."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    log_file = folder / "training_log.json"
    if not log_file.is_file():
        raise FileNotFoundError(f"{folder}: no training_log.json; --init-from takes a folder this script wrote")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae").to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").to(device)
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").to(device)
    return vae, text_encoder, unet, json.loads(log_file.read_text())


def match_vocabulary(text_encoder, old_vocab: dict[str, int], new_vocab: dict[str, int], seed: int):
    """The text encoder with its token embedding re-indexed from `old_vocab` to `new_vocab`.

    Why: the tokenizer is rebuilt from the world's words, so a word added to the world (e.g.
    "slightly") renumbers the merged tokens; each token keeps its learned row by its *string*, and
    tokens the saved model never saw start from small random rows (the spread of the learned ones).
    Returns the encoder unchanged when the vocabularies are the same.
    """
    from transformers import CLIPTextModel

    if old_vocab == new_vocab:
        return text_encoder
    old_rows = text_encoder.get_input_embeddings().weight.detach()
    config = copy.deepcopy(text_encoder.config)  # the saved encoder keeps its own
    config.vocab_size = len(new_vocab)
    fresh = CLIPTextModel(config)
    state = {k: v for k, v in text_encoder.state_dict().items() if "token_embedding" not in k}
    fresh.load_state_dict(state, strict=False)
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randn((len(new_vocab), old_rows.shape[1]), generator=gen) * float(old_rows.std())
    for token, new_id in new_vocab.items():
        if token in old_vocab:
            rows[new_id] = old_rows[old_vocab[token]]
    with torch.no_grad():
        fresh.get_input_embeddings().weight.copy_(rows)
    return fresh.to(old_rows.device)


def added_words(old_vocab: dict[str, int], words: list[str]) -> list[str]:
    """World words that were no token of the saved model (logged with a continued run)."""
    return [w for w in words if w + "</w>" not in old_vocab]


def continue_training(out: Path, init_from: Path, steps: int, seed: int = 1, lr: float = 4e-4,
                      device: str = "cpu", threads: int = 2, snapshot_every: int = 0,
                      stop_after: int | None = None, world: int = WORLD) -> dict:
    """Train the denoiser of a saved toy model `steps` more steps (new warm-up and cosine decay from
    `lr`), the VAE and the training images unchanged, and save it to `out`.

    Why: the first run's 2000 steps left the model's size knowledge in clusters (no-word shapes stop
    at area ~0.30, "large" ones start at ~0.42, although the data is continuous), which puts a jump in
    every size dial on it (docs/TOY-WORLD.md). Continuing is a third of the first run's cost, and the
    EMA starts from the saved (EMA) weights. `seed` seeds the batches, noise and timesteps; the pool
    is the first run's (its `train_spec_seed`), drawn and captioned as `world` says (a later world
    version re-captions the same seed's shapes, and a new word gets a token: `match_vocabulary`).
    `stop_after` saves and stops part-way through the
    planned `steps` (the schedule is the planned run's, so a snapshot can be reproduced).
    """
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    vae, text_encoder, unet, first = load_parts(Path(init_from), device)
    first = with_world(first)
    tokenizer = build_tokenizer(world_words(world))
    old_vocab = json.loads((Path(init_from) / "tokenizer" / "vocab.json").read_text())
    text_encoder = match_vocabulary(text_encoder, old_vocab, tokenizer.get_vocab(), seed)
    pool = build_pool(int(first["train_spec_seed"]), int(first["pool_size"]), tokenizer, world)
    latents = encode_pool(vae, pool.images, device, rescale=False)
    gen = torch.Generator().manual_seed(seed)
    meta = {"seed": first["seed"], "device": device, "threads": first["threads"], "t0": t0,
            "first_run": first,
            "continued": {"seed": seed, "lr": lr, "threads": threads, "steps": steps, "world": world,
                          "added_words": added_words(old_vocab, world_words(world))}}
    vae_log = PhaseLog(steps=first["vae"]["steps"], batch=first["vae"]["batch"],
                       seconds=first["vae"]["minutes"] * 60, losses=[first["vae"]["final_loss"]])

    def snapshot(ema: Ema, done: int, total: int, unet_log: PhaseLog) -> bool:
        stop = done == stop_after
        if done == total or stop or (snapshot_every and done % snapshot_every == 0):
            _save_all(out, vae, ema, tokenizer, vae_log, unet_log, total, meta)
        return stop

    train_denoiser(unet, text_encoder, latents.to(device), pool, gen, steps, 0.0, device, lr=lr, on_step=snapshot)
    return json.loads((out / "training_log.json").read_text())


def train(out: Path, seed: int = 0, minutes: float | None = 25.0, steps: int | None = None,
          vae_steps: int | None = None, device: str = "cpu", threads: int = 2,
          vae_fraction: float = 0.25, snapshot_every: int = 0, stop_after: int | None = None,
          world: int = WORLD) -> dict:
    """Train both stages and save the pipeline to `out`; returns the training log dict."""
    from transformers import CLIPTextModel

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    budget = (minutes or 0.0) * 60
    gen = torch.Generator().manual_seed(seed)
    tokenizer = build_tokenizer(world_words(world))
    pool = build_pool(seed, POOL_SIZE, tokenizer, world)
    print(f"pool: {len(pool.images)} images rendered in {time.perf_counter() - t0:.1f} s", flush=True)

    vae = build_vae().to(device)
    vae_budget = budget * vae_fraction - (time.perf_counter() - t0)
    vae_log = train_vae(vae, pool, gen, vae_steps if vae_steps is not None else (None if minutes else 800),
                        vae_budget, device)
    latents = encode_pool(vae, pool.images, device)
    print(f"latents: scaling_factor {vae.config.scaling_factor:.4f}", flush=True)

    unet = build_unet().to(device)
    text_encoder = CLIPTextModel(text_encoder_config(len(tokenizer))).to(device)
    unet_budget = budget - (time.perf_counter() - t0) - 30  # keep time for saving
    meta = {"seed": seed, "device": device, "threads": threads, "t0": t0, "world": world}

    def snapshot(ema: Ema, done: int, total: int, unet_log: PhaseLog) -> bool:
        stop = done == stop_after
        if done == total or stop or (snapshot_every and done % snapshot_every == 0):
            _save_all(out, vae, ema, tokenizer, vae_log, unet_log, total, meta)
        return stop

    train_denoiser(unet, text_encoder, latents.to(device), pool, gen,
                   steps if steps is not None else (None if minutes else 2000), unet_budget, device,
                   on_step=snapshot)
    log = json.loads((out / "training_log.json").read_text())
    print(json.dumps(log, indent=2), flush=True)
    return log


def _save_all(out: Path, vae, ema: Ema, tokenizer, vae_log: PhaseLog, unet_log: PhaseLog,
              planned: int, meta: dict) -> None:
    """Save the EMA pipeline and training_log.json. Mid-run saves are snapshots: their log says
    at which step of which planned run they were taken (the run is deterministic, so the same
    command reaches the same weights at that step)."""
    out.mkdir(parents=True, exist_ok=True)
    ema_unet, ema_text = ema.shadow
    world = meta["continued"]["world"] if "continued" in meta else meta.get("world", WORLD)
    save_pipeline(out, vae, ema_text, tokenizer, ema_unet, world_words(world))
    seed, threads = meta["seed"], meta["threads"]
    log = {
        "seed": seed, "device": meta["device"], "threads": threads, "resolution": RESOLUTION,
        "pool_size": POOL_SIZE, "train_spec_seed": seed, "caption_dropout": CAPTION_DROPOUT,
        "ema_decay": EMA_DECAY, "world": meta.get("world", WORLD), "vae": vae_log.summary(),
        "unet": unet_log.summary(),
        "unet_planned_steps": planned, "complete": unet_log.steps == planned,
        "minutes": round((time.perf_counter() - meta["t0"]) / 60, 2),
        "params": {"vae": _count(vae), "unet": _count(ema_unet), "text_encoder": _count(ema_text)},
        "reproduce": f"python -m sliderstudio.toy.train_base --out DIR --seed {seed} "
                     f"--vae-steps {vae_log.steps} --steps {planned} --threads {threads} --world {meta.get('world', WORLD)}"
                     + ("" if unet_log.steps == planned else f" --stop-after {unet_log.steps}"),
    }
    if "continued" in meta:  # a continued run: the first run's log, and the command that continues it
        first, more = meta["first_run"], meta["continued"]
        depth = _continuations(first)
        log.update(world=first.get("world", 1), unet=first["unet"], unet_planned_steps=first["unet_planned_steps"],
                   minutes=first["minutes"], complete=unet_log.steps == planned, reproduce=first["reproduce"],
                   continued={**more, "steps_done": unet_log.steps, "minutes": round(unet_log.seconds / 60, 2),
                              "final_loss": unet_log.summary()["final_loss"],
                              **({"previous": first["continued"]} if "continued" in first else {}),
                              "reproduce": f"python -m sliderstudio.toy.train_base --out DIR{depth + 2} "
                                           f"--init-from DIR{depth + 1 if depth else ''} "
                                           f"--steps {planned} --seed {more['seed']} --lr {more['lr']} "
                                           f"--threads {more['threads']} --world {more['world']}"
                                           + ("" if unet_log.steps == planned else f" --stop-after {unet_log.steps}")})
    (out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    log["size_mb"] = round(folder_size_mb(out), 2)
    (out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"saved {'model' if log['complete'] else 'snapshot'} at unet step {unet_log.steps}/{planned}", flush=True)


def with_world(log: dict) -> dict:
    """A saved model's log with its world version filled in: logs written before the world had
    versions trained world 1, and their reproduce commands must say so to replay on today's code."""
    if "world" in log:
        return log
    out = _world_1(log)
    if "continued" in log:
        out["continued"] = _continued_world_1(log["continued"])
    return out


def _world_1(block: dict) -> dict:
    """One run's log entry, marked as world 1 (its reproduce command then says so)."""
    command = block["reproduce"]
    return {**block, "world": block.get("world", 1),
            "reproduce": command if "--world" in command else command + " --world 1"}


def _continued_world_1(block: dict) -> dict:
    """A `continued` block and the ones before it (`previous`), each marked as world 1."""
    out = _world_1(block)
    if "previous" in block:
        out["previous"] = _continued_world_1(block["previous"])
    return out


def _continuations(log: dict) -> int:
    """How many continued runs a saved model's log records (each keeps the one before as "previous")."""
    depth, block = 0, log.get("continued")
    while block:
        depth, block = depth + 1, block.get("previous")
    return depth


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output pipeline folder")
    grp = ap.add_mutually_exclusive_group()
    grp.add_argument("--minutes", type=float, help="total wall-clock budget (default 25)")
    grp.add_argument("--steps", type=int, help="denoiser steps (with --vae-steps: exact reproduction)")
    ap.add_argument("--vae-steps", type=int, help="autoencoder steps (default: 25%% of the budget, or 800)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 is faster on a busy machine)")
    ap.add_argument("--snapshot-every", type=int, default=0, help="also save the model every N denoiser steps")
    ap.add_argument("--stop-after", type=int, help="stop (and save) after this many denoiser steps of the planned run")
    ap.add_argument("--init-from", type=Path, help="continue the denoiser of a model this script saved, "
                                                   "for --steps more steps (the VAE is kept)")
    ap.add_argument("--lr", type=float, default=4e-4, help="peak learning rate of a continued run (--init-from)")
    ap.add_argument("--world", type=int, choices=sorted(WORLDS), default=WORLD,
                    help=f"version of the toy world to draw and caption (default {WORLD}; 1: the first model's)")
    a = ap.parse_args(argv)
    if a.init_from is not None:
        if a.steps is None:
            ap.error("--init-from needs --steps (how many more denoiser steps)")
        continue_training(a.out, a.init_from, a.steps, seed=a.seed, lr=a.lr, device=a.device,
                          threads=a.threads, snapshot_every=a.snapshot_every, stop_after=a.stop_after,
                          world=a.world)
        return 0
    minutes = None if a.steps is not None else (a.minutes if a.minutes is not None else 25.0)
    train(a.out, seed=a.seed, minutes=minutes, steps=a.steps, vae_steps=a.vae_steps,
          device=a.device, threads=a.threads, snapshot_every=a.snapshot_every, stop_after=a.stop_after,
          world=a.world)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
