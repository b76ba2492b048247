"""The AuraFlow ControlNet SimpleTuner trains, as a diffusers model, and how its residuals reach the transformer.

diffusers has no AuraFlow ControlNet. SimpleTuner's (`AuraFlowControlNetModel`, saved with
`save_pretrained`) is a truncated copy of the transformer: the same patch embedding, timestep and
caption embedders, register tokens and joint/single blocks, plus one linear `controlnet_blocks.i`
per block that turns that block's image tokens into a residual. Our class keeps its config keys
and parameter names and shapes, so such a folder loads as it is, and computes the same residuals:

- `num_layers` (optional) keeps int(num_layers · joint/(joint + single)) joint blocks, the rest single;
- the control latents enter only through `pos_embed_input`, a zero-initialised patch embedding that
  exists when `extra_conditioning_channels` > 0 and reads `in_channels + extra` channels. Without it
  (SimpleTuner's default, `from_transformer` with no extra channels) the ControlNet does not read the
  control image at all: its residuals depend on the noisy latents, timestep and prompt only;
- every residual is scaled by `conditioning_scale`.

SimpleTuner's AuraFlow transformer adds residual `i // interval` (interval = transformer blocks //
residuals) to the image tokens after block `i`, counting joint blocks first, then single blocks
(whose text tokens get nothing). `auraflow_residuals` does that to diffusers' transformer with
forward hooks (see `residual_hooks`).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from diffusers.models.transformers.auraflow_transformer_2d import (
    AuraFlowJointTransformerBlock,
    AuraFlowPatchEmbed,
    AuraFlowSingleTransformerBlock,
)
from torch import nn

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.families.residual_hooks import block_residuals

# what a SimpleTuner AuraFlow ControlNet shares with the transformer it was made from
SHARED_MODULES = ("pos_embed", "time_step_embed", "time_step_proj", "context_embedder")


def split_layers(num_layers: int | None, joint: int, single: int) -> tuple[int, int]:
    """(joint, single) block counts: all of the transformer's, or `num_layers` split in its proportion."""
    if num_layers is None:
        return joint, single
    kept_joint = int(num_layers * joint / (joint + single))
    return kept_joint, num_layers - kept_joint


@dataclass
class AuraFlowControlNetOutput(BaseOutput):
    controlnet_block_samples: list[torch.Tensor]


class AuraFlowControlNetModel(ModelMixin, ConfigMixin):
    """SimpleTuner's AuraFlow ControlNet: same `config.json` keys, same parameter names and shapes."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["AuraFlowJointTransformerBlock", "AuraFlowSingleTransformerBlock", "AuraFlowPatchEmbed"]

    @register_to_config
    def __init__(self, sample_size: int = 64, patch_size: int = 2, in_channels: int = 4, num_mmdit_layers: int = 4,
                 num_single_dit_layers: int = 32, attention_head_dim: int = 256, num_attention_heads: int = 12,
                 joint_attention_dim: int = 2048, caption_projection_dim: int = 3072, out_channels: int = 4,
                 pos_embed_max_size: int = 1024, num_layers: int | None = None,
                 extra_conditioning_channels: int = 0):
        super().__init__()
        dim = num_attention_heads * attention_head_dim
        joint, single = split_layers(num_layers, num_mmdit_layers, num_single_dit_layers)
        self.pos_embed = self._patch_embed(in_channels)
        self.context_embedder = nn.Linear(joint_attention_dim, caption_projection_dim, bias=False)
        self.time_step_embed = Timesteps(num_channels=256, downscale_freq_shift=0, scale=1000, flip_sin_to_cos=True)
        self.time_step_proj = TimestepEmbedding(in_channels=256, time_embed_dim=dim)
        self.joint_transformer_blocks = nn.ModuleList(
            AuraFlowJointTransformerBlock(dim, num_attention_heads, attention_head_dim) for _ in range(joint))
        self.single_transformer_blocks = nn.ModuleList(
            AuraFlowSingleTransformerBlock(dim, num_attention_heads, attention_head_dim) for _ in range(single))
        self.controlnet_blocks = nn.ModuleList(_zeroed(nn.Linear(dim, dim)) for _ in range(joint + single))
        self.pos_embed_input = (_zeroed(self._patch_embed(in_channels + extra_conditioning_channels))
                                if extra_conditioning_channels > 0 else None)
        self.register_tokens = nn.Parameter(torch.randn(1, 8, dim) * 0.02)
        self.gradient_checkpointing = False

    def _patch_embed(self, channels: int) -> AuraFlowPatchEmbed:
        cfg = self.config
        return AuraFlowPatchEmbed(height=cfg.sample_size, width=cfg.sample_size, patch_size=cfg.patch_size,
                                  in_channels=channels, embed_dim=cfg.num_attention_heads * cfg.attention_head_dim,
                                  pos_embed_max_size=cfg.pos_embed_max_size)

    @classmethod
    def from_transformer(cls, transformer: nn.Module, num_layers: int | None = None,
                         num_extra_conditioning_channels: int = 0,
                         load_weights_from_transformer: bool = True) -> "AuraFlowControlNetModel":
        """A ControlNet started from `transformer` (its first blocks), as SimpleTuner starts one."""
        keys = ("sample_size", "patch_size", "in_channels", "num_mmdit_layers", "num_single_dit_layers",
                "attention_head_dim", "num_attention_heads", "joint_attention_dim", "caption_projection_dim",
                "out_channels", "pos_embed_max_size")
        controlnet = cls(**{k: transformer.config[k] for k in keys}, num_layers=num_layers,
                         extra_conditioning_channels=num_extra_conditioning_channels)
        if load_weights_from_transformer:
            for name in SHARED_MODULES:
                getattr(controlnet, name).load_state_dict(getattr(transformer, name).state_dict())
            controlnet.register_tokens.data.copy_(transformer.register_tokens.data)
            for ours, theirs in ((controlnet.joint_transformer_blocks, transformer.joint_transformer_blocks),
                                 (controlnet.single_transformer_blocks, transformer.single_transformer_blocks)):
                for block, source in zip(ours, theirs):
                    block.load_state_dict(source.state_dict())
        return controlnet

    def forward(self, hidden_states: torch.Tensor, controlnet_cond: torch.Tensor, conditioning_scale: float = 1.0,
                encoder_hidden_states: torch.Tensor | None = None, timestep: torch.Tensor | None = None,
                attention_kwargs: dict[str, Any] | None = None, return_dict: bool = True) -> Any:
        """One residual per block (image tokens, (B, S, dim)), joint blocks first, each × `conditioning_scale`."""
        image = self.pos_embed(hidden_states)
        if self.pos_embed_input is not None:
            image = image + self.pos_embed_input(controlnet_cond)
        temb = self.time_step_proj(self.time_step_embed(timestep).to(dtype=next(self.parameters()).dtype))
        text = self.context_embedder(encoder_hidden_states)
        text = torch.cat([self.register_tokens.repeat(text.shape[0], 1, 1).to(text.dtype), text], dim=1)
        per_block = []
        for block in self.joint_transformer_blocks:
            text, image = self._run(block, hidden_states=image, encoder_hidden_states=text, temb=temb,
                                    attention_kwargs=attention_kwargs)
            per_block.append(image)
        if len(self.single_transformer_blocks):
            joined = torch.cat([text, image], dim=1)
            for block in self.single_transformer_blocks:
                joined = self._run(block, hidden_states=joined, temb=temb, attention_kwargs=attention_kwargs)
                per_block.append(joined[:, text.shape[1]:])
        samples = [proj(s) * conditioning_scale for proj, s in zip(self.controlnet_blocks, per_block)]
        return AuraFlowControlNetOutput(samples) if return_dict else (samples,)

    def _run(self, block: nn.Module, **kwargs: Any) -> Any:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(lambda: block(**kwargs))
        return block(**kwargs)


def _zeroed(module: nn.Module) -> nn.Module:
    """SimpleTuner zero-initialises the residual projections and the control input embedding."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def residual_index(block: int, total_blocks: int, residuals: int) -> int:
    """Which residual goes after transformer block `block` (SimpleTuner: block // (total // residuals))."""
    interval = total_blocks // residuals if residuals else 0
    if interval == 0 or (total_blocks - 1) // interval >= residuals:
        raise ConfigError(f"a ControlNet with {residuals} residual blocks does not fit a transformer with "
                          f"{total_blocks} blocks (SimpleTuner's rule, residual = block // (transformer blocks // "
                          "ControlNet blocks), must give every block one)", key="controlnet_model_name_or_path")
    return block // interval


