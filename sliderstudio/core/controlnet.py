"""Sliders trained on a ControlNet (SPEC §5): the slider's targets sit on the ControlNet, the UNet stays as is.

Config keys follow SimpleTuner: `controlnet: true` and `controlnet_model_name_or_path` (a diffusers
ControlNet folder). Each image bucket names a `conditioning_data_dir` whose files share the image
files' stems; conditioning images are cropped like their images and cached on disk like latents.

The training step sees one module, `ControlledUNet`, with the UNet's call signature: the ControlNet
runs first on the batch's conditioning images and its residuals go into the UNet. The family's own
`predict` therefore works unchanged. Rendering uses diffusers' ControlNet pipeline built from the
loaded pipeline's components; a thin proxy adds the conditioning image to every call so the
family's generic `render` is reused.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn

from sliderstudio.core.build_lock import BUILD_LOCK
from sliderstudio.core.errors import ConfigError, DatasetError, ModelLoadError

CONTROL_PIPELINES = {"StableDiffusionPipeline": "StableDiffusionControlNetPipeline",
                     "StableDiffusionXLPipeline": "StableDiffusionXLControlNetPipeline"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ControlledUNet(nn.Module):
    """UNet + ControlNet behind the UNet's own call, with the batch's conditioning images set around it."""

    def __init__(self, unet: nn.Module, controlnet: nn.Module, scale: float = 1.0):
        super().__init__()
        self.unet, self.controlnet, self.scale = unet, controlnet, scale
        self._control: torch.Tensor | None = None

    @contextmanager
    def conditioned_on(self, images: torch.Tensor) -> Iterator[None]:
        """Conditioning images (B, 3, H, W) in [0, 1] for the forwards inside the block."""
        previous, self._control = self._control, images
        try:
            yield
        finally:
            self._control = previous

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                added_cond_kwargs: dict | None = None, return_dict: bool = False, **kwargs: Any) -> Any:
        if self._control is None:
            raise RuntimeError("ControlledUNet called without conditioning images (use conditioned_on)")
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                    controlnet_cond=self._control, conditioning_scale=self.scale,
                                    added_cond_kwargs=added_cond_kwargs, return_dict=False)
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         added_cond_kwargs=added_cond_kwargs, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid, return_dict=return_dict, **kwargs)


def require_controlnet_support(family: Any, config_file: str | Path) -> None:
    if not family.supports_controlnet:
        raise ConfigError(f"ControlNet sliders are supported for SD 1.x and SDXL, not {family.label}",
                          file=config_file, key="controlnet")


def controlnet_location(config: Any, project_root: Path) -> Path:
    """The ControlNet folder; required, since a ControlNet fresh from the UNet outputs zeros."""
    spec = config.controlnet_model_name_or_path
    if not spec:
        raise ConfigError("a ControlNet slider needs a trained ControlNet (a ControlNet fresh from the UNet has "
                          "zero output convolutions, so a slider on it could change nothing)",
                          key="controlnet_model_name_or_path", expected="a diffusers ControlNet folder")
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else project_root / path
    if not (path / "config.json").exists():
        raise ModelLoadError("not a diffusers ControlNet folder (no config.json)", file=path,
                             key="controlnet_model_name_or_path")
    return path


def load_controlnet(path: Path, dtype: torch.dtype, device: torch.device | str) -> nn.Module:
    from diffusers import ControlNetModel

    try:
        with BUILD_LOCK:
            model = ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the ControlNet ({exc})", file=path,
                             key="controlnet_model_name_or_path") from None
    return model.to(device).requires_grad_(False)


def conditioning_file(folder: Path, stem: str) -> Path | None:
    """The conditioning image with this stem (any image suffix), or None."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.exists():
                return candidate
    return None


def conditioning_files(project: Any, scanned: list[Any]) -> dict[tuple[str, int], Path]:
    """(bucket id, image index) → its conditioning image; every image must have one (checked before loading)."""
    found: dict[tuple[str, int], Path] = {}
    for s in scanned:
        if not s.bucket.conditioning_data_dir:
            raise DatasetError("a ControlNet slider needs conditioning images for every bucket",
                               file=project.dataloader_path, key=f"{s.bucket.id}.conditioning_data_dir")
        folder = project.resolve(s.bucket.conditioning_data_dir)
        if not folder.is_dir():
            raise DatasetError("conditioning folder not found", file=folder,
                               key=f"{s.bucket.id}.conditioning_data_dir")
        missing = []
        for i, record in enumerate(s.images):
            path = conditioning_file(folder, record.stem)
            if path is None:
                missing.append(record.stem)
            else:
                found[(s.bucket.id, i)] = path
        if missing:
            raise DatasetError(f"{len(missing)} image(s) have no conditioning image with the same name "
                               f"(e.g. '{missing[0]}')", file=folder, key=f"{s.bucket.id}.conditioning_data_dir")
    return found


def to_unit_pixels(image: Image.Image) -> torch.Tensor:
    """A PIL image as (3, H, W) float in [0, 1], the range diffusers' ControlNet pipelines feed."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def load_control_image(path: str | Path, size: int) -> Image.Image:
    """A conditioning image for preview: decoded, resized and centre-cropped to `size`."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            image = im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot read the control image ({exc})", file=path, key="--control-image") from None
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.LANCZOS)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


@dataclass
class ControlPipe:
    """A ControlNet pipeline that adds the conditioning image to every call, so `Family.render` is reused."""

    pipe: Any
    image: Image.Image

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        count = len(kwargs.get("prompt") or [None])
        return self.pipe(*args, image=[self.image] * count, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)


def control_pipeline(family: Any, pipe: Any, controlnet: nn.Module) -> Any:
    """diffusers' ControlNet pipeline sharing the loaded pipeline's components (no copy)."""
    import diffusers

    name = CONTROL_PIPELINES.get(family.pipeline_class_name)
    if name is None:
        raise ConfigError(f"no ControlNet pipeline for {family.label}", key="controlnet")
    control = getattr(diffusers, name).from_pipe(pipe, controlnet=controlnet)
    control.set_progress_bar_config(disable=True)
    return control
