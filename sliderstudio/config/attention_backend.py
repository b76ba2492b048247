"""Which scaled-dot-product attention kernel the training step runs, per family and device, with fallbacks.

Every family here reaches attention through `torch.nn.functional.scaled_dot_product_attention` (diffusers'
default processors and its "native" dispatcher backend), so `torch.nn.attention.sdpa_kernel` decides the
kernel for the forward, and the backward follows the kernel the forward recorded. PyTorch's own pick is
usually the fastest, but not always safe: Flux's backward crashed with the cuDNN kernel on an H100 under
torch 2.11 while flash ran at the same speed (STACK-FACTS). So a run holds an ordered chain of kernel
sets; a failure in the first optimizer step moves to the next set and logs which one runs.

`attention_mechanism` takes SimpleTuner's names. Its PyTorch-kernel names run as named; the names of
kernels from packages Slider Studio does not ship are replaced when a config is opened (a "changed" note).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator

# SimpleTuner's values for attention_mechanism (its OPTIONS.md; the registry fills them at run time).
SIMPLETUNER_MECHANISMS: tuple[str, ...] = (
    "diffusers", "xformers", "flash-attn", "flash-attn-2", "flash-attn-3", "flash-attn-3-varlen", "flex",
    "cudnn", "native-efficient", "native-flash", "native-math", "native-npu", "native-xla", "sla",
    "sageattention", "sageattention-int8-fp16-triton", "sageattention-int8-fp16-cuda",
    "sageattention-int8-fp8-cuda",
)
# What runs here: 'diffusers' = the per-family/device chain below; the others force one PyTorch kernel.
NATIVE: dict[str, str] = {"cudnn": "CUDNN_ATTENTION", "native-efficient": "EFFICIENT_ATTENTION",
                          "native-flash": "FLASH_ATTENTION", "native-math": "MATH"}
RUNNABLE: tuple[str, ...] = ("diffusers", *NATIVE)

_FLASH_NOTE = "the flash-attn package is not shipped: PyTorch's own flash kernel (native-flash) runs instead"
_SDPA_NOTE = "not shipped with Slider Studio: PyTorch's SDPA kernels run, chosen per family and device (diffusers)"
# SimpleTuner values that open as another one: value → (value used, why).
SUBSTITUTES: dict[str, tuple[str, str]] = {
    **{name: ("native-flash", _FLASH_NOTE)
       for name in ("flash-attn", "flash-attn-2", "flash-attn-3", "flash-attn-3-varlen")},
    **{name: ("diffusers", _SDPA_NOTE)
       for name in ("xformers", "flex", "sla", "sageattention", "sageattention-int8-fp16-triton",
                    "sageattention-int8-fp16-cuda", "sageattention-int8-fp8-cuda")},
    "native-npu": ("diffusers", "no NPU support here: PyTorch's SDPA kernels run, chosen per family and device"),
    "native-xla": ("diffusers", "no XLA support here: PyTorch's SDPA kernels run, chosen per family and device"),
}
_CUDA_ORDER = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
_CPU_ORDER = ("FLASH_ATTENTION", "MATH")


def check_mechanism(value: str) -> str:
    """The config's validator: a runnable name passes; anything else names the choices.

    SimpleTuner's other names never get here from a config file (they are replaced, with a note, when
    it is opened: simpletuner_keys.VALUE_CHANGES); set directly they are refused with what runs.
    """
    if value in RUNNABLE:
        return value
    if value in SUBSTITUTES:
        raise ValueError(f"{value!r} does not run in Slider Studio ({SUBSTITUTES[value][1]}); "
                         f"choices: {', '.join(RUNNABLE)}")
    raise ValueError(f"{value!r} is not one of SimpleTuner's attention mechanisms: "
                     f"{', '.join(SIMPLETUNER_MECHANISMS)} (Slider Studio runs {', '.join(RUNNABLE)})")


@dataclass(frozen=True)
class KernelSet:
    """One link of the chain: the SDPA backends allowed (None: PyTorch's own choice among all)."""

    backends: tuple[str, ...] | None
    label: str

    def context(self) -> ContextManager:
        if self.backends is None:
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([getattr(SDPBackend, name) for name in self.backends])


def kernel_chain(mechanism: str, device_type: str, cudnn_backward: bool = True) -> list[KernelSet]:
    """The kernels to try, in order, on this device; `cudnn_backward` False (the family's
    `cudnn_attention_backward`) keeps cuDNN attention out of PyTorch's own choice."""
    order = _CUDA_ORDER if device_type == "cuda" else _CPU_ORDER
    singles = [KernelSet((name,), _label(name)) for name in order]
    if mechanism in NATIVE:
        chosen = NATIVE[mechanism]
        return [KernelSet((chosen,), mechanism)] + [k for k in singles if k.backends != (chosen,)]
    if device_type == "cuda" and not cudnn_backward:
        allowed = tuple(name for name in order if name != "CUDNN_ATTENTION")
        return [KernelSet(allowed, "PyTorch's choice without cuDNN")] + [
            k for k in singles if k.backends[0] in allowed]
    return [KernelSet(None, "PyTorch's choice")] + singles


def _label(backend: str) -> str:
    return next((name for name, value in NATIVE.items() if value == backend), backend.lower())


@dataclass
class AttentionKernel:
    """The run's chain and where it stands; `armed` until one optimizer step has completed."""

    chain: list[KernelSet]
    index: int = 0
    armed: bool = True
    failures: list[str] = field(default_factory=list)

    @property
    def current(self) -> KernelSet:
        return self.chain[self.index]

    def wrap(self, inner: Callable[[], ContextManager]) -> Callable[[], ContextManager]:
        """The step's autocast factory with this kernel choice entered around it (forward; backward follows)."""
        @contextmanager
        def both() -> Iterator[None]:
            with self.current.context(), inner():
                yield
        return both

    def fall_back(self, exc: BaseException, log: Callable[[str, str], None]) -> bool:
        """After a failed first step: move to the next kernel set; False when none is left, when it is too
        late, or for errors no kernel raises (kernel failures and CUDA errors are RuntimeErrors)."""
        if not self.armed or not isinstance(exc, RuntimeError) or self.index + 1 >= len(self.chain):
            return False
        failed = self.current.label
        self.index += 1
        self.failures.append(f"{failed}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        log(f"attention: the first step failed with {failed} ({self.failures[-1].split(': ', 1)[1]}); "
            f"retrying with {self.current.label}", "warning")
        return True

    def settled(self, log: Callable[[str, str], None]) -> None:
        """The first step completed: the kernel is fixed for the run (logged once when it is a fallback)."""
        if self.armed and self.failures:
            log(f"attention: {self.current.label} runs (after {len(self.failures)} failed)", "info")
        self.armed = False


def attention_for(mechanism: str, device: Any, cudnn_backward: bool = True) -> AttentionKernel:
    return AttentionKernel(kernel_chain(mechanism, getattr(device, "type", str(device)), cudnn_backward))
