"""LyCORIS sliders (lokr, locon, loha, full): attach, strength per batch, save, reload (SPEC §2, §5, §8).

Targets are resolved by Slider Studio (`targets.resolve_mixed`), so the per-entry table and the
zero-match error are the same as for LoRA; LyCORIS is then handed *exact* module names. Its preset
state is class-level (`LycorisNetwork.apply_preset`), so every key is reset on each attach, and its
`target_name` is a regular expression matched from the start of the path, hence `^escaped$`.

The slider strength is the network's multiplier: set for one forward/backward, then every module's
previous multiplier is put back exactly. A LyCORIS module's output at multiplier 0 is its base
output bit for bit (its weight delta is multiplied by zero), which is what makes strength 0 the
base model. For a batched preview each wrapped layer computes its output at multiplier 0 and 1 and
mixes them per sample (`base + s·(full − base)`), exact at s = 0 and linear in s like the adapter
itself. DoRA-style weight decomposition is refused in presets (LyCORIS rescales the weight even at
multiplier 0, so strength 0 would not be the base); a foreign file that uses it still loads and
renders one strength at a time, since it is not linear in s.
"""
from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from sliderstudio import __version__
from sliderstudio.kernel.build_lock import BUILD_LOCK
from sliderstudio.adapters import adapters
from sliderstudio.kernel import atomic
from sliderstudio.adapters.adapter_io import META_PREFIX, read_metadata, read_tensors
from sliderstudio.kernel.errors import ModelLoadError, TargetError
from sliderstudio.config.lycoris_config import LycorisSpec, parse_lycoris_config
from sliderstudio.adapters.slider_adapter import PerSample, SliderAdapter
from sliderstudio.adapters.targets import TargetReport, require_matches, resolve_mixed
from sliderstudio.families.base import Family

CONFIG_NAME = "lycoris_config.json"
PREFIX = "lycoris"


def _reset_preset(names: list[str]) -> None:
    """Set every class-level preset key, so nothing leaks in from an earlier network."""
    from lycoris import LycorisNetwork

    logging.getLogger("LyCORIS").setLevel(logging.WARNING)  # its INFO lines would drown our own log

    LycorisNetwork.apply_preset({
        "enable_conv": True, "target_module": [], "target_name": [f"^{re.escape(n)}$" for n in names],
        "module_algo_map": {}, "name_algo_map": {}, "lora_prefix": PREFIX, "use_fnmatch": False,
        "exclude_name": [],
    })


def resolve_lycoris_targets(host: nn.Module, spec: LycorisSpec, fallback: tuple[str, list[str]],
                            key: str = "lycoris_config", strict: bool = True) -> TargetReport:
    """The modules a preset selects on `host`: its own entries, or `fallback` (the family's preset)."""
    if spec.target_module is None and not spec.target_name:
        preset, entries = fallback
    else:
        preset, entries = "lycoris", list(spec.target_module or [])
    report = resolve_mixed(host, entries, preset, spec.target_name, spec.exclude_name, spec.use_fnmatch)
    if not spec.enable_conv:
        report.module_names = [n for n in report.module_names if not _is_spatial_conv(host.get_submodule(n))]
    return require_matches(report, key) if strict else report


def lycoris_target_report(family: Family, model_path: str, data: dict[str, Any], strict: bool = False,
                          preset: str | list[str] = "slider", file: str | Path = "lycoris_config") -> TargetReport:
    """The per-entry target table of a LyCORIS preset dict for a model, on its meta skeleton (for the app).

    `preset` is what a preset without targets falls back to, as in training (the config's choice);
    an invalid preset raises ConfigError naming `file` and the key.
    """
    from sliderstudio.adapters.targets import model_skeleton, patterns_for

    spec = parse_lycoris_config(data, file)
    return resolve_lycoris_targets(model_skeleton(family, model_path), spec, patterns_for(family, preset),
                                   strict=strict)


