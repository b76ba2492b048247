"""ComfyUI's LoRA key map for the denoiser, restated independently for the export checks.

Facts read from ComfyUI's source (not its code): `comfy/lora.py` `model_lora_keys_unet` builds a map
from LoRA key stems to weights of ComfyUI's own model, and a LoRA key loads only through that map:

- every model: `lora_unet_<native path, . → _>` and `diffusion_model.<native path>` for each native
  weight `diffusion_model.<native path>.weight`;
- SD UNets: `lora_unet_<diffusers path, . → _>` and `lycoris_…` via `unet_to_diffusers`;
- Stable Cascade Stage C: `lora_prior_unet_<native path, . → _>`;
- SD3 (`mmdit_to_diffusers`, hidden = 64 · depth), AuraFlow (`auraflow_to_diffusers`) and Flux incl.
  Chroma and Flux.2 (`flux_to_diffusers`): `transformer.<diffusers path>`; q/k/v land on row slices
  `(offset, size)` of the fused native qkv weight;
- Lumina2 and Z-Image (`z_image_to_diffusers` with the config's `dim`): `diffusion_model.` /
  `transformer.<z-image diffusers path>`, to_q/to_k/to_v as three `dim`-row slices of `attention.qkv`;
- HiDream, Qwen-Image, Kandinsky 5: also `transformer.<native path>`; LTX-Video: `<native path>`.

The native layouts below restate ComfyUI's model definitions (`comfy/ldm/...`) from each model's
published config: the weights LoRA can reach in the attention, embedding and output layers, with shapes.
A ComfyUI patch is applied only when its target weight exists, and its up @ down is reshaped to the
weight (or to the slice), so a key counts as matched when it is in the map, its target exists, and
the LoRA's shapes fit the target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Layout = dict[str, tuple[int, ...]]
# kohya names, and the diffusers/PEFT names ComfyUI also reads (`lora_A` = down, `lora_B` = up)
LORA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".alpha")


@dataclass(frozen=True)
class Target:
    weight: str  # native key without the "diffusion_model." prefix and without ".weight"
    rows: tuple[int, int] | None = None  # (offset, size) along dim 0 when the LoRA patches a slice


def _u(path: str) -> str:
    return path.replace(".", "_")


# ---------------------------------------------------------------- native layouts (ComfyUI's modules)

def _unet(cfg: dict) -> tuple[Layout, dict[str, str]]:
    """openaimodel UNet: input/middle/output blocks; plus the diffusers → native map for the same weights."""
    chans, lpb, cross = cfg["block_out_channels"], cfg["layers_per_block"], cfg["cross_attention_dim"]
    tlpb = cfg.get("transformer_layers_per_block", 1)
    tlpb = tlpb if isinstance(tlpb, list) else [tlpb] * len(chans)
    depth = [tlpb[x] if "CrossAttn" in cfg["down_block_types"][x] else 0 for x in range(len(chans))]
    layout: Layout = {}
    to_native: dict[str, str] = {}

    def attention(d_path: str, n_path: str, ch: int, layers: int) -> None:
        proj = (ch, ch) if cfg.get("use_linear_projection") else (ch, ch, 1, 1)
        for name in ("proj_in", "proj_out"):
            layout[f"{n_path}.{name}"] = proj
            to_native[f"{d_path}.{name}"] = f"{n_path}.{name}"
        for t in range(layers):
            for attn, kv in (("attn1", ch), ("attn2", cross)):
                for name, shape in (("to_q", (ch, ch)), ("to_k", (ch, kv)), ("to_v", (ch, kv)), ("to_out.0", (ch, ch))):
                    n = f"{n_path}.transformer_blocks.{t}.{attn}.{name}"
                    layout[n] = shape
                    to_native[f"{d_path}.transformer_blocks.{t}.{attn}.{name}"] = n

    for x, ch in enumerate(chans):
        for i in range(lpb):
            if depth[x]:
                attention(f"down_blocks.{x}.attentions.{i}", f"input_blocks.{1 + (lpb + 1) * x + i}.1", ch, depth[x])
    attention("mid_block.attentions.0", "middle_block.1", chans[-1], tlpb[-1])
    for x in range(len(chans)):
        level = len(chans) - 1 - x
        if "CrossAttn" in cfg["up_block_types"][x]:
            for i in range(lpb + 1):
                attention(f"up_blocks.{x}.attentions.{i}", f"output_blocks.{(lpb + 1) * x + i}.1", chans[level],
                          depth[level])
    c0, emb = chans[0], 4 * chans[0]
    for d, n, shape in (("conv_in", "input_blocks.0.0", (c0, cfg["in_channels"], 3, 3)),
                        ("conv_out", "out.2", (cfg["out_channels"], c0, 3, 3)),
                        ("time_embedding.linear_1", "time_embed.0", (emb, c0)),
                        ("time_embedding.linear_2", "time_embed.2", (emb, emb))):
        layout[n] = shape
        to_native[d] = n
    return layout, to_native


def _mmdit(cfg: dict) -> Layout:
    depth, p = cfg["num_layers"], cfg["patch_size"]
    h = 64 * depth
    layout: Layout = {"x_embedder.proj": (h, cfg["in_channels"], p, p),
                      "final_layer.linear": (p * p * cfg["out_channels"], h),
                      "t_embedder.mlp.0": (h, 256), "t_embedder.mlp.2": (h, h)}
    for i in range(depth):
        b = f"joint_blocks.{i}"
        layout |= {f"{b}.x_block.attn.qkv": (3 * h, h), f"{b}.x_block.attn.proj": (h, h),
                   f"{b}.context_block.attn.qkv": (3 * h, h)}
        if i < depth - 1:  # the last context block is pre-only: no output projection
            layout[f"{b}.context_block.attn.proj"] = (h, h)
        if i in cfg.get("dual_attention_layers", ()):
            layout |= {f"{b}.x_block.attn2.qkv": (3 * h, h), f"{b}.x_block.attn2.proj": (h, h)}
    return layout


def _flux(cfg: dict, flux2: bool) -> Layout:
    h = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    mlp = int(h * cfg.get("mlp_ratio", 4.0))
    mlp_in = 2 * mlp if flux2 else mlp  # Flux.2's MLPs are gated (SiLU-gated halves)
    layout: Layout = {}
    for i in range(cfg["num_layers"]):
        b = f"double_blocks.{i}"
        for s in ("img", "txt"):
            layout |= {f"{b}.{s}_attn.qkv": (3 * h, h), f"{b}.{s}_attn.proj": (h, h),
                       f"{b}.{s}_mlp.0": (mlp_in, h), f"{b}.{s}_mlp.2": (h, mlp)}
    for i in range(cfg["num_single_layers"]):
        layout |= {f"single_blocks.{i}.linear1": (3 * h + mlp_in, h), f"single_blocks.{i}.linear2": (h, h + mlp)}
    return layout


def _auraflow(cfg: dict) -> Layout:
    h = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    layout: Layout = {}
    for i in range(cfg["num_mmdit_layers"]):
        layout |= {f"double_layers.{i}.attn.{w}": (h, h) for w in ("w1q", "w1k", "w1v", "w1o", "w2q", "w2k", "w2v", "w2o")}
    for i in range(cfg["num_single_dit_layers"]):
        layout |= {f"single_layers.{i}.attn.{w}": (h, h) for w in ("w1q", "w1k", "w1v", "w1o")}
    return layout


def _nextdit_dims(family_id: str, cfg: dict) -> tuple[int, int, int, int, int]:
    """(dim, layers, refiner layers, heads, kv heads) of ComfyUI's NextDiT (Lumina 2 and Z-Image)."""
    if family_id == "z_image":
        return cfg["dim"], cfg["n_layers"], cfg["n_refiner_layers"], cfg["n_heads"], cfg["n_kv_heads"]
    return (cfg["hidden_size"], cfg["num_layers"], cfg["num_refiner_layers"], cfg["num_attention_heads"],
            cfg["num_kv_heads"])