def check_fits(transformer: nn.Module, controlnet: nn.Module) -> None:
    """Refuse, before any step runs, a ControlNet this transformer and its conditioning cannot drive.

    With `extra_conditioning_channels` its `pos_embed_input` wants in_channels + extra channels, but
    the conditioning is the VAE's in_channels latents (SimpleTuner's trainer insists on that too).
    """
    extra = controlnet.config.extra_conditioning_channels
    if extra:
        raise ConfigError(f"this AuraFlow ControlNet reads {controlnet.config.in_channels} + {extra} conditioning "
                          f"channels, but the control image gives {controlnet.config.in_channels} VAE latent channels",
                          key="controlnet_model_name_or_path")
    total = len(transformer.joint_transformer_blocks) + len(transformer.single_transformer_blocks)
    residual_index(total - 1, total, len(controlnet.controlnet_blocks))


def auraflow_residuals(transformer: nn.Module, samples: Sequence[torch.Tensor]) -> AbstractContextManager:
    """While inside, diffusers' AuraFlow transformer adds `samples` after its blocks as SimpleTuner's does."""
    joint, single = list(transformer.joint_transformer_blocks), list(transformer.single_transformer_blocks)
    total = len(joint) + len(single)
    edits = [(block, _add_to_image(samples[residual_index(i, total, len(samples))], joint=True))
             for i, block in enumerate(joint)]
    edits += [(block, _add_to_image(samples[residual_index(len(joint) + i, total, len(samples))], joint=False))
              for i, block in enumerate(single)]
    return block_residuals(edits)


def _add_to_image(residual: torch.Tensor, joint: bool) -> Any:
    """Joint blocks return (text, image); single blocks the joined (text + image) sequence."""
    def edit(output: Any) -> Any:
        if joint:
            text, image = output
            return text, image + residual
        n = residual.shape[1]
        return torch.cat([output[:, :-n], output[:, -n:] + residual], dim=1)

    return edit


def controlnet_samples(controlnet: nn.Module, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                       timestep: torch.Tensor, control: torch.Tensor, scale: float) -> list[torch.Tensor]:
    """The ControlNet's residuals for one transformer call (control repeated over a CFG-doubled batch)."""
    if control.shape[0] != hidden_states.shape[0]:
        control = control.repeat(hidden_states.shape[0] // control.shape[0], 1, 1, 1)
    return controlnet(hidden_states=hidden_states, controlnet_cond=control.to(hidden_states.device, controlnet.dtype),
                      conditioning_scale=scale, encoder_hidden_states=encoder_hidden_states, timestep=timestep,
                      return_dict=False)[0]