def _is_spatial_conv(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and max(module.kernel_size) > 1


def create_network(host: nn.Module, spec: LycorisSpec, names: list[str], seed: int = 0) -> Any:
    """A LyCORIS network on exactly `names`, applied to `host` (its forward now includes the adapter)."""
    from lycoris import LycorisNetwork

    _reset_preset(names)
    with BUILD_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = LycorisNetwork(host, warn_on_unmatched=False, **spec.network_kwargs())
    made = {lora.lora_name for lora in network.loras}
    missing = [n for n in names if f"{PREFIX}_{n}".replace(".", "_") not in made]
    if missing:
        raise TargetError(f"LyCORIS '{spec.algo}' cannot wrap {len(missing)} of the {len(names)} selected modules "
                          f"(e.g. {missing[0]})", key="lycoris_config")
    network.to(_device_of(host))  # LyCORIS creates its tensors on the CPU
    network.apply_to()
    return network


def _device_of(host: nn.Module) -> torch.device:
    return next((p.device for p in host.parameters()), torch.device("cpu"))


class LycorisSlider(SliderAdapter):
    """A LyCORIS network as the slider; its tensors live in the network, not in the host's parameters."""

    kind = "lycoris"

    def __init__(self, host: nn.Module, host_name: str, network: Any, spec: LycorisSpec | None,
                 targets: list[str]):
        super().__init__(host, host_name)
        self.network = network
        self.spec = spec
        self.targets = targets
        self.batched = spec.linear_in_strength if spec else not any(getattr(l, "wd", False) for l in network.loras)
        self.network.set_multiplier(1.0)

    # --- strength -------------------------------------------------------------------------------
    @contextmanager
    def strength(self, value: float) -> Iterator[None]:
        saved = (self.network.multiplier, [lora.multiplier for lora in self.network.loras])
        try:
            self.network.set_multiplier(value)
            yield
        finally:
            self.network.multiplier = saved[0]
            for lora, m in zip(self.network.loras, saved[1]):
                lora.multiplier = m

    def per_sample(self, strengths: Sequence[float]) -> PerSample:
        return LycorisPerSample(self, strengths)

    def multipliers(self) -> list[float]:
        return [lora.multiplier for lora in self.network.loras]

    # --- training --------------------------------------------------------------------------------
    def parameters(self) -> list[nn.Parameter]:
        return list(self.network.parameters())

    def activate(self, frozen: Sequence[str] = ()) -> None:
        adapters.freeze(self.host, frozen)
        self.network.requires_grad_(True)
        for p in self.network.parameters():
            p.data = p.data.float()

    def train(self, mode: bool = True) -> None:
        self.network.train(mode)

    # --- files -----------------------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """The network's tensors in LyCORIS naming (`lycoris_<path_with_underscores>.<tensor>`)."""
        return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.network.state_dict().items()}

    def save(self, path: Path, metadata: dict[str, Any]) -> Path:
        from safetensors.torch import save_file

        header = {META_PREFIX + k: json.dumps(v) for k, v in metadata.items()}
        header[META_PREFIX + "lora_type"] = json.dumps(self.kind)
        header[META_PREFIX + "targets"] = json.dumps(self.targets)
        if self.spec is not None:
            header[META_PREFIX + "lycoris"] = json.dumps(self.spec.summary())
        header[META_PREFIX + "version"] = json.dumps(__version__)
        header["format"] = "pt"
        tensors = self.state()
        atomic.write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
        if self.spec is not None:
            atomic.write_json(path.with_name(CONFIG_NAME), self.spec.raw)
        return path

    def load_file(self, path: Path) -> None:
        """Fill a freshly attached network (resume, reload); `full` adds the saved difference to its weights."""
        tensors = read_tensors(path)
        result = self.network.load_state_dict(tensors, strict=False)
        if result.missing_keys or result.unexpected_keys:
            extra = (result.missing_keys or result.unexpected_keys)[0]
            raise ModelLoadError(f"adapter does not fit this LyCORIS network ({len(result.missing_keys)} missing, "
                                 f"{len(result.unexpected_keys)} unexpected keys, e.g. {extra})", file=path)

    def remove(self) -> None:
        """Unhook every module; `full` put the original weight back on CPU, so return it home."""
        homes = {id(lora): (lora.device, lora.org_module[0]) for lora in self.network.loras}
        self.network.restore()
        for lora in self.network.loras:
            device, module = homes[id(lora)]
            for param in module.parameters(recurse=False):
                param.data = param.data.to(device)
                param.requires_grad_(False)
        self._forget()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lora_type": self.kind, "modules": len(self.network.loras)}
        if self.spec is not None:
            out.update(self.spec.summary())
        return out


