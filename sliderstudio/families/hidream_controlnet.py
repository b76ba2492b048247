"""The HiDream ControlNet SimpleTuner trains, as a diffusers model, and how its residuals reach the transformer.

diffusers has no HiDream ControlNet. SimpleTuner's (`HiDreamControlNetModel`) starts from the
transformer (`from_transformer`): its patch, timestep and pooled embedders and its double- and
single-stream blocks are the transformer's own modules (the blocks keep diffusers'/HiDream's
`HiDreamBlock` wrapper, hence `double_stream_blocks.i.block.*`), its T5 and Llama embedders are the
transformer's last and first caption projections (`t5_embedder.linear.weight`,
`llama_embedder.linear.weight`), and it adds a zero-initialised `controlnet_x_embedder` for the
control latents and one linear residual projection per block (`controlnet_blocks.i`,
`controlnet_single_blocks.i`). `save_pretrained` of that model writes those names with the config
keys of its `__init__`; our class has exactly that layout, so such a folder loads as it is.

What it computes (and we compute): image tokens = x_embedder(noisy patches) + controlnet_x_embedder(
control patches); temb = timestep + pooled embeddings; text = T5 tokens followed by the first two
Llama layers' tokens, all through the two embedders; image tokens at (0, row, column), text at 0 for
the rotary embedding. Each double block's image tokens and each single block's image tokens (image
first in the joined sequence, whose single blocks get an all-zero position) go through that block's
projection, × `conditioning_scale`.

SimpleTuner's HiDream transformer adds double residual min(i // ⌈blocks/residuals⌉, residuals − 1)
to the image tokens after double block `i`, and likewise for the single blocks (image tokens only).
`hidream_residuals` does that to diffusers' transformer with forward hooks (see `residual_hooks`).
"""
from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_hidream_image import (
    HiDreamBlock,
    HiDreamImageEmbedND,
    HiDreamImagePatchEmbed,
    HiDreamImagePooledEmbed,
    HiDreamImageSingleTransformerBlock,
    HiDreamImageTimestepEmbed,
    HiDreamImageTransformerBlock,
    TextProjection,
)
from diffusers.utils import BaseOutput
from torch import nn

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.families.residual_hooks import block_residuals

# SimpleTuner builds its blocks with HiDream's expert counts (the block classes' defaults)
ROUTED_EXPERTS, ACTIVATED_EXPERTS = 4, 2
SHARED_MODULES = ("x_embedder", "t_embedder", "p_embedder", "double_stream_blocks", "single_stream_blocks")


@dataclass
class HiDreamControlNetOutput(BaseOutput):
    controlnet_block_samples: list[torch.Tensor]
    controlnet_single_block_samples: list[torch.Tensor]


