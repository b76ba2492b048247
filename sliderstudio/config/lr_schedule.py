"""The learning-rate schedule: SimpleTuner's lr_scheduler names and their lr_* settings, via diffusers.

diffusers' `get_scheduler` does not pass `lr_end` to the polynomial schedule nor the cycle count to
plain cosine, so the schedules that take SimpleTuner's extra settings are built directly.
"""
from __future__ import annotations

from typing import Any

from sliderstudio.kernel.errors import ConfigError


def check_schedule(config: Any, file: str) -> None:
    """Settings diffusers would only refuse at the first step, refused with the config instead."""
    if config.lr_scheduler == "polynomial" and config.lr_end >= config.learning_rate:
        raise ConfigError(f"the polynomial schedule decays from learning_rate ({config.learning_rate}) to lr_end, "
                          "so lr_end must be smaller", file=file, key="lr_end", value=config.lr_end)
    if config.lr_scheduler == "cosine_with_restarts" and config.lr_num_cycles != int(config.lr_num_cycles):
        raise ConfigError("cosine_with_restarts needs a whole number of cycles", file=file, key="lr_num_cycles",
                          value=config.lr_num_cycles)


def build_scheduler(optimizer: Any, config: Any, total_steps: int) -> Any:
    from diffusers.optimization import (
        get_cosine_with_hard_restarts_schedule_with_warmup, get_polynomial_decay_schedule_with_warmup,
        get_scheduler,
    )

    warmup = config.lr_warmup_steps
    if config.lr_scheduler == "polynomial":
        return get_polynomial_decay_schedule_with_warmup(optimizer, warmup, total_steps, lr_end=config.lr_end,
                                                         power=config.lr_power)
    if config.lr_scheduler == "cosine_with_restarts":
        return get_cosine_with_hard_restarts_schedule_with_warmup(optimizer, warmup, total_steps,
                                                                  num_cycles=int(config.lr_num_cycles))
    return get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
