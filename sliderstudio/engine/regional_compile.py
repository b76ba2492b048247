"""torch.compile for the denoiser: each repeated block on its own (regional), or the whole model.

A diffusion denoiser is mostly N copies of one block. Compiling each copy with `nn.Module.compile`
lets them share one compiled graph (same code, same shapes), so the first step waits for one block's
compilation instead of the whole model's: on an H100, Z-Image's first step took 47 s this way and ran
at whole-model-compile speed (STACK-FACTS). The blocks are the classes the model declares in diffusers'
`_repeated_blocks`; a model without that list gets every class that occurs at least twice as a direct
child of a ModuleList (the outermost ones). Options are SimpleTuner's `dynamo_*` keys.

Compilation happens lazily in the first forward, so a compiler failure surfaces inside a step; the
trainer then calls `fall_back`, which returns every block to eager and the step is run again.
"""
from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from sliderstudio.kernel.errors import ConfigError

Logger = Callable[[str, str], None]


@dataclass(frozen=True)
class CompileOptions:
    backend: str          # a torch.compile backend name; "no" = off
    mode: str | None
    fullgraph: bool
    dynamic: bool
    regional: bool

    @property
    def enabled(self) -> bool:
        return self.backend != "no"

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "fullgraph": self.fullgraph, "dynamic": self.dynamic}
        if self.mode and self.mode != "default" and self.backend == "inductor":
            out["mode"] = self.mode  # torch.compile takes a mode for inductor only
        return out


def compile_options(config: Any) -> CompileOptions:
    return CompileOptions(config.dynamo_backend, config.dynamo_mode or None,
                          config.dynamo_fullgraph, config.dynamo_dynamic, config.dynamo_use_regional_compilation)


def available_backends() -> list[str]:
    import torch._dynamo

    return sorted(torch._dynamo.list_backends(exclude_tags=()))


def check_compile_options(config: Any, file: str) -> CompileOptions:
    """Refuse, before any weight loads, a dynamo_backend this PyTorch does not have."""
    options = compile_options(config)
    if options.enabled and options.backend not in available_backends():
        raise ConfigError(f"dynamo_backend {config.dynamo_backend!r} is not available in this PyTorch "
                          f"({torch.__version__}); available: no, {', '.join(available_backends())}",
                          file=file, key="dynamo_backend", value=config.dynamo_backend)
    return options


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks regional compilation compiles, outermost first, each once."""
    declared = set(getattr(model, "_repeated_blocks", None) or ())
    if not declared:
        counts = Counter(type(child).__name__ for module in model.modules()
                         if isinstance(module, torch.nn.ModuleList) for child in module)
        declared = {name for name, n in counts.items() if n >= 2}
    chosen: list[torch.nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if type(module).__name__ in declared and module is not model:
            chosen.append(module)
            inside.update(id(m) for m in module.modules())
    return chosen


@dataclass
class CompiledDenoiser:
    """What was compiled, so that it can be measured, paused for validation, or returned to eager."""

    modules: list[torch.nn.Module] = field(default_factory=list)
    options: CompileOptions | None = None
    first_step_s: float | None = None
    _started: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.modules)

    def fall_back(self, exc: BaseException, log: Logger) -> bool:
        """Return every compiled module to eager after a compiler failure; False when this was no such failure."""
        if not self.active or not is_compile_error(exc):
            return False
        for module in self.modules:
            module._compiled_call_impl = None
        log(f"torch.compile failed ({type(exc).__name__}: {first_line(exc)}); the denoiser runs eagerly", "warning")
        self.modules = []
        return True

    def step_started(self) -> None:
        self._started = time.perf_counter()

    def step_done(self, log: Logger) -> None:
        """Log the first compiled step's time once: it holds the compilation."""
        if self.active and self.first_step_s is None:
            self.first_step_s = time.perf_counter() - self._started
            log(f"torch.compile: first step {self.first_step_s:.1f} s including compilation "
                f"({len(self.modules)} module(s), backend {self.options.backend})", "info")

    @contextmanager
    def eager(self) -> Iterator[None]:
        """Validation renders run eagerly: other shapes and no_grad would only trigger recompilation."""
        if not self.active:
            yield
            return
        with torch.compiler.set_stance("force_eager"):
            yield


def compile_denoiser(denoiser: torch.nn.Module, options: CompileOptions, log: Logger) -> CompiledDenoiser:
    """Compile the repeated blocks (or the whole denoiser) in place; nothing when dynamo_backend is 'no'."""
    if not options.enabled:
        return CompiledDenoiser()
    modules = repeated_blocks(denoiser) if options.regional else [denoiser]
    if not modules:
        log("dynamo_use_regional_compilation: no repeated blocks found; the whole denoiser is compiled", "warning")
        modules = [denoiser]
    for module in modules:
        module.compile(**options.kwargs())
    what = ", ".join(f"{count} × {name}" for name, count in sorted(Counter(type(m).__name__ for m in modules).items()))
    log(f"torch.compile ({options.backend}{', ' + options.mode if options.mode else ''}): "
        f"{'regional, ' if options.regional else ''}{what}; compiled on the first step", "info")
    return CompiledDenoiser(modules, options)


def is_compile_error(exc: BaseException) -> bool:
    """Errors raised by dynamo or a compiler backend (not by the model's own eager code)."""
    module = type(exc).__module__
    return module.startswith(("torch._dynamo", "torch._inductor", "torch._functorch"))


def first_line(exc: BaseException) -> str:
    """The error's first two non-empty lines (a backend failure says which backend, then why)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2])[:300] if lines else type(exc).__name__
