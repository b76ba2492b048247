"""When validation and checkpoints are due: every N steps and/or every N epochs (SimpleTuner's keys).

SimpleTuner schedules both by steps (`*_step_interval`) and by epochs (`checkpoint_epoch_interval`,
`validation_epoch_interval`, which may be a fraction); when both are set, both schedules run. An
epoch here is one pass of the sampler's plan, counted in optimizer steps.
"""
from __future__ import annotations

import math


def steps_per_epoch(micro_batches_per_epoch: int, accumulation: int) -> int:
    return max(1, math.ceil(micro_batches_per_epoch / accumulation))


def is_due(step: int, every_steps: int | None, every_epochs: float | None, per_epoch: int) -> bool:
    """True at the steps where either schedule fires; 0 / None switches a schedule off."""
    if every_steps and step % every_steps == 0:
        return True
    if every_epochs:
        return step % max(1, round(every_epochs * per_epoch)) == 0
    return False
