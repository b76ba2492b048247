"""Module-name pieces that mark a denoiser's text path, which a slider must never touch (SPEC §1).

The markers are family knowledge: each family carries its own tuple (`Family.text_path_markers`).
Most families reuse diffusers' own names for the caption stream (cross-attention `attn2`, the joint
blocks' `add_*_proj`, the context embedder), so those are the default, and a family whose caption
path has names of its own (Wan's image embedder, Stable Cascade's CLIP mappers, HiDream's `_t`
stream, …) adds them in its module. A marker is tested against ".<module path>." so one with dots on
both sides matches whole path segments only.
"""
from __future__ import annotations

# diffusers' names for the caption path, shared by the UNet and most transformer families
DIFFUSERS_TEXT_PATH: tuple[str, ...] = (
    "attn2.", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "context_refiner", "text_encoder",
    "context_embedder", "add_embedding", "cross_attention", ".text_embedder.")


def on_text_path(name: str, markers: tuple[str, ...]) -> bool:
    """Whether the dotted module path `name` contains one of `markers` (see the module docstring)."""
    return any(marker in f".{name}." for marker in markers)