def _nextdit_blocks(family_id: str, cfg: dict) -> list[str]:
    _, layers, refiners, _, _ = _nextdit_dims(family_id, cfg)
    return ([f"layers.{i}" for i in range(layers)] + [f"noise_refiner.{i}" for i in range(refiners)]
            + [f"context_refiner.{i}" for i in range(refiners)])


def _nextdit(family_id: str, cfg: dict) -> Layout:
    dim, _, _, heads, kv = _nextdit_dims(family_id, cfg)
    hd = dim // heads
    layout: Layout = {}
    for b in _nextdit_blocks(family_id, cfg):
        layout |= {f"{b}.attention.qkv": ((heads + 2 * kv) * hd, dim), f"{b}.attention.out": (dim, heads * hd)}
    return layout


def _qwen(cfg: dict) -> Layout:
    h, p = cfg["num_attention_heads"] * cfg["attention_head_dim"], cfg["patch_size"]
    layout: Layout = {"proj_out": (p * p * cfg["out_channels"], h)}
    for i in range(cfg["num_layers"]):
        names = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
        layout |= {f"transformer_blocks.{i}.attn.{n}": (h, h) for n in names}
    return layout


def _hidream(cfg: dict) -> Layout:
    h = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    layout: Layout = {}
    for i in range(cfg["num_layers"]):
        names = ("to_q", "to_k", "to_v", "to_out", "to_q_t", "to_k_t", "to_v_t", "to_out_t")
        layout |= {f"double_stream_blocks.{i}.block.attn1.{n}": (h, h) for n in names}
    for i in range(cfg["num_single_layers"]):
        layout |= {f"single_stream_blocks.{i}.block.attn1.{n}": (h, h) for n in ("to_q", "to_k", "to_v", "to_out")}
    return layout


