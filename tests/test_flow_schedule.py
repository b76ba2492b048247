"""Flow-matching training draws σ with the shift the family's own sampler uses at that resolution."""
import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from sliderstudio.families.registry import get_family


class Pipe:
    def __init__(self, scheduler, vae_scale_factor=8):
        self.scheduler, self.vae_scale_factor = scheduler, vae_scale_factor


def flux_scheduler(**kw):
    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096, **kw)


@pytest.mark.parametrize("size,seq_len", [(256, 256), (512, 1024), (1024, 4096)])
def test_dynamic_shift_matches_the_schedulers_time_shift(size, seq_len):
    flux, scheduler = get_family("flux"), flux_scheduler()
    assert flux.image_seq_len(Pipe(scheduler), size) == seq_len
    schedule = flux.noise_schedule(Pipe(scheduler), image_size=size)
    mu = 0.5 + (1.15 - 0.5) * (seq_len - 256) / (4096 - 256)
    assert schedule.shift == pytest.approx(math.exp(mu))
    u = torch.linspace(0.05, 0.95, 10)
    ours = schedule.shift * u / (1 + (schedule.shift - 1) * u)
    theirs = scheduler.time_shift(mu, 1.0, u)
    assert torch.allclose(ours, theirs.float(), atol=1e-6)


def test_static_shift_and_wan_flow_shift():
    flux = get_family("flux")
    assert flux.noise_schedule(Pipe(FlowMatchEulerDiscreteScheduler(shift=3.0)), image_size=1024).shift == 3.0
    wan = get_family("wan")
    from diffusers import UniPCMultistepScheduler

    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    assert wan.noise_schedule(Pipe(unipc)).shift == 5.0


def test_without_a_resolution_the_configured_shift_is_used():
    assert get_family("flux").noise_schedule(Pipe(flux_scheduler())).shift == 3.0
