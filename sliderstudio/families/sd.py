"""UNet families: SD 1.x, SD 2.x (ε or v-prediction) and SDXL."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sliderstudio.families.base import Conditioning, Family
from sliderstudio.families.comfy_naming import UNET_KEYS, ComfyNaming
from sliderstudio.families.controlnet_support import ControlledDenoiser, ControlNetSupport
from sliderstudio.families.folder_configs import component_config


class ControlledUNet(ControlledDenoiser):
    """UNet + ControlNet behind the UNet's call: the ControlNet's residuals go into the UNet's blocks."""

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                added_cond_kwargs: dict | None = None, return_dict: bool = False, **kwargs: Any) -> Any:
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                    controlnet_cond=self.control(), conditioning_scale=self.scale,
                                    added_cond_kwargs=added_cond_kwargs, return_dict=False)
        return self.denoiser(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                             added_cond_kwargs=added_cond_kwargs, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid, return_dict=return_dict, **kwargs)


@dataclass
class UNetFamily(Family):
    """Stable Diffusion UNet models; SDXL adds pooled text embeddings and size/crop time ids."""

    xl: bool = False
    comfy: ComfyNaming = UNET_KEYS
    comfy_lycoris: bool = True  # ComfyUI's UNet map takes `lycoris_<diffusers path>` keys
    size_alignment: int = 8  # the UNet takes any latent size (VAE ×8); no patches
    #: The UNet's cross_attention_dim (its text width): what tells an SD 1.x folder from an SD 2.x one,
    #: which both say StableDiffusionPipeline.
    text_width: int | None = None

    def folder_evidence(self, folder: Path) -> str | None:
        """The text width when the UNet's config has one of the UNet families' widths; else (no width, or
        a custom one) the scheduler's prediction type (v-prediction only ever means the family that has a
        v-prediction flavour)."""
        width = component_config(folder, "unet").get("cross_attention_dim")
        if width == self.text_width:
            return f"cross_attention_dim {width}"
        if width in UNET_TEXT_WIDTHS:  # another UNet family's width
            return None
        v_pred = component_config(folder, "scheduler").get("prediction_type") == "v_prediction"
        if v_pred == ("v-prediction" in self.flavours):
            return "v-prediction" if v_pred else "ε-prediction"
        return None

    def folder_flavour(self, folder: Path) -> str | None:
        """SD 2.x's flavour is its scheduler's prediction type; the other UNet families have none."""
        if "v-prediction" not in self.flavours:
            return None
        v_pred = component_config(folder, "scheduler").get("prediction_type") == "v_prediction"
        return "v-prediction" if v_pred else "epsilon"

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        from diffusers import UNet2DConditionModel

        config = UNet2DConditionModel.load_config(str(model_dir), subfolder="unet")
        with torch.device("meta"):
            return UNet2DConditionModel.from_config(config)

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        device = pipe.text_encoder.device
        out = []
        with torch.no_grad():
            for prompt in prompts:
                if self.xl:
                    embeds, _, pooled, _ = pipe.encode_prompt(
                        prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False)
                    out.append(Conditioning({"encoder_hidden_states": embeds.cpu(), "text_embeds": pooled.cpu()}))
                else:
                    embeds, _ = pipe.encode_prompt(prompt, device, 1, False)
                    out.append(Conditioning({"encoder_hidden_states": embeds.cpu()}))
        return out

    def collate(self, conds: list[Conditioning], device: torch.device, dtype: torch.dtype,
                image_size: int | tuple[int, int]) -> Conditioning:
        batch = super().collate(conds, device, dtype, image_size)
        if self.xl:
            # original size, crop top-left, target size (h, w): the training size of this aspect bucket.
            h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
            ids = torch.tensor([h, w, 0, 0, h, w], dtype=dtype)
            batch.kwargs["time_ids"] = ids.repeat(len(conds), 1).to(device)
        return batch

    def encode_images(self, pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
        vae = pipe.vae
        with torch.no_grad():
            dist = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist
            latents = dist.mode()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((latents - shift) * vae.config.scaling_factor).float().cpu()

    def noise_schedule(self, pipe: Any, prediction: str | None = None, image_size: int | None = None) -> Any:
        from diffusers import DDPMScheduler

        schedule = DDPMScheduler.from_config(pipe.scheduler.config)
        if prediction in ("epsilon", "v_prediction"):
            schedule.register_to_config(prediction_type=prediction)
        return schedule

    def sample_timesteps(self, schedule: Any, batch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, schedule.config.num_train_timesteps, (batch,), generator=generator).long()

    def noisy_and_target(self, schedule: Any, latents: torch.Tensor, noise: torch.Tensor,
                         timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noisy = schedule.add_noise(latents, noise, timesteps)
        if schedule.config.prediction_type == "v_prediction":
            return noisy, schedule.get_velocity(latents, noise, timesteps)
        return noisy, noise

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        kwargs = {"encoder_hidden_states": cond.kwargs["encoder_hidden_states"]}
        if self.xl:
            kwargs["added_cond_kwargs"] = {"text_embeds": cond.kwargs["text_embeds"],
                                           "time_ids": cond.kwargs["time_ids"]}
        return denoiser(noisy, timesteps, return_dict=False, **kwargs)[0]

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        from sliderstudio.families.tiny import build_tiny_sd

        prediction = "v_prediction" if self.id == "sd2x" else "epsilon"
        return build_tiny_sd(out_dir, "sdxl" if self.xl else "sd1x", prediction, seed)

    def default_size(self, pipe: Any) -> int:
        return int(pipe.unet.config.sample_size * pipe.vae_scale_factor)


#: Folders saved by these hold an SD 1.x or 2.x UNet alike (the text width tells which).
_SD_RELATED = ("StableDiffusionControlNetPipeline", "StableDiffusionImg2ImgPipeline")
SD1X = UNetFamily(id="sd1x", label="Stable Diffusion 1.x", pipeline_class_name="StableDiffusionPipeline",
                  aliases=("sd1", "sd15", "sd1.5", "legacy"), lycoris_group="sd1x",
                  controlnet=ControlNetSupport("ControlNetModel", "StableDiffusionControlNetPipeline", ControlledUNet),
                  related_pipelines=_SD_RELATED, text_width=768,
                  single_file_types={"v1": None, "inpainting": None})
SD2X = UNetFamily(id="sd2x", label="Stable Diffusion 2.x", pipeline_class_name="StableDiffusionPipeline",
                  aliases=("sd2", "sd21", "sd2.1"), flavours=("epsilon", "v-prediction"), lycoris_group="sd2x",
                  related_pipelines=_SD_RELATED, text_width=1024,
                  single_file_types={"v2": None, "inpainting_v2": None})
SDXL = UNetFamily(id="sdxl", label="Stable Diffusion XL", pipeline_class_name="StableDiffusionXLPipeline",
                  aliases=("sd-xl", "xl"), xl=True, lycoris_group="sdxl",
                  controlnet=ControlNetSupport("ControlNetModel", "StableDiffusionXLControlNetPipeline", ControlledUNet),
                  related_pipelines=("StableDiffusionXLControlNetPipeline", "StableDiffusionXLImg2ImgPipeline"),
                  text_width=2048,
                  single_file_types={"xl_base": None, "xl_inpaint": None, "playground-v2-5": None})
FAMILIES = (SD1X, SD2X, SDXL)
UNET_TEXT_WIDTHS = frozenset(f.text_width for f in FAMILIES)
