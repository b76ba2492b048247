"""Full-size SDXL, Z-Image Turbo and Flux.1-dev with random weights: our slider step against the plain loop.

For each memory mode (plain bf16, gradient checkpointing, int8 base, block offloading) it runs, side by
side, OUR step (engine.slider_step.SliderStep.loss on cached-style inputs, backward, the trainer's
gradient clipping and our optimizer from config.optimizers, as engine.trainer does) and the plain loop
most trainers wrap (the diffusers model in bf16 + a PEFT LoRA r16 in bf16 + torch AdamW, batch 1).
Per row: ms/step (median after warm-up), MFU against the bf16 matmul peak measured in the same run,
peak memory (torch.cuda.max_memory_allocated on CUDA; the process's peak RSS on the CPU), the memory
planner's estimate for the same settings, and the build time.

  python benchmarks/gpu_check.py [--budget-s 540] [--steps 15] [--json gpu_check.json]
  python benchmarks/gpu_check.py --tiny     # the same code paths on the CPU with tiny configs (< 1 min)

Models are built from the families' published configs (presets/full_size), on CUDA in
bf16, 1024 px, text lengths as the planner assumes. `--tiny` shrinks widths and depths of the same
classes and runs at 64 px. `--budget-s` skips a run that would not finish in time and says so.
Compile is off (compile_s stays empty) until the fast-step options are passed through here.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ("sdxl", "z_image", "flux")
MODES = ("bf16", "checkpointing", "int8", "offload")
LOOPS = ("ours", "plain")
RANK = 16
GIB = 1024 ** 3
# Same classes at toy size: every key here overrides the published config.
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "sdxl": {"block_out_channels": [32, 64], "attention_head_dim": [2, 4], "layers_per_block": 1,
             "transformer_layers_per_block": [1, 1], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "cross_attention_dim": 32,
             "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 64, "norm_num_groups": 8,
             "sample_size": 8},
    "z_image": {"dim": 64, "n_layers": 2, "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 2, "cap_feat_dim": 32,
                "axes_dims": [8, 12, 12], "axes_lens": [256, 64, 64]},
    "flux": {"num_layers": 1, "num_single_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2,
             "joint_attention_dim": 32, "pooled_projection_dim": 32, "axes_dims_rope": [4, 6, 6]},
}
# First guesses of one full-size run's seconds (build + warm-up + timed steps), replaced by measurements.
GUESS_S = {"sdxl": 15.0, "z_image": 20.0, "flux": 25.0}
TINY_GUESS_S = 2.0
OFFLOAD_FACTOR = 4.0  # an offloaded step waits for every block to cross PCIe twice (forward, recomputation)


@dataclass
class Setting:
    tiny: bool
    device: Any
    resolution: int
    text_tokens: dict[str, int]
    warmup: int
    steps: int
    dtype: Any  # bf16 on CUDA; fp32 for --tiny (bf16 kernels on a CPU are emulated and slow)


@dataclass
class Row:
    model: str
    mode: str
    loop: str
    status: str = "ok"
    ms_per_step: float | None = None
    steps_timed: int = 0
    tflop_per_step: float | None = None
    mfu: float | None = None
    peak_gib: float | None = None
    peak_source: str = ""
    planner_gib: float | None = None
    measured_over_planner: float | None = None
    build_s: float | None = None
    compile_s: float | None = None
    notes: list[str] = field(default_factory=list)


# --- building ------------------------------------------------------------------------------------

def denoiser_config(model: str, tiny: bool) -> tuple[str, dict[str, Any]]:
    from sliderstudio.families.full_size import full_size

    fs = full_size(model)
    return fs.class_name, {**fs.config, **(TINY_CONFIGS[model] if tiny else {})}


def build_denoiser(model: str, setting: Setting):
    """Random weights straight in bf16 on the device (no fp32 copy: a 12 B model is 22 GiB in bf16)."""
    import diffusers
    import torch

    class_name, config = denoiser_config(model, setting.tiny)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(setting.dtype)
    try:
        with torch.device(setting.device):
            return getattr(diffusers, class_name).from_config(config)
    finally:
        torch.set_default_dtype(previous)


def latent_channels(model: str, config: dict[str, Any]) -> int:
    return config["in_channels"] // 4 if model == "flux" else config["in_channels"]  # Flux packs 2×2 patches


def conditioning(model: str, config: dict[str, Any], tokens: int):
    """One cached-style caption conditioning of the family's shape (random values)."""
    import torch

    from sliderstudio.families.base import Conditioning

    g = torch.Generator().manual_seed(1)
    if model == "flux":
        return Conditioning({"encoder_hidden_states": torch.randn(1, tokens, config["joint_attention_dim"], generator=g),
                             "pooled_projections": torch.randn(1, config["pooled_projection_dim"], generator=g)})
    if model == "z_image":
        return Conditioning({"cap_feats": torch.randn(1, tokens, config["cap_feat_dim"], generator=g)})
    pooled = config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    return Conditioning({"encoder_hidden_states": torch.randn(1, tokens, config["cross_attention_dim"], generator=g),
                         "text_embeds": torch.randn(1, pooled, generator=g)})