class LycorisPerSample(PerSample):
    """Per-sample strengths: each wrapped layer returns base + s·(adapted − base), s per sample.

    For an adapter that is not linear in s (DoRA-style), only one strength is allowed and it is set
    as the multiplier itself; `values` is read at every forward, so start-fraction switching works.
    """

    def __init__(self, slider: LycorisSlider, strengths: Sequence[float]):
        self.slider = slider
        self.values = torch.tensor(list(strengths), dtype=torch.float32)
        self._saved: list[tuple[nn.Module, Any, Any, float]] = []

    def _mix(self, lora: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        saved = lora.multiplier
        if not self.slider.batched:  # not linear in s: one strength per render, set as the real multiplier
            if self.values.numel() != 1:
                raise RuntimeError("this LyCORIS adapter renders one strength at a time")
            try:
                lora.multiplier = float(self.values[0])
                return lora.forward(x, *args, **kwargs)
            finally:
                lora.multiplier = saved
        try:
            lora.multiplier = 0.0
            base = lora.forward(x, *args, **kwargs)
            lora.multiplier = 1.0
            full = lora.forward(x, *args, **kwargs)
        finally:
            lora.multiplier = saved
        n, batch = self.values.numel(), base.shape[0]
        if batch % n:
            raise RuntimeError(f"per-sample strength: batch {batch} is not a multiple of {n} strengths")
        vec = self.values.repeat(batch // n).to(device=base.device, dtype=base.dtype)
        return base + vec.view(batch, *([1] * (base.dim() - 1))) * (full - base)

    def __enter__(self) -> "LycorisPerSample":
        for lora in self.slider.network.loras:
            module = lora.org_module[0]
            self._saved.append((module, module.__dict__.get("forward"), lora, lora.multiplier))
            module.forward = lambda x, *a, _lora=lora, **k: self._mix(_lora, x, *a, **k)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, forward, lora, multiplier in self._saved:
            if forward is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = forward
            lora.multiplier = multiplier
        self._saved.clear()


def attach_lycoris(host: nn.Module, host_name: str, spec: LycorisSpec, fallback: tuple[str, list[str]],
                   seed: int = 0) -> tuple[LycorisSlider, TargetReport]:
    """Resolve the preset on `host`, build the network on exactly those modules, return the handle."""
    report = resolve_lycoris_targets(host, spec, fallback)
    network = create_network(host, spec, report.module_names, seed)
    return LycorisSlider(host, host_name, network, spec, report.module_names), report


def load_lycoris(path: Path, host: nn.Module, host_name: str) -> LycorisSlider:
    """Reload a LyCORIS slider: rebuilt from our metadata when present, else from the keys alone."""
    meta = read_metadata(path)
    tensors = read_tensors(path)
    companion = path.with_name(CONFIG_NAME)
    targets = meta.get("targets")
    if targets and companion.exists():
        spec = parse_lycoris_config(json.loads(companion.read_text(encoding="utf-8")), companion)
        network = create_network(host, spec, list(targets))
        slider = LycorisSlider(host, host_name, network, spec, list(targets))
        slider.load_file(path)
        return slider
    return _from_keys(path, tensors, host, host_name)


def _from_keys(path: Path, tensors: dict[str, torch.Tensor], host: nn.Module, host_name: str) -> LycorisSlider:
    """A LyCORIS file without our companion config: LyCORIS infers every module from its tensors."""
    from lycoris import create_lycoris_from_weights

    _reset_preset([])
    with BUILD_LOCK:
        network, _ = create_lycoris_from_weights(1.0, str(path), host, weights_sd=tensors)
    if not network.loras:
        raise ModelLoadError("no LyCORIS module of this file matches the model's module names", file=path)
    network.to(_device_of(host))
    network.apply_to()
    names = sorted({k.split(".", 1)[0] for k in tensors})
    return LycorisSlider(host, host_name, network, None, names)
