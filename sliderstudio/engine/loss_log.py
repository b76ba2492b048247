"""Loss values stay on the device until a logged step reads them, all at once.

Reading a CUDA tensor's value (`float(t)`, `.item()`, `.tolist()`) makes the host wait until the device
has finished everything queued so far, so the host stops queueing the next kernels and the device idles
between steps; on a launch-bound step (SDXL at 1024 px: 5 % MFU eagerly) that wait is much of the step.
So the trainer keeps each step's loss as detached device scalars with their divisors and reads the
steps since the last logged one in one `tolist()` every `logging_steps` steps (and before anything that
needs the rows on disk: a checkpoint, validation, the end). The sums are formed on the host in the order
and precision the per-micro-batch `float()` used before, so the numbers are the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import torch

Value = Union[torch.Tensor, float]
Terms = list[tuple[Value, float]]  # (a micro-batch's loss, what it is divided by in the step's mean)


def step_loss(terms: Terms, values: dict[int, float] | None = None) -> float:
    """Σ value / divisor in order, in double precision, as the loop summed floats before."""
    total = 0.0
    for value, divisor in terms:
        number = values[id(value)] if isinstance(value, torch.Tensor) and values is not None else value
        total += float(number) / divisor
    return total


def read_terms(terms: Terms) -> float:
    """One step's loss now (one synchronisation): for code that needs it at once (a collective)."""
    return step_loss(terms, read_values([terms]))


def read_values(groups: list[Terms]) -> dict[int, float]:
    """The value of every tensor in these steps' terms, by id, from ONE device read."""
    tensors = [v for terms in groups for v, _ in terms if isinstance(v, torch.Tensor)]
    if not tensors:
        return {}
    # .float() is exact for the float32 losses (and bf16/fp16 ones), so each number is what float(t) gave
    numbers = torch.stack([t.reshape(()).float() for t in tensors]).tolist()
    return {id(t): n for t, n in zip(tensors, numbers)}


@dataclass
class PendingStep:
    step: int
    terms: Terms
    lr: float
    used: list[Any]
    seconds: float


@dataclass
class LossLog:
    """The steps whose loss has not been read yet."""

    pending: list[PendingStep] = field(default_factory=list)

    def add(self, step: int, terms: Terms, lr: float, used: list[Any], seconds: float) -> None:
        self.pending.append(PendingStep(step, terms, lr, used, seconds))

    def due(self, step: int, logging_steps: int, last: int) -> bool:
        return step % logging_steps == 0 or step >= last

    def take(self) -> list[tuple[PendingStep, float]]:
        """Every pending step with its loss, read from the device in one go; the log is empty after."""
        rows, self.pending = self.pending, []
        values = read_values([r.terms for r in rows])
        return [(r, step_loss(r.terms, values)) for r in rows]