def schedule_for(family: Any):
    if hasattr(family, "image_seq_len"):  # flow-matching families: a static shift of 3
        return family.noise_schedule(SimpleNamespace(scheduler=SimpleNamespace(
            config={"shift": 3.0, "num_train_timesteps": 1000})))
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012)


def step_data(model: str, setting: Setting):
    import torch

    from sliderstudio.engine.slider_step import StepData

    _, config = denoiser_config(model, setting.tiny)
    side = setting.resolution // 8
    latent = torch.randn(latent_channels(model, config), side, side, generator=torch.Generator().manual_seed(2))
    cond = conditioning(model, config, setting.text_tokens[model])
    return StepData({("b", 0): latent}, {("b", 0): "a caption"}, {"a caption": cond, "": cond},
                    {"b": setting.resolution})


def micro_batch(index: int):
    from sliderstudio.engine.sampler import MicroBatch

    return MicroBatch(index=index, epoch=0, bucket_id="b", role="positive", strength=1.0, items=(0,), stems=("0",))


def targets_of(model: str, denoiser) -> list[str]:
    from sliderstudio.adapters.targets import resolve_on_module
    from sliderstudio.families.registry import get_family

    return resolve_on_module(denoiser, get_family(model).presets["slider"], "slider").module_names


# --- one loop, one mode --------------------------------------------------------------------------

def prepare_base(model: str, mode: str, setting: Setting):
    """The frozen denoiser of a mode: int8 quantised, or in CPU memory for offloading."""
    from sliderstudio.engine.quantise import SUPPORTED, quantise_module

    denoiser = build_denoiser(model, setting)
    denoiser.requires_grad_(False)
    if mode == "int8":
        quantise_module(denoiser, SUPPORTED["int8-torchao"])
    if mode == "offload":
        denoiser.to("cpu")
    return denoiser


def ours(model: str, mode: str, setting: Setting) -> tuple[Callable[[int], None], Any]:
    """Our step as the trainer runs it: SliderStep.loss, backward, clip, our optimizer (adamw_bf16)."""
    import torch

    from sliderstudio.adapters import adapters
    from sliderstudio.engine.block_offload import install
    from sliderstudio.config.config import TrainConfig
    from sliderstudio.config.optimizers import build_optimizer
    from sliderstudio.adapters.slider_adapter import PeftSlider
    from sliderstudio.engine.slider_step import SliderStep
    from sliderstudio.families.registry import get_family

    family = get_family(model)
    denoiser = prepare_base(model, mode, setting)
    config = adapters.attach_lora(denoiser, targets_of(model, denoiser), RANK, float(RANK))
    adapter = PeftSlider(denoiser, family.denoiser_name, config)
    params = adapter.parameters()
    for p in params:
        p.data = p.data.float()  # the slider trains in fp32 under bf16 autocast, as training_setup does
    if mode in ("checkpointing", "offload"):
        denoiser.enable_gradient_checkpointing()
    if mode == "offload":
        install(denoiser, setting.device, params)
    denoiser.train()
    optimizer = build_optimizer(params, TrainConfig(optimizer="adamw_bf16", learning_rate=1e-4), setting.device)
    autocast = lambda: torch.autocast(setting.device.type, dtype=setting.dtype,  # noqa: E731
                                      enabled=setting.dtype != torch.float32)
    step = SliderStep(family, denoiser, schedule_for(family), step_data(model, setting), 0, setting.device,
                      setting.dtype, autocast=autocast, adapter=adapter)

    def run(index: int) -> None:
        loss = step.loss(micro_batch(index))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run, denoiser


