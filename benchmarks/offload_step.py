"""CPU cost of the offloading hooks: the tiny SD 1.x slider step with gradient checkpointing, with and
without `offload_blocks` (onload device = CPU, so a move copies nothing: what remains is the hooks).

  python benchmarks/offload_step.py [--steps 20]

CPU time per step (time.process_time, one thread, the two variants interleaved so a busy machine
slows both alike), median of --steps after 2 warm-up steps.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable


def make_step(offload: bool) -> Callable[[], None]:
    import torch

    from sliderstudio.adapters.adapters import attach_lora
    from sliderstudio.engine.block_offload import install
    from sliderstudio.families.tiny import tiny_unet

    unet = tiny_unet()
    attach_lora(unet, [n for n, _ in unet.named_modules() if n.endswith(("to_q", "to_v"))] + ["conv_in"], 2, 2.0)
    unet.enable_gradient_checkpointing()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    if offload:
        install(unet, torch.device("cpu"), params)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(1, 4, 8, 8, generator=g), torch.tensor([5]), torch.randn(1, 4, 32, generator=g))

    def step() -> None:
        unet(*inputs).sample.square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = {"checkpointing": make_step(False), "checkpointing + offload_blocks": make_step(True)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(2):
        for step in steps.values():
            step()
    for _ in range(args.steps):
        for name, step in steps.items():
            t0 = time.process_time()
            step()
            times[name].append(time.process_time() - t0)
    medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
    for name, ms in medians.items():
        print(f"{name:<32}{ms:8.1f} CPU ms/step")
    plain, offloaded = medians.values()
    print(f"ratio {offloaded / plain:.3f}")


if __name__ == "__main__":
    main()
