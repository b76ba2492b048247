"""Every family's ComfyUI export at full size: each key is one ComfyUI's loader maps, nothing is dropped.

For each of the 17 families the real model's denoiser is built on the meta device from its published
config (tests/full_size_configs.py), the slider preset (and the ordinary LoRA 'default' preset) is
resolved on it, and the adapter our trainer would save is made as meta tensors with the PEFT names and
shapes (rank 4). `to_comfyui` converts it; tests/comfy_rules.py, an independent restatement of
ComfyUI's key map over ComfyUI's own module layout of that model, says for every exported key whether
ComfyUI would load it: in the map, target weight present, shapes fitting the weight or its slice.
"""
from __future__ import annotations

import math
import re

import pytest
import torch

from comfy_rules import check_lora_keys, key_map
from full_size_configs import MODELS, config_of, write_model_folder
from sliderstudio.engine.export import to_comfyui
from sliderstudio.adapters.targets import resolve_on_module
from sliderstudio.families.registry import FAMILIES, get_family

RANK, ALPHA = 4, 8.0
# modules per preset on the full-size models: a change in a preset or a config shows up here
MODULES = {"sd1x": (99, 128), "sd2x": (99, 128), "sdxl": (305, 560), "sd3": (100, 191), "flux": (190, 342),
           "flux2": (128, 32), "chroma": (190, 342), "auraflow": (144, 144), "z_image": (128, 136),
           "lumina2": (112, 120), "qwen_image": (241, 480), "hidream": (192, 256), "kandinsky5": (128, 264),
           "wan": (165, 320), "ltxvideo": (117, 224), "cosmos": (116, 224), "stable_cascade": (322, 256)}


@pytest.fixture(scope="module")
def skeletons(tmp_path_factory):
    root = tmp_path_factory.mktemp("full-size")
    cache: dict[str, torch.nn.Module] = {}

    def build(family_id: str) -> torch.nn.Module:
        if family_id not in cache:
            cache[family_id] = get_family(family_id).skeleton(write_model_folder(family_id, root))
        return cache[family_id]
    return build


def peft_tensors(denoiser: torch.nn.Module, prefix: str, names: list[str]) -> dict[str, torch.Tensor]:
    """The keys and shapes PEFT gives a rank-4 LoRA on these modules (Linear, or Conv with a k×k lora_A)."""
    out = {}
    for name in names:
        layer = denoiser.get_submodule(name)
        weight = layer.weight
        if isinstance(layer, torch.nn.Linear):
            down, up = (RANK, weight.shape[1]), (weight.shape[0], RANK)
        else:
            down, up = (RANK, *weight.shape[1:]), (weight.shape[0], RANK, *[1] * (weight.dim() - 2))
        out[f"{prefix}.{name}.lora_A.weight"] = torch.empty(down, device="meta")
        out[f"{prefix}.{name}.lora_B.weight"] = torch.empty(up, device="meta")
    return out