class HiDreamControlNetModel(ModelMixin, ConfigMixin):
    """SimpleTuner's HiDream ControlNet (as `from_transformer` builds and `save_pretrained` writes it)."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, patch_size: int = 2, in_channels: int = 64, num_layers: int = 19, num_single_layers: int = 38,
                 attention_head_dim: int = 128, num_attention_heads: int = 20, joint_attention_dim: int = 4096,
                 pooled_projection_dim: int = 2048, guidance_embeds: bool = False, max_seq_length: int = 16384,
                 conditioning_embedding_channels: int | None = None, axes_dims_rope: tuple[int, ...] = (32, 32)):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        self.x_embedder = HiDreamImagePatchEmbed(patch_size, in_channels, dim)
        self.controlnet_x_embedder = _zeroed(nn.Linear(in_channels * patch_size * patch_size, dim))
        self.t5_embedder = TextProjection(joint_attention_dim, dim)
        self.llama_embedder = TextProjection(joint_attention_dim, dim)
        self.t_embedder = HiDreamImageTimestepEmbed(dim)
        self.p_embedder = HiDreamImagePooledEmbed(pooled_projection_dim, dim)
        self.pe_embedder = HiDreamImageEmbedND(theta=10000, axes_dim=list(axes_dims_rope))
        self.double_stream_blocks = nn.ModuleList(
            HiDreamBlock(HiDreamImageTransformerBlock(dim, num_attention_heads, attention_head_dim, ROUTED_EXPERTS,
                                                      ACTIVATED_EXPERTS)) for _ in range(num_layers))
        self.single_stream_blocks = nn.ModuleList(
            HiDreamBlock(HiDreamImageSingleTransformerBlock(dim, num_attention_heads, attention_head_dim,
                                                            ROUTED_EXPERTS, ACTIVATED_EXPERTS))
            for _ in range(num_single_layers))
        self.controlnet_blocks = nn.ModuleList(_zeroed(nn.Linear(dim, dim)) for _ in range(num_layers))
        self.controlnet_single_blocks = nn.ModuleList(_zeroed(nn.Linear(dim, dim)) for _ in range(num_single_layers))
        self.gradient_checkpointing = False

    @classmethod
    def from_transformer(cls, transformer: nn.Module, num_layers: int | None = None,
                         num_single_layers: int | None = None) -> "HiDreamControlNetModel":
        """A ControlNet started from `transformer` (copies of its modules), as SimpleTuner starts one.

        SimpleTuner shares the modules themselves and writes 4096 (HiDream's T5 and Llama width) as
        `joint_attention_dim`; we copy them and take the width from the transformer, the same numbers
        for HiDream-I1.
        """
        cfg = transformer.config
        if (cfg.num_routed_experts, cfg.num_activated_experts) != (ROUTED_EXPERTS, ACTIVATED_EXPERTS):
            raise ConfigError("SimpleTuner's HiDream ControlNet builds its blocks with 4 routed / 2 activated "
                              f"experts; this transformer has {cfg.num_routed_experts} / {cfg.num_activated_experts}",
                              key="num_routed_experts")
        if len(set(cfg.caption_channels)) != 1:
            raise ConfigError("SimpleTuner's HiDream ControlNet needs T5 and Llama states of one width",
                              key="caption_channels", value=str(cfg.caption_channels))
        controlnet = cls(patch_size=cfg.patch_size, in_channels=cfg.in_channels,
                         num_layers=len(transformer.double_stream_blocks) if num_layers is None else num_layers,
                         num_single_layers=(len(transformer.single_stream_blocks) if num_single_layers is None
                                            else num_single_layers),
                         attention_head_dim=cfg.attention_head_dim, num_attention_heads=cfg.num_attention_heads,
                         joint_attention_dim=cfg.caption_channels[0], pooled_projection_dim=cfg.text_emb_dim,
                         axes_dims_rope=tuple(cfg.axes_dims_rope))
        for name in SHARED_MODULES:
            ours, theirs = getattr(controlnet, name), getattr(transformer, name)
            if isinstance(ours, nn.ModuleList):
                for block, source in zip(ours, theirs):
                    block.load_state_dict(source.state_dict())
            else:
                ours.load_state_dict(theirs.state_dict())
        controlnet.t5_embedder.load_state_dict(transformer.caption_projection[-1].state_dict())
        controlnet.llama_embedder.load_state_dict(transformer.caption_projection[0].state_dict())
        return controlnet

    def forward(self, hidden_states: torch.Tensor, controlnet_cond: torch.Tensor, timesteps: torch.Tensor,
                t5_hidden_states: torch.Tensor, llama_hidden_states: torch.Tensor, pooled_embeds: torch.Tensor,
                img_sizes: Any = None, img_ids: Any = None, conditioning_scale: float = 1.0,
                return_dict: bool = True) -> Any:
        """Residuals for the double blocks and the single blocks (image tokens, (B, S, dim)), × the scale."""
        b, _, h, w = hidden_states.shape
        p = self.config.patch_size
        tokens = (h // p) * (w // p)
        image = self.x_embedder(patchify(hidden_states, p)) + self.controlnet_x_embedder(patchify(controlnet_cond, p))
        temb = self.t_embedder(timesteps, image.dtype) + self.p_embedder(pooled_embeds)
        text = torch.cat([self.t5_embedder(t5_hidden_states)]
                         + [self.llama_embedder(layer) for layer in first_llama_layers(llama_hidden_states)], dim=1)
        rope = self.pe_embedder(torch.cat([image_positions(b, h // p, w // p, image.device),
                                           torch.zeros(b, text.shape[1], 3, device=image.device)], dim=1))
        double = []
        for block in self.double_stream_blocks:
            image, text = self._run(block, image, None, text, temb, rope)
            double.append(image)
        joined = torch.cat([image, text], dim=1)
        still = self.pe_embedder(torch.zeros(b, joined.shape[1], 3, device=image.device))
        single = []
        for block in self.single_stream_blocks:
            joined = self._run(block, joined, None, None, temb, still)
            single.append(joined[:, :tokens])
        double = [proj(s) * conditioning_scale for proj, s in zip(self.controlnet_blocks, double)]
        single = [proj(s) * conditioning_scale for proj, s in zip(self.controlnet_single_blocks, single)]
        return HiDreamControlNetOutput(double, single) if return_dict else (double, single)

    def _run(self, block: nn.Module, *args: Any) -> Any:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, *args)
        return block(*args)


def _zeroed(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def patchify(latents: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) → (B, H/p·W/p, p·p·C), row-major patches, each patch's pixels before channels."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def first_llama_layers(llama: torch.Tensor) -> list[torch.Tensor]:
    """The first two Llama layers' states: layer-first (L, B, S, D) or batch-first (B, L, 1, S, D) as SimpleTuner."""
    if llama.dim() == 5:
        llama = llama.squeeze(2).transpose(0, 1)
    elif llama.dim() != 4:
        raise ValueError(f"Llama states of shape {tuple(llama.shape)}: expected 4 or 5 dimensions")
    return [llama[i] for i in range(min(2, llama.shape[0]))]


def image_positions(batch: int, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    ids = torch.zeros(rows, cols, 3, device=device)
    ids[..., 1] = torch.arange(rows, device=device)[:, None]
    ids[..., 2] = torch.arange(cols, device=device)[None, :]
    return ids.reshape(1, rows * cols, 3).repeat(batch, 1, 1)


def residual_index(block: int, blocks: int, residuals: int) -> int:
    """SimpleTuner: min(block // ⌈blocks / residuals⌉, residuals − 1)."""
    return min(block // math.ceil(blocks / residuals), residuals - 1)


def hidream_residuals(transformer: nn.Module, double: Sequence[torch.Tensor],
                      single: Sequence[torch.Tensor]) -> AbstractContextManager:
    """While inside, diffusers' HiDream transformer adds the residuals after its blocks as SimpleTuner's does."""
    edits = []
    for blocks, samples, is_double in ((transformer.double_stream_blocks, double, True),
                                       (transformer.single_stream_blocks, single, False)):
        if samples:
            edits += [(block, _add_to_image(samples[residual_index(i, len(blocks), len(samples))], is_double))
                      for i, block in enumerate(blocks)]
    return block_residuals(edits)


def _add_to_image(residual: torch.Tensor, double: bool) -> Any:
    """Double blocks return (image, text); single blocks the joined sequence, image tokens first."""
    def edit(output: Any) -> Any:
        if double:
            image, text = output
            return image + residual, text
        n = residual.shape[1]
        return torch.cat([output[:, :n] + residual, output[:, n:]], dim=1)

    return edit


def controlnet_samples(controlnet: nn.Module, hidden_states: torch.Tensor, timesteps: torch.Tensor,
                       t5: torch.Tensor, llama: torch.Tensor, pooled: torch.Tensor, control: torch.Tensor,
                       scale: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The ControlNet's residuals for one transformer call (control repeated over a CFG-doubled batch)."""
    if control.shape[0] != hidden_states.shape[0]:
        control = control.repeat(hidden_states.shape[0] // control.shape[0], 1, 1, 1)
    dtype = controlnet.dtype
    return controlnet(hidden_states=hidden_states.to(dtype), controlnet_cond=control.to(hidden_states.device, dtype),
                      timesteps=timesteps, t5_hidden_states=t5.to(dtype), llama_hidden_states=llama.to(dtype),
                      pooled_embeds=pooled.to(dtype), conditioning_scale=scale, return_dict=False)
