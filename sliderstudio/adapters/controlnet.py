"""Sliders trained on a ControlNet (SPEC §5): the slider's targets sit on the ControlNet, the UNet stays as is.

Config keys follow SimpleTuner: `controlnet: true` and `controlnet_model_name_or_path` (a diffusers
ControlNet folder). Each image bucket names a `conditioning_data_dir` whose files share the image
files' stems; conditioning images are cropped like their images and cached on disk like latents.

Which families have ControlNet sliders, which diffusers classes they use and how the conditioning
reaches the ControlNet are family traits (`Family.controlnet`, see `families/controlnet_support.py`):
SD 1.x and SDXL (`ControlNetModel`, pixels), SD3 (`SD3ControlNetModel`, VAE latents), Flux.1
(`FluxControlNetModel`, packed latents or XLabs-style pixels), and AuraFlow and HiDream, whose
ControlNets are SimpleTuner's own classes (ours, compatible: `families/auraflow_controlnet.py`,
`families/hidream_controlnet.py`). The training step sees one module
with the denoiser's call signature (the family's wrapper): the ControlNet runs first on the batch's
conditioning and its residuals go into the denoiser, so the family's own `predict` works unchanged.
Rendering uses diffusers' ControlNet pipeline built from the loaded pipeline's components; a thin
proxy adds the conditioning image to every call so the family's generic `render` is reused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from torch import nn

from sliderstudio.kernel.build_lock import BUILD_LOCK
from sliderstudio.kernel.errors import ConfigError, DatasetError, ModelLoadError
from sliderstudio.families.base import Family

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def require_controlnet_support(family: Family, config_file: str | Path) -> None:
    if not family.supports_controlnet:
        raise ConfigError(f"{family.label} has no ControlNet support here (diffusers has no ControlNet model and "
                          "pipeline for it); train the slider on the model itself", file=config_file, key="controlnet")


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


def load_controlnet(family: Family, path: Path, dtype: torch.dtype, device: torch.device | str) -> nn.Module:
    """The family's kind of diffusers ControlNet, frozen; the slider is attached to it afterwards."""
    cls = family.controlnet.model_cls
    try:
        with BUILD_LOCK:
            model = cls.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
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


@dataclass(frozen=True)
class ControlInputs:
    """The conditioning of a ControlNet run: which file goes with each image, and how it is encoded."""

    files: dict[tuple[str, int], Path]
    encode: Callable[[torch.Tensor], torch.Tensor]   # pixels in [-1, 1] (B, 3, H, W) → the ControlNet's input
    kind: str                                          # cache kind: names the representation


def control_inputs_for(family: Family, pipe: Any, controlnet: nn.Module,
                       files: dict[tuple[str, int], Path]) -> ControlInputs:
    support = family.controlnet
    return ControlInputs(files, lambda pixels: support.encode(pipe, controlnet, pixels),
                         f"control-{support.tag(controlnet)}")


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
    image_kwarg: str = "image"   # the pipeline's name for it: `image` (UNet), `control_image` (SD3, Flux)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        count = len(kwargs.get("prompt") or [None])
        return self.pipe(*args, **{self.image_kwarg: [self.image] * count}, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)


def control_pipeline(family: Family, pipe: Any, controlnet: nn.Module) -> Any:
    """diffusers' ControlNet pipeline sharing the loaded pipeline's components (no copy)."""
    if family.controlnet is None:
        raise ConfigError(f"no ControlNet pipeline for {family.label}", key="controlnet")
    control = family.controlnet.pipeline_cls.from_pipe(pipe, controlnet=controlnet)
    control.set_progress_bar_config(disable=True)
    return control
