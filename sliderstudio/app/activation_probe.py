"""Measure the activation memory a training step keeps for backward: the saved-tensor bytes.

What autograd saves between forward and backward is what grows with resolution and batch; it
is counted exactly, on any device, with `torch.autograd.graph.saved_tensors_hooks` (each storage
once, parameters excluded). The memory planner's per-family activation constants come from these
measurements on the real diffusers block classes at reduced width (fewer heads, one or two
blocks) and a few latent sizes on this CPU, then scale by width and depth to the full model.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch

from sliderstudio.adapters import adapters
from sliderstudio.adapters.targets import resolve_on_module
from sliderstudio.families.base import Conditioning
from sliderstudio.families.full_size import full_size
from sliderstudio.families.registry import get_family


def saved_bytes(step: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves during `step()` (a forward), parameters excluded."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip and storage.device.type != "meta":
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = step()
    out.float().pow(2).mean().backward()
    return sum(seen.values())


class _KernelLikeAttention(torch.autograd.Function):
    """Scaled-dot-product attention that keeps for backward what a GPU's flash / memory-efficient kernel
    keeps (q, k, v, the output and one fp32 log-sum-exp per query and head) and recomputes the rest.
    On a CPU a masked call takes the math path, which keeps the N×N probabilities a GPU never stores."""

    @staticmethod
    def forward(ctx, q, k, v, kwargs):  # type: ignore[override]
        with torch.no_grad():
            out = _SDPA(q, k, v, **kwargs)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.kwargs = kwargs
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        q, k, v, _out, _lse = ctx.saved_tensors
        q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
        with torch.enable_grad():
            out = _SDPA(q, k, v, **ctx.kwargs)
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
        return dq, dk, dv, None


_SDPA = torch.nn.functional.scaled_dot_product_attention


def _kernel_like_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                      enable_gqa=False):
    kwargs = {"attn_mask": attn_mask, "dropout_p": dropout_p, "is_causal": is_causal, "scale": scale}
    if enable_gqa:
        kwargs["enable_gqa"] = True
    return _KernelLikeAttention.apply(query, key, value, kwargs)


@contextmanager
def gpu_like_attention():
    """Route torch's SDPA through `_KernelLikeAttention` while a probe runs."""
    torch.nn.functional.scaled_dot_product_attention = _kernel_like_sdpa
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = _SDPA


@dataclass(frozen=True)
class ProbeSpec:
    """How to build a family's reduced model and feed it: config overrides, the layer keys, inputs."""

    overrides: dict[str, Any]
    layer_keys: tuple[str, ...]     # config keys counting blocks (set to 1 or 2 in the probe)
    width_ratio: float              # full width / probe width
    latent_channels: int
    cond: Callable[[dict[str, Any], int], dict[str, torch.Tensor]]


def _flux_cond(cfg: dict[str, Any], text: int) -> dict[str, torch.Tensor]:
    return {"encoder_hidden_states": torch.randn(1, text, cfg["joint_attention_dim"]),
            "pooled_projections": torch.randn(1, cfg["pooled_projection_dim"])}


def _z_image_cond(cfg: dict[str, Any], text: int) -> dict[str, torch.Tensor]:
    return {"cap_feats": torch.randn(1, text, cfg["cap_feat_dim"]), "cap_lens": torch.tensor([text])}


