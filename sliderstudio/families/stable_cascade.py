"""Stable Cascade (Würstchen v3): the slider is trained on the *prior* (Stage C).

Why the prior: Stable Cascade renders in two stages. The prior turns the prompt into a small 16-channel
latent (24×24 at 1024 px) that fixes the composition — what is where, how big, which colour, which
expression. The decoder (Stage B) only upsamples that latent into detail and texture, conditioned on it.
A concept slider changes *what* is in the picture, which the prior decides; a decoder slider could only
restyle texture. So the denoiser here is `StableCascadeUNet` of the prior pipeline, and rendering runs
prior + decoder (StableCascadeCombinedPipeline) with the slider on the prior only.

Training follows the pipeline's DDPMWuerstchenScheduler: continuous t ∈ [0, 1], ᾱ(t) a shifted cosine,
x_t = √ᾱ·x₀ + √(1 − ᾱ)·ε, and the prior predicts ε (its step uses the output as noise); the model's
timestep is the ratio t itself. Images become prior latents through the Stage C encoder
(`stage_c_encoder.py`), which diffusers does not ship: the model folder must hold `effnet/` or
Stability's `effnet_encoder.safetensors`.

Model folders: Stability publishes the prior and the decoder as two diffusers pipelines, so a folder
with `prior/` and `decoder/` (each a pipeline folder) is assembled into the combined pipeline here;
a folder saved from StableCascadeCombinedPipeline loads the ordinary way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from sliderstudio.kernel.errors import ModelLoadError
from sliderstudio.families.base import Conditioning, Family, seeded_generators, step_callback
from sliderstudio.families.comfy_naming import ComfyNaming, rule
from sliderstudio.families.stage_c_encoder import StageCEncoder, find_encoder, load_encoder
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH

TINY_SIZE = 32
ENCODER_ATTR = "_sliderstudio_stage_c_encoder"


def split_layout(folder: Path) -> bool:
    return (folder / "prior" / "model_index.json").exists() and (folder / "decoder" / "model_index.json").exists()


def load_vqgan(folder: Path, kwargs: dict[str, Any]) -> Any:
    """Stage A, loaded by class: diffusers 0.42 moved PaellaVQModel under `pipelines.deprecated`, and its
    pipeline loader can no longer resolve (or even accept) the `vqgan` entry of model_index.json."""
    from diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model import PaellaVQModel

    options = {k: v for k, v in kwargs.items() if k in ("dtype", "torch_dtype", "local_files_only", "use_safetensors")}
    return PaellaVQModel.from_pretrained(str(folder), subfolder="vqgan", **options)


def combined_layout(folder: Path) -> bool:
    index = folder / "model_index.json"
    return index.exists() and '"StableCascadeCombinedPipeline"' in index.read_text(encoding="utf-8")


def split_parts(folder: Path, kwargs: dict[str, Any]) -> tuple[dict[str, Any], tuple[float, float]]:
    """The combined pipeline's components from Stability's two pipelines, plus each part's size setting."""
    from diffusers import StableCascadeDecoderPipeline, StableCascadePriorPipeline

    prior = StableCascadePriorPipeline.from_pretrained(str(folder / "prior"), **kwargs)
    decoder = StableCascadeDecoderPipeline.from_pretrained(str(folder / "decoder"), vqgan=None, **kwargs)
    parts = dict(tokenizer=decoder.tokenizer, text_encoder=decoder.text_encoder, decoder=decoder.decoder,
                 scheduler=decoder.scheduler, vqgan=load_vqgan(folder / "decoder", kwargs), prior_prior=prior.prior,
                 prior_text_encoder=prior.text_encoder, prior_tokenizer=prior.tokenizer,
                 prior_scheduler=prior.scheduler, prior_feature_extractor=prior.feature_extractor,
                 prior_image_encoder=prior.image_encoder)
    return parts, (prior.config.resolution_multiple, decoder.config.latent_dim_scale)


# ComfyUI's Stage C keeps diffusers' block layout; its attention wraps q/k/v/out one level deeper
# (`attention.attn.to_q`, `attention.attn.out_proj`, comfy/ldm/cascade/common.py). Its cascade LoRA prefix
# is `lora_prior_unet_` (kohya style, dots as underscores).
COMFY_NAMING = ComfyNaming(prefix="lora_prior_unet_", underscores=True, basis="ComfyUI's Stage C names",
                           rules=(rule(r"(.+)\.attention\.to_([qkv])", r"\1.attention.attn.to_\2"),
                                  rule(r"(.+)\.attention\.to_out\.0", r"\1.attention.attn.out_proj")))