def _kandinsky5(cfg: dict) -> Layout:
    d = cfg["model_dim"]
    names = ("to_query", "to_key", "to_value", "out_layer")
    layout: Layout = {}
    for i in range(cfg["num_text_blocks"]):
        layout |= {f"text_transformer_blocks.{i}.self_attention.{n}": (d, d) for n in names}
    for i in range(cfg["num_visual_blocks"]):
        for attn in ("self_attention", "cross_attention"):
            layout |= {f"visual_transformer_blocks.{i}.{attn}.{n}": (d, d) for n in names}
    return layout


def _wan(cfg: dict) -> Layout:
    d, patch = cfg["num_attention_heads"] * cfg["attention_head_dim"], tuple(cfg["patch_size"])
    layout: Layout = {"patch_embedding": (d, cfg["in_channels"], *patch),
                      "head.head": (math.prod(patch) * cfg["out_channels"], d),
                      "time_embedding.0": (d, cfg["freq_dim"]), "time_embedding.2": (d, d),
                      "time_projection.1": (6 * d, d),
                      "text_embedding.0": (d, cfg["text_dim"]), "text_embedding.2": (d, d)}
    for i in range(cfg["num_layers"]):
        for attn in ("self_attn", "cross_attn"):
            layout |= {f"blocks.{i}.{attn}.{n}": (d, d) for n in ("q", "k", "v", "o")}
    return layout


def _ltxv(cfg: dict) -> Layout:
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    layout: Layout = {"patchify_proj": (d, cfg["in_channels"]), "proj_out": (cfg["out_channels"], d),
                      "adaln_single.emb.timestep_embedder.linear_1": (d, 256),
                      "adaln_single.emb.timestep_embedder.linear_2": (d, d), "adaln_single.linear": (6 * d, d)}
    for i in range(cfg["num_layers"]):
        b = f"transformer_blocks.{i}"
        layout |= {f"{b}.attn1.{n}": (d, d) for n in ("to_q", "to_k", "to_v", "to_out.0")}
        cross = cfg["cross_attention_dim"]
        layout |= {f"{b}.attn2.to_q": (d, d), f"{b}.attn2.to_k": (d, cross), f"{b}.attn2.to_v": (d, cross),
                   f"{b}.attn2.to_out.0": (d, d)}
    return layout


