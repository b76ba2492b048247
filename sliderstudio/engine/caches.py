"""On-disk caches of VAE latents and text conditioning, keyed by file content and model identity.

A second run over the same images and captions encodes nothing, and a changed image, crop or model
misses the cache instead of reusing stale entries. Entries are written atomically.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from sliderstudio.kernel import atomic
from sliderstudio.families.base import Conditioning


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


def model_key(family_id: str, model_location: str) -> str:
    """Model identity: the family, the location and, for local folders, the weights' sizes and times."""
    parts = [family_id, model_location]
    root = Path(model_location)
    if root.exists():
        files = [root] if root.is_file() else sorted(root.rglob("*.safetensors"))
        for f in files:
            st = f.stat()
            parts.append(f"{f.relative_to(root) if root.is_dir() else f.name}:{st.st_size}:{int(st.st_mtime)}")
    return f"{family_id}-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


@dataclass
class CacheStats:
    images_encoded: int = 0
    images_cached: int = 0
    prompts_encoded: int = 0
    prompts_cached: int = 0


@dataclass
class FeatureCache:
    root: Path
    key: str
    stats: CacheStats = field(default_factory=CacheStats)

    def _dir(self, kind: str, override: Path | None = None) -> Path:
        return (override or self.root) / self.key / kind

    def latents(self, items: list[tuple[Path, str]], encode: Callable[[list[int]], list[torch.Tensor]],
                override: Path | None = None, batch: int = 8, kind: str = "vae") -> list[torch.Tensor]:
        """`items`: (image path, transform tag) pairs; `encode(indices)` encodes the misses.

        `kind` names the cache folder: "vae" for latents, "control-<representation>" for ControlNet conditioning.
        """
        folder = self._dir(kind, override)
        paths = [folder / f"{file_digest(p)}-{tag}.safetensors" for p, tag in items]
        out: list[torch.Tensor | None] = [None] * len(items)
        misses = []
        for i, path in enumerate(paths):
            if path.exists():
                try:
                    out[i] = load_file(str(path))["latent"]
                    self.stats.images_cached += 1
                    continue
                except Exception:  # a damaged entry is re-encoded, not fatal
                    path.unlink(missing_ok=True)
            misses.append(i)
        for start in range(0, len(misses), batch):
            chunk = misses[start:start + batch]
            for i, latent in zip(chunk, encode(chunk)):
                latent = latent.contiguous()
                atomic.write_with(paths[i], lambda tmp, t=latent: save_file({"latent": t}, str(tmp)))
                out[i] = latent
                self.stats.images_encoded += 1
        return [t for t in out if t is not None]

    def has_latents(self, items: list[tuple[Path, str]], override: Path | None = None, kind: str = "vae") -> bool:
        """Whether every item is cached already (then the encoder need not be on the device at all)."""
        folder = self._dir(kind, override)
        return all((folder / f"{file_digest(p)}-{tag}.safetensors").exists() for p, tag in items)

    def has_conditioning(self, prompts: list[str], override: Path | None = None) -> bool:
        folder = self._dir("text", override)
        return all((folder / (hashlib.sha256(p.encode()).hexdigest()[:32] + ".safetensors")).exists()
                   for p in prompts)

    def conditioning(self, prompts: list[str], encode: Callable[[list[str]], list[Conditioning]],
                     override: Path | None = None) -> dict[str, Conditioning]:
        """`override`: a text_embeds entry's cache_dir (the model key still separates models inside it)."""
        folder = self._dir("text", override)
        unique = list(dict.fromkeys(prompts))
        result: dict[str, Conditioning] = {}
        misses = []
        for prompt in unique:
            path = folder / (hashlib.sha256(prompt.encode()).hexdigest()[:32] + ".safetensors")
            if path.exists():
                try:
                    result[prompt] = Conditioning(load_file(str(path)))
                    self.stats.prompts_cached += 1
                    continue
                except Exception:
                    path.unlink(missing_ok=True)
            misses.append((prompt, path))
        if misses:
            for (prompt, path), cond in zip(misses, encode([m[0] for m in misses])):
                tensors = {k: v.contiguous() for k, v in cond.kwargs.items()}
                atomic.write_with(path, lambda tmp, t=tensors: save_file(t, str(tmp)))
                result[prompt] = Conditioning(tensors)
                self.stats.prompts_encoded += 1
        return result

    def describe(self) -> str:
        s = self.stats
        return (f"cache {self.root / self.key}: {s.images_cached} latents reused, {s.images_encoded} encoded; "
                f"{s.prompts_cached} captions reused, {s.prompts_encoded} encoded")


def transform_tag(size: int | tuple[int, int], crop: bool, crop_style: str, seed: int,
                  downsample: tuple[float | None, float | None, str] | None = None) -> str:
    """What else besides the file's bytes decides a latent: the aspect bucket's (width, height), the crop,
    the pre-downsample (maximum_image_size, target_downsample_size, unit), and the seed for random crops.

    A changed bucket config therefore misses the cache instead of reusing wrong-shaped latents.
    """
    w, h = (size, size) if isinstance(size, int) else size
    tag: dict = {"size": w if w == h else [w, h], "crop": crop, "style": crop_style,
                 "seed": seed if crop_style == "random" else None}
    if downsample and downsample[0]:
        tag["downsample"] = list(downsample)
    return hashlib.sha256(json.dumps(tag, sort_keys=True).encode()).hexdigest()[:10]
