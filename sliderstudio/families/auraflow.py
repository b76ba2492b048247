"""AuraFlow: an MMDiT conditioned on UMT5, flow matching on unpacked latents with σ as the timestep.

The transformer patchifies internally (latents stay (B, C, H, W)); the pipeline zeroes the T5
embeddings of padding tokens itself, so the cached prompt embeddings are all the model needs. Its
joint blocks keep the text stream in `add_*`/`to_add_out`; the single blocks, as in Flux, run one
set of projections over the joined text + image sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning
from sliderstudio.families.controlnet_support import ControlledDenoiser, ControlNetSupport
from sliderstudio.families.flow_transformer import TransformerFlowFamily


class ControlledAuraFlow(ControlledDenoiser):
    """AuraFlow transformer + SimpleTuner's AuraFlow ControlNet, called like the transformer.

    As SimpleTuner's ControlNet training step: the ControlNet sees the same noisy latents, prompt
    embeddings and timestep; its residuals are added after the transformer's blocks for this call only.
    """

    def __init__(self, denoiser: torch.nn.Module, controlnet: torch.nn.Module, scale: float = 1.0):
        from sliderstudio.families.auraflow_controlnet import check_fits

        check_fits(denoiser, controlnet)
        super().__init__(denoiser, controlnet, scale)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, timestep: torch.Tensor,
                return_dict: bool = False, **kwargs: Any) -> Any:
        from sliderstudio.families.auraflow_controlnet import auraflow_residuals, controlnet_samples

        samples = controlnet_samples(self.controlnet, hidden_states, encoder_hidden_states, timestep,
                                     self.control(), self.scale)
        with auraflow_residuals(self.denoiser, samples):
            return self.denoiser(hidden_states, encoder_hidden_states=encoder_hidden_states, timestep=timestep,
                                 return_dict=return_dict, **kwargs)


def _control_latents(pipe: Any, controlnet: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    from sliderstudio.families.auraflow_control_pipeline import auraflow_control_latents

    return auraflow_control_latents(pipe, controlnet, pixels)


AURAFLOW_CONTROLNET = ControlNetSupport(
    "sliderstudio.families.auraflow_controlnet.AuraFlowControlNetModel",
    "sliderstudio.families.auraflow_control_pipeline.AuraFlowControlNetPipeline", ControlledAuraFlow,
    image_kwarg="control_image", encode=_control_latents, tag=lambda controlnet: "latents")


@dataclass
class AuraFlowFamily(TransformerFlowFamily):
    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        device = pipe.text_encoder.device
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, *_ = pipe.encode_prompt(prompt=prompt, do_classifier_free_guidance=False,
                                                num_images_per_prompt=1, device=device)
                out.append(Conditioning({"encoder_hidden_states": embeds.cpu()}))
        return out

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        """AuraFlow's timestep is σ in [0, 1] (1 = pure noise), as its pipeline passes t / 1000."""
        return denoiser(noisy, encoder_hidden_states=cond.kwargs["encoder_hidden_states"],
                        timestep=timesteps.to(noisy.dtype) / 1000, return_dict=False)[0]

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        return build_tiny_auraflow(out_dir, seed)


def tiny_auraflow_transformer(seed: int = 0):
    """Two joint (MMDiT) blocks and two single blocks, 2 heads of 8 dims, 4 latent channels."""
    from diffusers import AuraFlowTransformer2DModel

    torch.manual_seed(seed)
    return AuraFlowTransformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_mmdit_layers=2,
                                      num_single_dit_layers=2, attention_head_dim=8, num_attention_heads=2,
                                      joint_attention_dim=32, caption_projection_dim=16, pos_embed_max_size=64)


def build_tiny_auraflow(out_dir: str | Path, seed: int = 0) -> Path:
    from diffusers import AuraFlowPipeline, FlowMatchEulerDiscreteScheduler

    from sliderstudio.families.tiny_parts import flow_vae, t5_encoder, t5_tokenizer

    pipe = AuraFlowPipeline(transformer=tiny_auraflow_transformer(seed), scheduler=FlowMatchEulerDiscreteScheduler(),
                            vae=flow_vae(scaling_factor=0.13025, shift_factor=None, seed=seed),
                            text_encoder=t5_encoder(32, seed + 1, umt5=True), tokenizer=t5_tokenizer())
    out = Path(out_dir)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


AURAFLOW = AuraFlowFamily(id="auraflow", label="AuraFlow", pipeline_class_name="AuraFlowPipeline",
                          transformer_class_name="AuraFlowTransformer2DModel",
                          aliases=("aura_flow", "aura-flow", "aura"), flavours=("v0.3",),
                          controlnet=AURAFLOW_CONTROLNET, single_file_types={"auraflow": None})
FAMILIES = (AURAFLOW,)