def _cosmos(cfg: dict) -> Layout:
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    pt, ph, pw = cfg["patch_size"]
    c_in = cfg["in_channels"] + (1 if cfg.get("concat_padding_mask", True) else 0)
    layout: Layout = {"x_embedder.proj.1": (d, c_in * pt * ph * pw),
                      "final_layer.linear": (pt * ph * pw * cfg["out_channels"], d),
                      "t_embedder.1.linear_1": (d, d), "t_embedder.1.linear_2": (3 * d, d)}  # AdaLN-LoRA: 3·d
    for i in range(cfg["num_layers"]):
        text = cfg["text_embed_dim"]
        layout |= {f"blocks.{i}.self_attn.{n}": (d, d) for n in ("q_proj", "k_proj", "v_proj", "output_proj")}
        layout |= {f"blocks.{i}.cross_attn.q_proj": (d, d), f"blocks.{i}.cross_attn.k_proj": (d, text),
                   f"blocks.{i}.cross_attn.v_proj": (d, text), f"blocks.{i}.cross_attn.output_proj": (d, d)}
    return layout


def _stage_c(cfg: dict) -> Layout:
    """StageC: levels of [ResBlock, TimestepBlock, AttnBlock] repeated; up blocks deepest level first."""
    chans, c_r, p = cfg["block_out_channels"], cfg["timestep_ratio_embedding_dim"], cfg["patch_size"]
    layout: Layout = {"embedding.1": (chans[0], cfg["in_channels"] * p * p, 1, 1),
                      "clf.1": (cfg["out_channels"] * p * p, chans[0], 1, 1)}
    levels = len(chans)
    ups = list(reversed(cfg["up_num_layers_per_block"]))

    def level(prefix: str, c: int, repeats: int) -> None:
        for k in range(repeats):
            layout[f"{prefix}.{3 * k + 1}.mapper"] = (2 * c, c_r)
            for n in ("to_q", "to_k", "to_v", "out_proj"):
                layout[f"{prefix}.{3 * k + 2}.attention.attn.{n}"] = (c, c)

    for i in range(levels):
        level(f"down_blocks.{i}", chans[i], cfg["down_num_layers_per_block"][i])
    for u, i in enumerate(reversed(range(levels))):
        level(f"up_blocks.{u}", chans[i], ups[i])
    return layout


# ---------------------------------------------------------------- diffusers → native maps (ComfyUI's utils)

def _mmdit_map(cfg: dict) -> dict[str, Target]:
    depth = cfg["num_layers"]
    h = 64 * depth
    out = {"pos_embed.proj": Target("x_embedder.proj"), "proj_out": Target("final_layer.linear"),
           "time_text_embed.timestep_embedder.linear_1": Target("t_embedder.mlp.0"),
           "time_text_embed.timestep_embedder.linear_2": Target("t_embedder.mlp.2")}
    for i in range(depth):
        d, n = f"transformer_blocks.{i}", f"joint_blocks.{i}"
        for j, x in enumerate("qkv"):
            out[f"{d}.attn.to_{x}"] = Target(f"{n}.x_block.attn.qkv", (j * h, h))
            out[f"{d}.attn.add_{x}_proj"] = Target(f"{n}.context_block.attn.qkv", (j * h, h))
            out[f"{d}.attn2.to_{x}"] = Target(f"{n}.x_block.attn2.qkv", (j * h, h))
        out |= {f"{d}.attn.to_out.0": Target(f"{n}.x_block.attn.proj"),
                f"{d}.attn.to_add_out": Target(f"{n}.context_block.attn.proj"),
                f"{d}.attn2.to_out.0": Target(f"{n}.x_block.attn2.proj")}
    return out


