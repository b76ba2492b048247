"""offload_blocks: the denoiser's frozen blocks streamed from CPU memory by diffusers' group-offloading hooks.

On this CPU the onload device is the CPU too, so the hooks run but a move copies nothing; what they do
is read from their tally (every onload and offload, per group, in order).
"""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.engine import block_offload, training_setup
from sliderstudio.adapters.adapters import attach_lora, slider_scale
from sliderstudio.engine.block_offload import install, offload_problem, require_offloadable
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.kernel.events import Log
from sliderstudio.app.memory_plan import PlanOptions, cheapest_fit, plan
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer
from sliderstudio.families.registry import get_family
from sliderstudio.families.tiny import tiny_unet

ADAPTER = "pytorch_lora_weights.safetensors"
CPU = torch.device("cpu")


def slider_unet():
    unet = tiny_unet()
    targets = [n for n, _ in unet.named_modules() if n.endswith(("to_q", "to_v"))] + ["conv_in"]
    attach_lora(unet, targets, 2, 2.0)
    adapter = [p for p in unet.parameters() if p.requires_grad]
    return unet, adapter


def unet_inputs(unet):
    g = torch.Generator().manual_seed(3)
    return (torch.randn(1, unet.config.in_channels, 8, 8, generator=g), torch.tensor([10]),
            torch.randn(1, 4, unet.config.cross_attention_dim, generator=g))


def train(root):
    events = []
    trainer = Trainer(load_project(root), events.append)
    path = trainer.run()
    losses = [json.loads(line)["loss"] for line in (root / "output" / "metrics.jsonl").read_text().splitlines()]
    return path, events, np.array(losses), trainer.session


def test_offloaded_training_equals_the_plain_run(tmp_path, tiny_models):
    """Same seed, same steps: the loss curve and the adapter are bit-identical (tolerance 0) to a run with
    gradient checkpointing, which offloading turns on. (Against a run without checkpointing the
    recomputation's round-off shows: adapter values within ~1e-5 after 6 AdamW steps.)"""
    common = {"max_train_steps": 6}
    plain = make_project(tmp_path / "plain", tiny_models["sd1x"], config={**common, "gradient_checkpointing": True})
    offloaded = make_project(tmp_path / "offload", tiny_models["sd1x"], config={**common, "offload_blocks": True})
    plain_path, _, plain_loss, _ = train(plain)
    path, events, loss, session = train(offloaded)
    np.testing.assert_array_equal(loss, plain_loss)
    tensors, plain_tensors = load_file(str(path)), load_file(str(plain_path))
    assert set(tensors) == set(plain_tensors)  # same names: the hooks rename nothing
    for key, value in tensors.items():
        assert torch.equal(value, plain_tensors[key]), key
    assert any(v.abs().sum() > 0 for k, v in tensors.items() if "lora_B" in k)
    logs = [e.message for e in events if isinstance(e, Log)]
    assert any("gradient_checkpointing turned on as well" in m for m in logs)  # the config had it off
    assert any(m.startswith("offload_blocks: 4 blocks in 4 groups") for m in logs)
    tally = session.offload.tally
    # 6 steps × (forward + backward recomputation) onload every group at least 12 times
    assert min(tally.onloads) >= 12 and tally.most_on_device == 1
    # the optimizer holds the adapter's parameters, none of which any group moves
    moved = {id(t) for g in session.offload.groups for t in g.parameters}
    optimised = [p for group in session.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in optimised} == {id(p) for p in session.params}
    assert not moved & {id(p) for p in optimised}
    assert all(p.requires_grad and p.device == CPU for p in optimised)


def test_hooks_are_installed_and_leave_the_adapter_trainable():
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    unet, adapter = slider_unet()
    before = {id(p): p.detach().clone() for p in adapter}
    offload = install(unet, CPU, adapter)
    assert _is_group_offload_enabled(unet)  # diffusers' own pipelines see the hooks (their onload device)
    assert [len(g.parameters) > 0 for g in offload.groups] == [True] * 4
    grouped = [t for g in offload.groups for t in g.parameters]
    assert all(not t.requires_grad for t in grouped)
    assert not {id(t) for t in grouped} & set(before)
    assert all(p.requires_grad and torch.equal(p, before[id(p)]) for p in adapter)
    # every frozen block parameter is in exactly one group; the rest (the stem) stays on the device
    blocks = [p for name in ("down_blocks", "up_blocks") for p in getattr(unet, name).parameters()
              if not p.requires_grad]
    assert sorted(map(id, blocks)) == sorted(map(id, grouped))
    assert offload.stem_bytes > 0