def plain(model: str, mode: str, setting: Setting) -> tuple[Callable[[int], None], Any]:
    """The plain loop: bf16 model + PEFT LoRA r16 (bf16) + torch AdamW, MSE against the true target."""
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig

    from sliderstudio.engine.slider_step import SliderStep
    from sliderstudio.families.registry import get_family

    family = get_family(model)
    denoiser = prepare_base(model, mode, setting)
    denoiser.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=targets_of(model, denoiser)))
    params = [p for p in denoiser.parameters() if p.requires_grad]
    if mode == "checkpointing":
        denoiser.enable_gradient_checkpointing()
    denoiser.train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    inputs = SliderStep(family, denoiser, schedule_for(family), step_data(model, setting), 0, setting.device,
                        setting.dtype)

    def run(index: int) -> None:
        noisy, timesteps, target, cond = inputs.inputs(micro_batch(index))
        pred = family.predict(denoiser, noisy, timesteps, cond)
        F.mse_loss(pred.float(), target.float()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run, denoiser


# --- measuring -----------------------------------------------------------------------------------

def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak_tflops(device: Any, tiny: bool, dtype: Any) -> float:
    """The matmul peak of this device in the run's dtype (bf16 on CUDA), measured now: the MFU denominator."""
    import torch

    n, iters = (256, 20) if tiny else (8192, 30)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n ** 3 * iters / (time.perf_counter() - t0) / 1e12


def flop_count(run: Callable[[int], None], index: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run(index)
    return float(counter.get_total_flops())


def reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: Any) -> tuple[float, str]:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / GIB, "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, "process peak RSS (CPU)"


def planner_gib(model: str, mode: str) -> float:
    """The planner's device bytes for this denoiser's step (weights, adapter, optimizer, activations:
    what max_memory_allocated sees; no encoders, VAE decoder or CUDA context), full size at 1024 px."""
    from sliderstudio.app.memory_plan import PlanOptions, plan
    from sliderstudio.families.registry import get_family

    options = PlanOptions(mixed_precision="bf16", gradient_checkpointing=mode == "checkpointing",
                          base_model_precision="int8-torchao" if mode == "int8" else "no_change",
                          offload_blocks=mode == "offload", resolution=1024, lora_rank=RANK, caches_complete=True)
    b = plan(get_family(model), options)
    return (b.weights + b.adapter + b.optimizer + b.activations) / GIB


def measure(model: str, mode: str, loop: str, setting: Setting, peak_tflops: float) -> Row:
    row = Row(model, mode, loop)
    if loop == "plain" and mode == "offload":
        row.status = ("skipped: diffusers' apply_group_offloading moves the PEFT LoRA parameters with the blocks "
                      "(their gradients then land on the wrong device), so the plain loop has no offload mode")
        return row
    t0 = time.perf_counter()
    run, _ = (ours if loop == "ours" else plain)(model, mode, setting)
    sync(setting.device)
    row.build_s = round(time.perf_counter() - t0, 2)
    reset_peak(setting.device)  # after building: an offloaded model was built on the device, then moved
    for i in range(setting.warmup):
        run(i)
    sync(setting.device)
    flops = flop_count(run, setting.warmup)
    times = []
    for i in range(setting.steps):
        t = time.perf_counter()
        run(setting.warmup + 1 + i)
        sync(setting.device)
        times.append(time.perf_counter() - t)
    median = statistics.median(times)
    row.ms_per_step, row.steps_timed = sig(median * 1000), len(times)
    row.tflop_per_step = sig(flops / 1e12)
    row.mfu = sig(flops / median / (peak_tflops * 1e12))
    peak, row.peak_source = peak_gib(setting.device)
    row.peak_gib = sig(peak)
    row.planner_gib = sig(planner_gib(model, mode))
    row.measured_over_planner = sig(peak / row.planner_gib)
    if setting.tiny:
        row.notes.append("tiny: the planner column is the full-size estimate; compare it on a GPU at full size")
    if mode == "int8":
        row.notes.append("FLOPs counted by torch's FlopCounterMode (int8 matmuls may be missed: MFU understated)")
    return row


def sig(value: float, digits: int = 4) -> float:
    """Rounded to significant digits: a tiny run's MFU is 1e-5, which fixed decimals would make 0."""
    return float(f"{value:.{digits}g}")


def release(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --- the run -------------------------------------------------------------------------------------

def estimate_s(model: str, mode: str, measured: dict[str, float], tiny: bool) -> float:
    base = measured.get(model, TINY_GUESS_S if tiny else GUESS_S[model])
    return base * (OFFLOAD_FACTOR if mode == "offload" else 1.0)


def run_all(setting: Setting, budget_s: float, models: tuple[str, ...], modes: tuple[str, ...],
            log: Callable[[str], None], peak: float | None = None) -> dict[str, Any]:
    """Every model × mode × loop row; `peak` (TFLOP/s) is measured first unless given."""
    import torch

    started = time.perf_counter()
    peak = peak or matmul_peak_tflops(setting.device, setting.tiny, setting.dtype)
    log(f"{str(setting.dtype).removeprefix('torch.')} matmul peak: {peak:.4g} TFLOP/s")
    rows: list[Row] = []
    measured: dict[str, float] = {}
    for mode in modes:  # mode by mode: the slow offload rows come last, where the budget may skip them
        for model in models:
            for loop in LOOPS:
                left = budget_s - (time.perf_counter() - started)
                need = estimate_s(model, mode, measured, setting.tiny)
                if need > left:
                    rows.append(Row(model, mode, loop, status=f"skipped: budget (needs ≈ {need:.0f} s, "
                                                               f"{max(left, 0):.0f} s left)"))
                    log(f"{model} {mode} {loop}: {rows[-1].status}")
                    continue
                t0 = time.perf_counter()
                try:
                    row = measure(model, mode, loop, setting, peak)
                except torch.OutOfMemoryError as exc:
                    row = Row(model, mode, loop, status=f"out of memory: {str(exc).splitlines()[0]}")
                release(setting.device)
                if row.status == "ok" and mode != "offload":
                    measured[model] = max(measured.get(model, 0.0), time.perf_counter() - t0)
                rows.append(row)
                log(f"{model} {mode} {loop}: {row.status} {row.ms_per_step} ms/step, peak {row.peak_gib} GiB "
                    f"(planner {row.planner_gib})")
    return {"device": device_name(setting.device), "tiny": setting.tiny, "resolution": setting.resolution,
            "dtype": str(setting.dtype).removeprefix("torch."), "matmul_peak_tflops": sig(peak),
            "torch": torch.__version__, "diffusers": _version("diffusers"),
            "wall_s": round(time.perf_counter() - started, 1), "budget_s": budget_s,
            "rows": [asdict(r) for r in rows]}


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def device_name(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def table(result: dict[str, Any]) -> str:
    head = ("| model | mode | loop | ms/step | MFU | peak GiB | planner GiB | measured/planner | build s | status |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in result["rows"]:
        cells = [r["model"], r["mode"], r["loop"], _cell(r["ms_per_step"]), _cell(r["mfu"], "{:.1%}"),
                 _cell(r["peak_gib"]), _cell(r["planner_gib"]), _cell(r["measured_over_planner"]),
                 _cell(r["build_s"]), r["status"] if len(r["status"]) < 40 else r["status"][:37] + "…"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell(value: float | None, fmt: str = "{:g}") -> str:
    return "–" if value is None else fmt.format(value)


def setting_for(args: argparse.Namespace) -> Setting:
    import torch

    from sliderstudio.families.full_size import full_size

    if args.tiny:
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        return Setting(True, torch.device("cpu"), 64, {m: 8 for m in MODELS}, 1, args.steps or 3, torch.float32)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU (use --tiny on the CPU)")
    torch.backends.cuda.enable_cudnn_sdp(False)  # Flux's backward crashed with cuDNN SDPA (STACK-FACTS)
    tokens = {m: full_size(m).activation["text_tokens"] for m in MODELS}
    return Setting(False, torch.device("cuda"), 1024, tokens, 3, args.steps or 15, torch.bfloat16)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (the test's run)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per row, median (default 15; --tiny 3)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="skip runs that would not finish in time")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", default="gpu_check.json", help="where the results go")
    args = parser.parse_args(argv)
    models = tuple(m for m in args.models.split(",") if m)
    modes = tuple(m for m in args.modes.split(",") if m)
    bad = [m for m in models if m not in MODELS] + [m for m in modes if m not in MODES]
    if bad or args.steps < 0:
        print(f"error: unknown model or mode {bad} (models: {', '.join(MODELS)}; modes: {', '.join(MODES)}), "
              "or --steps below 0", file=sys.stderr)
        return 2
    result = run_all(setting_for(args), args.budget_s, models, modes, lambda line: print(line, flush=True))
    print(table(result))
    from sliderstudio.kernel.atomic import write_text

    write_text(Path(args.json), json.dumps(result, indent=1))
    print(f"wrote {args.json} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
