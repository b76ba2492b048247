"""Stable Cascade's Stage C image encoder: pixels → the prior's 16-channel latents (EfficientNetV2-S).

Diffusers ships no encoder for the prior's latent space: Stability trained Stage C on the features of an
EfficientNetV2-S backbone plus a 1×1 mapper and a non-affine BatchNorm (`effnet_encoder.safetensors` in
the stabilityai/stable-cascade repository). A slider on the prior needs it to turn training images into
prior latents. This module rebuilds that network in plain torch (no torchvision on this stack) with
module names matching the published file (`backbone.N…`, `mapper.0`, `mapper.1`), so the official
weights load strictly; a small configuration of the same architecture serves the tiny test model.

The image is resized by `input_scale` (3/4 for the real model: 1024 px → 768 px → 24×24 latents, the
prior's 42.67 px per latent) and normalised with ImageNet statistics, as in Stable Cascade's training.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from sliderstudio.kernel.errors import ModelLoadError

# (kind, expand ratio, stride, out channels, layers): EfficientNetV2-S, kernel 3 everywhere
V2_S_STAGES = (("fused", 1, 1, 24, 2), ("fused", 4, 2, 48, 4), ("fused", 4, 2, 64, 4),
               ("mb", 4, 2, 128, 6), ("mb", 6, 1, 160, 9), ("mb", 6, 2, 256, 15))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFICIAL_FILE = "effnet_encoder.safetensors"


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (eps 1e-3) [+ SiLU]: indices 0 and 1 match the published key names."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=1e-3)]
    if act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(F.silu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(scale)


class Block(nn.Module):
    """Fused-MBConv (one k×k expand conv) or MBConv (1×1 expand, depthwise k×k, squeeze-excite), then project."""

    def __init__(self, kind: str, cin: int, cout: int, expand: int, stride: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if kind == "fused":
            if hidden == cin:
                layers.append(conv_bn(cin, cout, 3, stride))
            else:
                layers += [conv_bn(cin, hidden, 3, stride), conv_bn(hidden, cout, 1, act=False)]
        else:
            if hidden != cin:
                layers.append(conv_bn(cin, hidden, 1))
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), SqueezeExcite(hidden, max(1, cin // 4)),
                       conv_bn(hidden, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class StageCEncoder(ModelMixin, ConfigMixin):
    """EfficientNetV2-style backbone + 1×1 mapper + non-affine BatchNorm → prior latents."""

    @register_to_config
    def __init__(self, stem_channels: int = 24, stages: tuple = V2_S_STAGES, head_channels: int = 1280,
                 latent_channels: int = 16, input_scale: float = 0.75):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(3, stem_channels, 3, 2)]
        cin = stem_channels
        for kind, expand, stride, cout, count in stages:
            layers.append(nn.Sequential(*[Block(kind, cin if i == 0 else cout, cout, expand, stride if i == 0 else 1)
                                          for i in range(count)]))
            cin = cout
        layers.append(conv_bn(cin, head_channels, 1))
        self.backbone = nn.Sequential(*layers)
        self.mapper = nn.Sequential(nn.Conv2d(head_channels, latent_channels, 1, bias=False),
                                    nn.BatchNorm2d(latent_channels, affine=False))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, H, W) → latents (B, latent_channels, h, w)."""
        x = (pixels + 1) / 2
        if self.config.input_scale != 1.0:
            x = F.interpolate(x, scale_factor=self.config.input_scale, mode="bilinear", antialias=True,
                              align_corners=False)
        mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return self.mapper(self.backbone((x - mean) / std))


def find_encoder(folder: Path) -> Path | None:
    """Our saved encoder (`effnet/`) or the official weights file, in the model folder or its parts."""
    for base in (folder, folder / "prior", folder / "decoder", folder.parent):
        if (base / "effnet" / "config.json").exists():
            return base / "effnet"
        if (base / OFFICIAL_FILE).exists():
            return base / OFFICIAL_FILE
    return None


def load_encoder(location: Path) -> StageCEncoder:
    """A saved encoder folder, or the official safetensors file into the full-size architecture.

    Every weight must be there and nothing else; only BatchNorm's step counters may be absent."""
    if location.is_dir():
        return StageCEncoder.from_pretrained(str(location), local_files_only=True).eval()
    from safetensors.torch import load_file

    encoder = StageCEncoder()
    result = encoder.load_state_dict(load_file(str(location)), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]  # a counter, not a weight
    if missing or result.unexpected_keys:
        raise ModelLoadError(f"not a Stage C encoder: {len(missing)} missing and {len(result.unexpected_keys)} "
                             f"unexpected tensors, e.g. {(missing + result.unexpected_keys)[0]}", file=location)
    return encoder.eval()