@dataclass
class StableCascadeFamily(Family):
    denoiser_name: str = "prior"  # adapter keys read `prior.<module>…`, as in the prior pipeline
    comfy: ComfyNaming = COMFY_NAMING
    decoder_steps: int = 10  # Stability's recommended decoder steps; the prior gets the caller's `steps`

    def denoiser(self, pipe: Any) -> torch.nn.Module:
        return pipe.prior_prior

    def split_layout_index(self, folder: Path) -> Path | None:
        """Stability's layout: `prior/` (a pipeline folder, whose index names the prior pipeline) + `decoder/`."""
        index = folder / "prior" / "model_index.json"
        return index if index.exists() and (folder / "decoder").is_dir() else None

    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        from diffusers import StableCascadeUNet

        where = (str(model_dir / "prior"), "prior") if split_layout(model_dir) else (str(model_dir), "prior_prior")
        config = StableCascadeUNet.load_config(where[0], subfolder=where[1])
        with torch.device("meta"):
            return StableCascadeUNet.from_config(config)

    def load_layout(self, folder: Path, kwargs: dict[str, Any]) -> Any | None:
        """`prior/` + `decoder/` pipelines, or a saved combined pipeline, as one combined pipeline.

        Both go through here because diffusers 0.42 can no longer load the `vqgan` entry by itself.
        """
        from diffusers import StableCascadeCombinedPipeline

        if split_layout(folder):
            parts, sizes = split_parts(folder, kwargs)
        elif combined_layout(folder):
            saved = StableCascadeCombinedPipeline.from_pretrained(str(folder), vqgan=None, **kwargs)
            parts = {**saved.components, "vqgan": load_vqgan(folder, kwargs)}
            sizes = (saved.prior_pipe.config.resolution_multiple, saved.decoder_pipe.config.latent_dim_scale)
        else:
            return None
        pipe = StableCascadeCombinedPipeline(**parts)
        pipe.prior_pipe.register_to_config(resolution_multiple=sizes[0])
        pipe.decoder_pipe.register_to_config(latent_dim_scale=sizes[1])
        pipe.register_to_config(_name_or_path=str(folder))
        return pipe

    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        """The prior's CLIP states and pooled embedding, exactly as its pipeline computes them."""
        prior = pipe.prior_pipe
        out = []
        with torch.no_grad():
            for prompt in prompts:
                embeds, pooled, _, _ = prior.encode_prompt(device=prior.text_encoder.device, batch_size=1,
                                                           num_images_per_prompt=1, do_classifier_free_guidance=False,
                                                           prompt=prompt)
                out.append(Conditioning({"clip_text": embeds.cpu(), "clip_text_pooled": pooled.cpu()}))
        return out

    def stage_c_encoder(self, pipe: Any) -> StageCEncoder:
        """Loaded once per pipeline from the model folder; a clear error names the missing file."""
        encoder = getattr(pipe, ENCODER_ATTR, None)
        if encoder is None:
            root = getattr(pipe.config, "_name_or_path", None)
            location = find_encoder(Path(root)) if root and Path(root).exists() else None
            if location is None:
                raise ModelLoadError("Stable Cascade training needs the Stage C image encoder: put Stability's "
                                     "effnet_encoder.safetensors (stabilityai/stable-cascade) into the model folder",
                                     file=root, key="pretrained_model_name_or_path")
            prior = pipe.prior_prior
            encoder = load_encoder(location).to(prior.device, prior.dtype).requires_grad_(False)
            setattr(pipe, ENCODER_ATTR, encoder)
        return encoder

    def encode_images(self, pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
        encoder = self.stage_c_encoder(pipe)
        with torch.no_grad():
            latents = encoder(pixels.to(encoder.device, encoder.dtype))
        return latents.float().cpu()

    def noise_schedule(self, pipe: Any, prediction: str | None = None, image_size: int | None = None) -> Any:
        from diffusers import DDPMWuerstchenScheduler

        return DDPMWuerstchenScheduler.from_config(pipe.prior_scheduler.config)

    def sample_timesteps(self, schedule: Any, batch: int, generator: torch.Generator) -> torch.Tensor:
        """t uniform in [0, 1): the ratio the prior is conditioned on, as in Würstchen's training."""
        return torch.rand(batch, generator=generator)

    def noisy_and_target(self, schedule: Any, latents: torch.Tensor, noise: torch.Tensor,
                         timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return schedule.add_noise(latents, noise, timesteps), noise

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        """Text-only prompting: the CLIP image slot is zeros, as the pipeline passes without images."""
        pooled = cond.kwargs["clip_text_pooled"]
        clip_img = pooled.new_zeros(noisy.shape[0], 1, denoiser.config.clip_image_in_channels)
        return denoiser(sample=noisy, timestep_ratio=timesteps.to(noisy.dtype), clip_text_pooled=pooled,
                        clip_text=cond.kwargs["clip_text"], clip_img=clip_img, return_dict=False)[0]

    def render(self, pipe: Any, prompts: list[str], seed: int, steps: int, guidance: float,
               size: int, negative_prompt: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> list[Any]:
        """Prior for `steps` steps (progress and slider start-fraction count these), then the decoder."""
        result = pipe(prompt=prompts, negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
                      height=size, width=size, prior_num_inference_steps=steps, prior_guidance_scale=guidance,
                      num_inference_steps=min(steps, self.decoder_steps), decoder_guidance_scale=0.0,
                      generator=seeded_generators(len(prompts), seed), output_type="pil",
                      prior_callback_on_step_end=step_callback(on_step, steps))
        return list(result.images)

    def default_size(self, pipe: Any) -> int:
        return 1024

    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        """`prior/` and `decoder/` pipelines (32 px ↔ 4×4 prior latents ↔ 8×8 Stage B latents) and `effnet/`."""
        out = Path(out_dir)
        prior, decoder = tiny_prior_pipeline(seed), tiny_decoder_pipeline(seed)
        prior.save_pretrained(out / "prior", safe_serialization=True)
        decoder.save_pretrained(out / "decoder", safe_serialization=True)
        torch.manual_seed(seed + 5)
        stages = (("fused", 1, 1, 8, 1), ("fused", 2, 2, 8, 1), ("mb", 2, 2, 16, 1))  # 8x, like 4x4 prior latents
        encoder = StageCEncoder(stem_channels=8, stages=stages, head_channels=32, latent_channels=4, input_scale=1.0)
        encoder.save_pretrained(out / "effnet", safe_serialization=True)
        return out


def _tiny_unet(seed: int, **config: Any) -> torch.nn.Module:
    from diffusers import StableCascadeUNet

    torch.manual_seed(seed)
    return StableCascadeUNet(timestep_ratio_embedding_dim=16, clip_text_pooled_in_channels=32, clip_seq=2,
                             down_blocks_repeat_mappers=(1, 1), up_blocks_repeat_mappers=(1, 1), dropout=(0.0, 0.0),
                             self_attn=True, **config)


def tiny_prior_pipeline(seed: int = 0) -> Any:
    """Prior: 4-channel latents, 8 px per latent, CLIP (hidden 32) text and pooled conditioning."""
    from diffusers import DDPMWuerstchenScheduler, StableCascadePriorPipeline
    from sliderstudio.families.tiny import tiny_clip, tiny_tokenizer

    attn = ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock")
    prior = _tiny_unet(seed, in_channels=4, out_channels=4, conditioning_dim=32, block_out_channels=(32, 32),
                       num_attention_heads=(2, 2), down_num_layers_per_block=(1, 1), up_num_layers_per_block=(1, 1),
                       block_types_per_layer=(attn, attn), clip_text_in_channels=32, clip_image_in_channels=16,
                       timestep_conditioning_type=("sca", "crp"), switch_level=(False,))
    return StableCascadePriorPipeline(tokenizer=tiny_tokenizer(), text_encoder=tiny_clip(True, 32, seed), prior=prior,
                                      scheduler=DDPMWuerstchenScheduler(), resolution_multiple=8.0)


def tiny_decoder_pipeline(seed: int = 0) -> Any:
    """Decoder: Stage B on 8×8 latents conditioned on the prior latent (effnet) and pooled CLIP; 4× VQGAN."""
    from diffusers import DDPMWuerstchenScheduler, StableCascadeDecoderPipeline
    from diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model import PaellaVQModel
    from sliderstudio.families.tiny import tiny_clip, tiny_tokenizer

    res = ("SDCascadeResBlock", "SDCascadeTimestepBlock")
    decoder = _tiny_unet(seed + 2, in_channels=4, out_channels=4, conditioning_dim=32, block_out_channels=(16, 32),
                         num_attention_heads=(-1, 2), down_num_layers_per_block=(1, 1), up_num_layers_per_block=(1, 1),
                         block_types_per_layer=(res, (*res, "SDCascadeAttnBlock")), effnet_in_channels=4,
                         pixel_mapper_in_channels=3, timestep_conditioning_type=("sca",))
    torch.manual_seed(seed + 3)
    vqgan = PaellaVQModel(up_down_scale_factor=2, levels=2, bottleneck_blocks=1, embed_dim=16, latent_channels=4,
                          num_vq_embeddings=32)
    return StableCascadeDecoderPipeline(decoder=decoder, tokenizer=tiny_tokenizer(),
                                        text_encoder=tiny_clip(True, 32, seed), scheduler=DDPMWuerstchenScheduler(),
                                        vqgan=vqgan, latent_dim_scale=2.0)


STABLE_CASCADE = StableCascadeFamily(
    id="stable_cascade", label="Stable Cascade (prior / Stage C)", pipeline_class_name="StableCascadeCombinedPipeline",
    aliases=("stable-cascade", "stablecascade", "wuerstchen", "würstchen", "cascade"),
    prediction="epsilon", extra={"tiny_size": TINY_SIZE},
    related_pipelines=("StableCascadePriorPipeline",),
    single_file_types={"stable_cascade_stage_c": None, "stable_cascade_stage_c_lite": None},
    # the CLIP text/image mappers and the per-block key/value mappers of the conditioning
    text_path_markers=DIFFUSERS_TEXT_PATH + ("kv_mapper", "clip_txt_mapper", "clip_txt_pooled_mapper",
                                             "clip_img_mapper"))
FAMILIES = (STABLE_CASCADE,)