def _sdxl_cond(cfg: dict[str, Any], text: int) -> dict[str, torch.Tensor]:
    return {"encoder_hidden_states": torch.randn(1, text, cfg["cross_attention_dim"]),
            "text_embeds": torch.randn(1, 1280), "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]])}


# Width is cut through the head count (head size kept), so every per-token tensor shrinks by the same ratio.
PROBES: dict[str, ProbeSpec] = {
    "flux": ProbeSpec({"num_attention_heads": 4, "joint_attention_dim": 256}, ("num_layers", "num_single_layers"),
                      24 / 4, 16, _flux_cond),
    "z_image": ProbeSpec({"n_heads": 4, "n_kv_heads": 4, "dim": 512, "cap_feat_dim": 256},
                         ("n_layers", "n_refiner_layers"), 3840 / 512, 16, _z_image_cond),
    "sdxl": ProbeSpec({"block_out_channels": [64, 128, 256], "attention_head_dim": [1, 2, 4],
                       "cross_attention_dim": 256}, (), 5.0, 4, _sdxl_cond),
}


def probe_model(family_id: str, layers: dict[str, int]) -> torch.nn.Module:
    """The family's real denoiser class at probe width with these block counts, random weights, fp32."""
    import diffusers

    spec, fs = PROBES[family_id], full_size(family_id)
    config = {**fs.config, **spec.overrides, **layers}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return getattr(diffusers, fs.class_name).from_config(config)


def measure(family_id: str, latent_side: int, layers: dict[str, int], checkpointing: bool,
            text_tokens: int = 32, rank: int = 16) -> int:
    """Saved bytes of one forward of the probe model carrying a rank-`rank` slider LoRA, run as the trainer
    runs a bf16 job: base weights in bf16, the adapter in fp32, under bf16 autocast (fp32 upcasts inside
    norms and rotary embeddings are kept as the model makes them, so they count at their real size)."""
    family, spec = get_family(family_id), PROBES[family_id]
    model = probe_model(family_id, layers).to(torch.bfloat16)
    names = resolve_on_module(model, family.presets["slider"]).module_names
    adapters.attach_lora(model, names, rank, rank)
    adapters.activate(model, adapters.SLIDER)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    if checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    cfg = {**full_size(family_id).config, **spec.overrides}
    cond = Conditioning({k: v.to(torch.bfloat16) if v.is_floating_point() else v
                         for k, v in spec.cond(cfg, text_tokens).items()})
    noisy = torch.randn(1, spec.latent_channels, latent_side, latent_side, dtype=torch.bfloat16)
    timesteps = torch.tensor([500.0])

    def step() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return family.predict(model, noisy, timesteps, cond)
    with gpu_like_attention():
        return saved_bytes(step, list(model.parameters()))


SIDES = (32, 64)  # latent sides of the two probe sizes (256 and 1024 image tokens after 2×2 patches)


def slope(family_id: str, layers: dict[str, int], checkpointing: bool, sides: tuple[int, int] = SIDES) -> float:
    """Saved bytes per extra image token: the part of the activations that grows with resolution."""
    patch = full_size(family_id).activation["patch"]
    low, high = (measure(family_id, s, layers, checkpointing) for s in sides)
    return (high - low) / ((sides[1] // patch) ** 2 - (sides[0] // patch) ** 2)


def probe_width(family_id: str) -> int:
    cfg = {**full_size(family_id).config, **PROBES[family_id].overrides}
    if "block_out_channels" in cfg:
        return cfg["block_out_channels"][0]
    return cfg.get("dim") or cfg["num_attention_heads"] * cfg["attention_head_dim"]


def calibrate() -> dict[str, dict[str, Any]]:
    """Per block kind: saved bytes (bf16 run) per token per unit of width, without and with checkpointing."""
    kinds: dict[str, dict[str, Any]] = {}
    for mode in ("nogc", "gc"):
        gc = mode == "gc"
        per = {f: probe_width(f) for f in PROBES}  # per unit of width
        f11 = slope("flux", {"num_layers": 1, "num_single_layers": 1}, gc)
        double = slope("flux", {"num_layers": 2, "num_single_layers": 1}, gc) - f11
        single = slope("flux", {"num_layers": 1, "num_single_layers": 2}, gc) - f11
        z11 = slope("z_image", {"n_layers": 1, "n_refiner_layers": 1}, gc)
        z_block = slope("z_image", {"n_layers": 2, "n_refiner_layers": 1}, gc) - z11
        values = {"flux_double": (double, True), "flux_single": (single, True),
                  "flux_stem": (f11 - double - single, False), "z_image_block": (z_block, True),
                  "z_image_stem": (z11 - 2 * z_block, False), "unet": (slope("sdxl", {}, gc), False)}
        for kind, (value, joint) in values.items():
            family = "flux" if kind.startswith("flux") else ("z_image" if kind.startswith("z_image") else "sdxl")
            kinds.setdefault(kind, {"family": family, "joint": joint})[mode] = max(0.0, value / per[family])
    return kinds


if __name__ == "__main__":  # python -m sliderstudio.app.activation_probe: re-measure the planner's constants
    import json

    from sliderstudio.kernel.atomic import write_text
    from sliderstudio.app.memory_plan import CONSTANTS_FILE
    from sliderstudio.kernel.resources import config_data, real_path

    body = {"method": "saved-tensor bytes (torch.autograd.graph.saved_tensors_hooks) of the real diffusers "
                      "classes at reduced width on CPU, bf16 weights + fp32 slider LoRA r16 under bf16 autocast, "
                      "attention keeping what a GPU flash kernel keeps; "
                      "bytes per image token per unit of width; see app/activation_probe.py", "kinds": calibrate()}
    write_text(real_path(config_data(CONSTANTS_FILE)), json.dumps(body, indent=1) + "\n")