def _flux_map(cfg: dict) -> dict[str, Target]:
    h = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    out: dict[str, Target] = {}
    for i in range(cfg["num_layers"]):
        d, n = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for j, x in enumerate("qkv"):
            out[f"{d}.attn.to_{x}"] = Target(f"{n}.img_attn.qkv", (j * h, h))
            out[f"{d}.attn.add_{x}_proj"] = Target(f"{n}.txt_attn.qkv", (j * h, h))
        out |= {f"{d}.attn.to_out.0": Target(f"{n}.img_attn.proj"), f"{d}.attn.to_add_out": Target(f"{n}.txt_attn.proj")}
        for d_ff, n_ff in (("ff", "img_mlp"), ("ff_context", "txt_mlp")):
            out |= {f"{d}.{d_ff}.net.0.proj": Target(f"{n}.{n_ff}.0"), f"{d}.{d_ff}.net.2": Target(f"{n}.{n_ff}.2"),
                    f"{d}.{d_ff}.linear_in": Target(f"{n}.{n_ff}.0"), f"{d}.{d_ff}.linear_out": Target(f"{n}.{n_ff}.2")}
    for i in range(cfg["num_single_layers"]):
        d, n = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        for j, x in enumerate("qkv"):
            out[f"{d}.attn.to_{x}"] = Target(f"{n}.linear1", (j * h, h))
        out |= {f"{d}.proj_mlp": Target(f"{n}.linear1", (3 * h, 4 * h)), f"{d}.proj_out": Target(f"{n}.linear2"),
                f"{d}.attn.to_qkv_mlp_proj": Target(f"{n}.linear1"), f"{d}.attn.to_out": Target(f"{n}.linear2")}
    return out


def _auraflow_map(cfg: dict) -> dict[str, Target]:
    out: dict[str, Target] = {}
    joint = {"to_q": "w2q", "to_k": "w2k", "to_v": "w2v", "to_out.0": "w2o",
             "add_q_proj": "w1q", "add_k_proj": "w1k", "add_v_proj": "w1v", "to_add_out": "w1o"}
    single = {"to_q": "w1q", "to_k": "w1k", "to_v": "w1v", "to_out.0": "w1o"}
    for i in range(cfg["num_mmdit_layers"]):
        out |= {f"joint_transformer_blocks.{i}.attn.{d}": Target(f"double_layers.{i}.attn.{n}") for d, n in joint.items()}
    for i in range(cfg["num_single_dit_layers"]):
        out |= {f"single_transformer_blocks.{i}.attn.{d}": Target(f"single_layers.{i}.attn.{n}") for d, n in single.items()}
    return out


def _z_image_map(family_id: str, cfg: dict) -> dict[str, Target]:
    """ComfyUI's Z-Image map, applied by its Lumina2 model class to Lumina 2 as well (same `dim`-row slices)."""
    dim = _nextdit_dims(family_id, cfg)[0]
    out: dict[str, Target] = {}
    for b in _nextdit_blocks(family_id, cfg):
        for j, x in enumerate("qkv"):
            out[f"{b}.attention.to_{x}"] = Target(f"{b}.attention.qkv", (j * dim, dim))
        out[f"{b}.attention.to_out.0"] = Target(f"{b}.attention.out")
    return out


# ---------------------------------------------------------------- the key map per family

def key_map(family_id: str, cfg: dict) -> tuple[dict[str, Target], Layout]:
    """(LoRA key stem → target, native layout) as ComfyUI would build them for this model."""
    layout, extra = _layout_and_map(family_id, cfg)
    keys: dict[str, Target] = {}
    for native in layout:  # the generic rules every ComfyUI model gets
        keys[f"lora_unet_{_u(native)}"] = Target(native)
        keys[f"diffusion_model.{native}"] = Target(native)
    return keys | extra, layout