def test_blocks_move_one_group_at_a_time_in_forward_and_in_backward():
    unet, adapter = slider_unet()
    unet.enable_gradient_checkpointing()
    unet.train()
    offload = install(unet, CPU, adapter)
    tally = offload.tally
    assert tally.order == [("off", i) for i in range(4)]  # installing offloads every group
    tally.order.clear()
    out = unet(*unet_inputs(unet)).sample
    assert tally.order == [(move, i) for i in range(4) for move in ("on", "off")]
    tally.order.clear()
    out.square().mean().backward()
    # the UNet checkpoints resnets and attentions *inside* its blocks: the recomputation in backward
    # calls them without the block, and the inner pre-hooks bring each group back, last block first
    assert [i for move, i in tally.order if move == "on"] == [3, 2, 1, 0]
    assert tally.most_on_device == 1
    lora_b = [p for n, p in unet.named_parameters() if "lora_B" in n]
    assert len(lora_b) == len(adapter) // 2 and all(p.grad.abs().sum() > 0 for p in lora_b)


def test_strength_zero_reproduces_the_base_with_offloading():
    unet, adapter = slider_unet()
    inputs = unet_inputs(unet)
    with torch.no_grad(), slider_scale(unet, 0.0):
        base = unet(*inputs).sample
    for name, p in unet.named_parameters():
        if "lora_B" in name:  # zero at first: give the slider an effect
            torch.nn.init.normal_(p, std=0.1)
    install(unet, CPU, adapter)
    with torch.no_grad(), slider_scale(unet, 0.0):
        at_zero = unet(*inputs).sample
    with torch.no_grad(), slider_scale(unet, 1.0):
        at_one = unet(*inputs).sample
    assert torch.equal(at_zero, base)
    assert not torch.allclose(at_one, base)


def test_what_cannot_be_offloaded_is_named():
    sd = get_family("sd1x")
    with pytest.raises(ConfigError) as err:
        require_offloadable(sd, "nf4-bnb", False)
    assert err.value.key == "offload_blocks" and "nf4-bnb" in str(err.value) and "cannot move" in str(err.value)
    with pytest.raises(ConfigError, match="not available for ControlNet sliders"):
        require_offloadable(sd, "no_change", True)
    with pytest.raises(ConfigError) as err:  # its levels are lists of lists: most weights are never streamed
        require_offloadable(get_family("stable_cascade"), "no_change", False)
    assert "streamable blocks hold only" in str(err.value) and err.value.key == "offload_blocks"
    assert offload_problem(torch.nn.Sequential(torch.nn.Linear(2, 2))) is not None  # not a diffusers model
    require_offloadable(sd, "int8-torchao", False)  # torchao weights move


def test_training_a_denoiser_that_cannot_be_offloaded_exits_2_before_loading(tmp_path, tiny_models, capsys,
                                                                            monkeypatch):
    monkeypatch.setattr(training_setup, "load_pipeline", lambda *a, **k: pytest.fail("weights were loaded"))
    monkeypatch.setattr(block_offload, "MIN_STREAMED_SHARE", 1.01)  # no real model streams all its weights
    root = make_project(tmp_path, tiny_models["sd1x"], config={"musubi_blocks_to_swap": 10})
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "offload_blocks" in err and "cannot be offloaded" in err and "streamable blocks hold only" in err
    assert not (root / "output" / ADAPTER).exists()


def test_planner_counts_streamed_weights_and_proposes_offloading_when_nothing_else_fits():
    flux = get_family("flux")
    options = PlanOptions(caches_complete=True)
    whole, offloaded = plan(flux, options), plan(flux, PlanOptions(caches_complete=True, offload_blocks=True))
    assert offloaded.options.gradient_checkpointing  # offloading brings checkpointing with it
    assert offloaded.weights < whole.weights / 10  # stem + two of 57 groups
    assert offloaded.activations == plan(flux, PlanOptions(caches_complete=True,
                                                           gradient_checkpointing=True)).activations
    assert any("offload_blocks" in n for n in offloaded.notes)
    two = plan(flux, PlanOptions(caches_complete=True, offload_blocks=True, offload_blocks_per_group=2))
    assert two.weights > offloaded.weights
    advice = cheapest_fit(flux, options, 12)
    assert advice.changes == {"offload_blocks": True} and advice.fitted.total <= 12 * 1024 ** 3
    assert "offload_blocks True" in advice.summary()
    # where checkpointing is enough, offloading (slower) is not proposed
    assert "offload_blocks" not in cheapest_fit(get_family("sdxl"), options, 8).changes
    # a first run fills the cache before the denoiser is on the device
    first = plan(flux, PlanOptions(offload_blocks=True))
    assert first.caching_peak == first.caching + first.overhead


def test_plan_memory_with_offloading_on_a_family_that_cannot_exits_2(tmp_path, tiny_models, capsys):
    root = make_project(tmp_path, tiny_models["sd1x"], family="stable_cascade", config={"offload_blocks": True})
    assert main(["plan", "--config", str(root), "--memory", "--vram", "24"]) == 2
    err = capsys.readouterr().err
    assert "offload_blocks" in err and "cannot be offloaded" in err