def export(family_id: str, denoiser: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    family = get_family(family_id)
    tensors = peft_tensors(denoiser, family.denoiser_name, names)
    comfy, notes = to_comfyui(tensors, {"family": family_id, "lora_adapter_metadata": {"lora_alpha": ALPHA}}, family)
    assert notes == []
    return comfy


def test_every_family_has_a_full_size_config():
    assert sorted(MODELS) == sorted(FAMILIES) == sorted(MODULES)


@pytest.mark.parametrize("preset", ["slider", "default"])
@pytest.mark.parametrize("family_id", sorted(MODELS))
def test_full_size_export_loads_every_key_in_comfyui(skeletons, family_id, preset):
    denoiser = skeletons(family_id)
    names = resolve_on_module(denoiser, get_family(family_id).presets[preset]).module_names
    assert len(names) == MODULES[family_id][preset == "default"]
    comfy = export(family_id, denoiser, names)
    problems = check_lora_keys({k: tuple(v.shape) for k, v in comfy.items()}, family_id, config_of(family_id))
    assert {k: why for k, why in problems.items() if why} == {}
    assert len(problems) == len(comfy)
    stems = {k[: -len(".lora_down.weight")] for k in comfy if k.endswith(".lora_down.weight")}
    assert set(comfy) == {f"{s}{suffix}" for s in stems for suffix in (".lora_down.weight", ".lora_up.weight", ".alpha")}
    # no silent drop: every adapted module is a rank-4 block of some exported LoRA, and alpha / rank is kept
    assert sum(comfy[f"{s}.lora_down.weight"].shape[0] for s in stems) == RANK * len(names)
    for s in stems:
        parts = comfy[f"{s}.lora_down.weight"].shape[0] // RANK
        assert comfy[f"{s}.lora_up.weight"].shape[1] == RANK * parts
        assert comfy[f"{s}.alpha"].item() / (RANK * parts) == ALPHA / RANK
    # no two keys patch the same native weight rows
    targets, _ = key_map(family_id, config_of(family_id))
    assert len({targets[s] for s in stems}) == len(stems)


def test_lumina2_q_k_v_become_one_lora_on_the_fused_qkv_weight(skeletons):
    """Lumina 2 has 24 query but 8 key/value heads: ComfyUI's equal three-way qkv slices would not fit."""
    denoiser = skeletons("lumina2")
    comfy = export("lumina2", denoiser, ["layers.3.attn.to_q", "layers.3.attn.to_k", "layers.3.attn.to_v",
                                         "layers.3.attn.to_out.0"])
    assert sorted(comfy) == [f"diffusion_model.layers.3.attention.{w}.{t}" for w in ("out", "qkv")
                             for t in ("alpha", "lora_down.weight", "lora_up.weight")]
    assert comfy["diffusion_model.layers.3.attention.qkv.lora_up.weight"].shape == (2304 + 768 + 768, 3 * RANK)
    assert comfy["diffusion_model.layers.3.attention.qkv.lora_down.weight"].shape == (3 * RANK, 2304)
    assert comfy["diffusion_model.layers.3.attention.qkv.alpha"].item() == 3 * ALPHA
    # the Z-Image-style names ComfyUI's Lumina2 map accepts would patch rows that are not there
    wrong = {"transformer.layers.3.attention.to_k.lora_up.weight": (768, RANK)}
    assert "outside" in check_lora_keys(wrong, "lumina2", config_of("lumina2"))[
        "transformer.layers.3.attention.to_k.lora_up.weight"]


@pytest.mark.parametrize("family_id", ["wan", "cosmos", "lumina2", "ltxvideo", "stable_cascade"])
def test_the_rules_reject_diffusers_paths_where_comfyui_uses_its_own_names(skeletons, family_id):
    """The checker can fail: the former export (`diffusion_model.<diffusers path>`) misses exactly the
    modules that the family's naming renames (e.g. LTX-Video's proj_in and time_embed)."""
    family = get_family(family_id)
    denoiser = skeletons(family_id)
    names = resolve_on_module(denoiser, family.presets["slider"]).module_names
    keys = {f"diffusion_model.{n}.lora_up.weight": (1, RANK) for n in names}
    problems = check_lora_keys(keys, family_id, config_of(family_id))
    missed = {k[len("diffusion_model."):-len(".lora_up.weight")] for k, why in problems.items()
              if why == "not in ComfyUI's key map"}
    renamed = {n for n in names if any(re.fullmatch(r.pattern, n) for r in family.comfy.rules)}
    assert missed == renamed and renamed


@pytest.mark.parametrize("family_id", ["sd1x", "sdxl"])
def test_the_diffusers_file_of_a_unet_slider_loses_its_attention_keys_in_comfyui(skeletons, family_id):
    """Why the ComfyUI file is written by default: ComfyUI maps diffusers UNet LoRA keys only in the old
    attention-processor naming (`attn1.processor.to_q`), so the diffusers file loads just its convs/projections."""
    denoiser = skeletons(family_id)
    names = resolve_on_module(denoiser, get_family(family_id).presets["slider"]).module_names
    tensors = peft_tensors(denoiser, "unet", names)
    problems = check_lora_keys({k: tuple(v.shape) for k, v in tensors.items()}, family_id, config_of(family_id))
    lost = {k for k, why in problems.items() if why}
    attention = {k for k in problems if ".attn1." in k}
    assert lost == attention and len(attention) == 2 * sum(".attn1." in n for n in names) > 0


def test_full_size_shapes_follow_the_published_configs(skeletons):
    """Spot checks that the restated layouts are the real models' (numbers from the published configs)."""
    _, flux = key_map("flux", config_of("flux"))
    assert flux["double_blocks.0.img_attn.qkv"] == (9216, 3072) and flux["single_blocks.37.linear1"] == (21504, 3072)
    _, sd3 = key_map("sd3", config_of("sd3"))
    assert sd3["joint_blocks.12.x_block.attn2.qkv"] == (4608, 1536) and "joint_blocks.13.x_block.attn2.qkv" not in sd3
    _, wan = key_map("wan", config_of("wan"))
    assert wan["patch_embedding"] == (5120, 16, 1, 2, 2) and wan["time_projection.1"] == (30720, 5120)
    assert math.prod(skeletons("wan").patch_embedding.weight.shape) == math.prod(wan["patch_embedding"])
