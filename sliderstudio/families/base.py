"""The family interface: what the engine needs to know about one model family.

A family is data (ids, classes, prediction type, presets in `presets/targets/<id>.json`) plus a
small set of methods: load, encode prompts and images, noise, predict, render. The trainer and the
preview talk only to this interface, so adding a family touches one module and one preset file.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch

from sliderstudio.kernel.resources import read_preset
from sliderstudio.families.comfy_naming import DIFFUSERS_PATH_KEYS, ComfyNaming
from sliderstudio.families.controlnet_support import ControlNetSupport
from sliderstudio.families.text_path import DIFFUSERS_TEXT_PATH, on_text_path

PRESET_NAMES = ("reference", "slider", "default")


@dataclass
class Conditioning:
    """Text conditioning for a batch, as the denoiser's keyword arguments (already on device)."""

    kwargs: dict[str, torch.Tensor]

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> "Conditioning":
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype if (dtype and t.is_floating_point()) else t.dtype)
        return Conditioning({k: move(v) for k, v in self.kwargs.items()})


def normalise_name(name: str) -> str:
    """A family name as written by people and tools (case, '-' or '_', dots) → the registry's form."""
    return name.strip().lower().replace("-", "_").replace(".", "")


@dataclass
class Family(ABC):
    """Base class; subclasses implement the model-specific methods."""

    id: str
    label: str
    pipeline_class_name: str
    denoiser_name: str = "unet"
    aliases: tuple[str, ...] = ()
    flavours: tuple[str, ...] = ()
    prediction: str = "epsilon"  # epsilon | v_prediction | flow_matching
    size_alignment: int = 16  # training sizes are multiples of this: VAE downsampling × patch size
    controlnet: ControlNetSupport | None = None  # None: no ControlNet sliders for this family
    extra: dict[str, Any] = field(default_factory=dict)
    comfy: ComfyNaming = DIFFUSERS_PATH_KEYS  # ComfyUI/kohya LoRA key names (families/comfy_naming.py)
    comfy_lycoris: bool = False  # ComfyUI maps this family's `lycoris_<diffusers path>` keys (its diffusers maps)
    text_path_markers: tuple[str, ...] = DIFFUSERS_TEXT_PATH  # module-name pieces of the text path (text_path.py)
    #: False: PyTorch must not pick cuDNN attention for this family's backward (config/attention_backend;
    #: Flux.1's crashed with an illegal memory access on an H100, torch 2.11).
    cudnn_attention_backward: bool = True
    lycoris_group: str = "transformer"  # shipped LyCORIS presets: presets/lycoris/<group>-<algo>.json
    #: Pipeline classes besides `pipeline_class_name` whose saved folders hold this family's model
    #: (ControlNet, img2img, a sibling's class): a folder's model_index.json names one of them.
    related_pipelines: tuple[str, ...] = ()
    #: diffusers' single-file model types (`infer_diffusers_model_type`) that are this family's
    #: checkpoints → the flavour each one is (None: the type does not tell).
    single_file_types: dict[str, str | None] = field(default_factory=dict)

    def answers_to(self, name: str) -> bool:
        """Whether a name in a file (a config's model_family, an adapter's metadata) means this family:
        its id or one of its aliases, spelt as the registry reads them. Lets code that already holds the
        Family check a file against it without looking the name up."""
        key = normalise_name(name)
        return key == self.id or key in (normalise_name(a) for a in self.aliases)

    @property
    def supports_controlnet(self) -> bool:
        return self.controlnet is not None

    def on_text_path(self, module_name: str) -> bool:
        """Whether a module of this family's denoiser belongs to the caption path a slider must not touch."""
        return on_text_path(module_name, self.text_path_markers)

    @cached_property
    def presets(self) -> dict[str, list[str]]:
        data = read_preset("targets", self.id)
        return {name: list(data[name]) for name in PRESET_NAMES}

    @property
    def pipeline_class(self) -> type:
        import diffusers

        return getattr(diffusers, self.pipeline_class_name)

    def saved_by(self, pipeline_class: str) -> bool:
        """Whether a folder saved by `pipeline_class` (its model_index.json) can hold this family's model."""
        return pipeline_class == self.pipeline_class_name or pipeline_class in self.related_pipelines

    def folder_flavour(self, folder: Path) -> str | None:
        """The flavour a diffusers folder of this family holds, where its configs say (None: they do not)."""
        return None

    def split_layout_index(self, folder: Path) -> Path | None:
        """For a folder with no model_index.json at its root: the one inside that says it holds this
        family's model in a layout of its own (None: not such a folder)."""
        return None

    def folder_evidence(self, folder: Path) -> str | None:
        """Why a folder whose pipeline class other families share too holds *this* family's model
        (e.g. "cross_attention_dim 1024"); None when its configs do not point here."""
        return None

    # --- model-specific behaviour -------------------------------------------------------------
    def denoiser(self, pipe: Any) -> torch.nn.Module:
        return getattr(pipe, self.denoiser_name)

    @abstractmethod
    def skeleton(self, model_dir: Path) -> torch.nn.Module:
        """The denoiser built from its config on the meta device: module names without weights."""

    @abstractmethod
    def encode_prompts(self, pipe: Any, prompts: list[str]) -> list[Conditioning]:
        """One Conditioning per prompt (batch dimension 1), on CPU, for caching."""

    def collate(self, conds: list[Conditioning], device: torch.device, dtype: torch.dtype,
                image_size: int | tuple[int, int]) -> Conditioning:
        """Stack per-prompt conditioning into one batch. `image_size`: a side, or (height, width) for a
        non-square aspect bucket (SDXL's size conditioning needs it)."""
        keys = conds[0].kwargs.keys()
        batch = Conditioning({k: torch.cat([c.kwargs[k] for c in conds]) for k in keys})
        return batch.to(device, dtype)

    @abstractmethod
    def encode_images(self, pipe: Any, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1], shape (B, 3, H, W) → scaled latents."""

    @abstractmethod
    def noise_schedule(self, pipe: Any, prediction: str | None = None, image_size: int | None = None) -> Any:
        """The training-time noise schedule (an object the next two methods understand)."""

    @abstractmethod
    def sample_timesteps(self, schedule: Any, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Training timesteps for a batch, drawn from `generator` so resumes repeat them."""

    @abstractmethod
    def noisy_and_target(self, schedule: Any, latents: torch.Tensor, noise: torch.Tensor,
                         timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The noisy input and the family's ordinary regression target (ε, v or flow velocity)."""

    @abstractmethod
    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                cond: Conditioning) -> torch.Tensor:
        """One denoiser forward; the adapter scale is whatever the caller set on the layers."""

    def render(self, pipe: Any, prompts: list[str], seed: int, steps: int, guidance: float,
               size: int, negative_prompt: str | None = None,
               on_step: Callable[[int, int], None] | None = None) -> list[Any]:
        """Render one image per prompt, every image from the same seed (same initial noise).

        The generic diffusers call; families adjust it through `render_kwargs` and `images_of`.
        """
        result = pipe(prompt=prompts, negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
                      num_inference_steps=steps, guidance_scale=guidance, generator=seeded_generators(len(prompts), seed),
                      height=size, width=size, output_type="pil", callback_on_step_end=step_callback(on_step, steps),
                      **self.render_kwargs())
        return self.images_of(result)

    def render_kwargs(self) -> dict[str, Any]:
        """Extra pipeline arguments this family's render needs (e.g. frame count, sequence length)."""
        return {}

    def images_of(self, result: Any) -> list[Any]:
        """PIL images out of a pipeline result."""
        return list(result.images)

    @abstractmethod
    def build_tiny(self, out_dir: Path, seed: int = 0) -> Path:
        """Save a tiny random model of this family (diffusers folder) for tests and selfcheck."""

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Extra `from_pretrained` arguments: a component that cannot be loaded offline gets a stand-in here."""
        return {}

    def load_layout(self, folder: Path, kwargs: dict[str, Any]) -> Any | None:
        """Build the pipeline from a folder that is not one diffusers pipeline (e.g. `prior/` + `decoder/`).

        None means the ordinary path (`model_index.json` + `from_pretrained`) applies.
        """
        return None

    def assistant_hint(self, flavour: str | None = None) -> str | None:
        """Flavours that need an assistant adapter (distilled 'turbo'/'schnell') say so here."""
        return None

    @abstractmethod
    def default_size(self, pipe: Any) -> int:
        """The model's native image side in pixels."""


def seeded_generators(count: int, seed: int) -> list[torch.Generator]:
    """One CPU generator per image, all from `seed`, so every strength starts from the same noise."""
    return [torch.Generator("cpu").manual_seed(seed) for _ in range(count)]


def step_callback(on_step: Callable[[int, int], None] | None, steps: int) -> Callable[..., dict]:
    """A `callback_on_step_end` that reports (steps done, total) and changes nothing."""
    def callback(_pipe: Any, step: int, _t: Any, kwargs: dict) -> dict:
        if on_step is not None:
            on_step(step + 1, steps)
        return kwargs
    return callback