def _processor_path(path: str) -> str:
    """The old diffusers attention-processor naming ComfyUI maps for UNets: `attn1.processor.to_q`, `…to_out`."""
    path = path.replace(".to_", ".processor.to_")
    return path[:-2] if path.endswith(".to_out.0") else path


def _layout_and_map(family_id: str, cfg: dict) -> tuple[Layout, dict[str, Target]]:
    if family_id in ("sd1x", "sd2x", "sdxl"):
        layout, to_native = _unet(cfg)
        extra = {f"{p}{_u(d)}": Target(n) for d, n in to_native.items() for p in ("lora_unet_", "lycoris_")}
        extra |= {f"{p}{_processor_path(d)}": Target(n) for d, n in to_native.items() for p in ("", "unet.")}
        return layout, extra
    if family_id == "stable_cascade":
        layout = _stage_c(cfg)
        return layout, {f"lora_prior_unet_{_u(n)}": Target(n) for n in layout}
    if family_id in ("sd3", "auraflow", "flux", "chroma", "flux2"):
        layout = {"sd3": _mmdit, "auraflow": _auraflow}.get(family_id, lambda c: _flux(c, family_id == "flux2"))(cfg)
        mapping = {"sd3": _mmdit_map, "auraflow": _auraflow_map}.get(family_id, _flux_map)(cfg)
        return layout, {f"transformer.{d}": t for d, t in mapping.items()}
    if family_id in ("z_image", "lumina2"):
        mapping = _z_image_map(family_id, cfg)
        return _nextdit(family_id, cfg), {f"{p}{d}": t for d, t in mapping.items()
                                          for p in ("diffusion_model.", "transformer.", "")}
    native = {"qwen_image": _qwen, "hidream": _hidream, "kandinsky5": _kandinsky5, "wan": _wan,
              "ltxvideo": _ltxv, "cosmos": _cosmos}[family_id](cfg)
    prefixes = {"qwen_image": ("", "transformer."), "hidream": ("transformer.",), "kandinsky5": ("", "transformer."),
                "ltxvideo": ("",)}.get(family_id, ())
    return native, {f"{p}{n}": Target(n) for n in native for p in prefixes}


def check_lora_keys(keys: dict[str, tuple[int, ...]], family_id: str, cfg: dict) -> dict[str, str]:
    """Exported key → why ComfyUI would not load it ('' when it would). `keys` maps key → tensor shape."""
    targets, layout = key_map(family_id, cfg)
    problems: dict[str, str] = {}
    for key, shape in keys.items():
        suffix = next((s for s in LORA_SUFFIXES if key.endswith(s)), None)
        if suffix is None:
            problems[key] = "not a LoRA tensor name ComfyUI reads (.lora_down/.lora_up.weight, .alpha)"
            continue
        target = targets.get(key[: -len(suffix)])
        if target is None:
            problems[key] = "not in ComfyUI's key map"
        elif target.weight not in layout:
            problems[key] = f"maps to '{target.weight}', which ComfyUI's model does not have"
        else:
            problems[key] = _shape_problem(key, shape, target, layout[target.weight])
    return problems


def _shape_problem(key: str, shape: tuple[int, ...], target: Target, native: tuple[int, ...]) -> str:
    rows = native[0] if target.rows is None else target.rows[1]
    if target.rows is not None and target.rows[0] + target.rows[1] > native[0]:
        return f"slice {target.rows} lies outside {target.weight} {native}"
    if key.endswith((".lora_up.weight", ".lora_B.weight")) and shape[0] != rows:
        return f"up has {shape[0]} rows, the target {rows}"
    if key.endswith((".lora_down.weight", ".lora_A.weight")) and math.prod(shape[1:]) != math.prod(native[1:]):
        return f"down takes {math.prod(shape[1:])} inputs, the target {math.prod(native[1:])}"
    return ""
