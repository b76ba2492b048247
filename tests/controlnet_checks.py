"""What every transformer ControlNet slider test checks after training: the denoiser untouched, the adapter
on the ControlNet only. One place, so the SD3/Flux and AuraFlow/HiDream tests cannot drift apart."""
import torch
from safetensors.torch import load_file

from sliderstudio.adapters import adapter_io
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family


def assert_trained_on_the_controlnet_only(session, family: str, model, adapter_path) -> None:
    transformer, controlnet = session.denoiser.denoiser, session.denoiser.controlnet
    # the transformer: no adapter layer, no gradient, every weight as loaded, no hook left behind
    assert not any("lora" in n for n, _ in transformer.named_parameters())
    assert not any(p.requires_grad for p in transformer.parameters())
    fresh = dict(load_pipeline(get_family(family), str(model)).transformer.named_parameters())
    assert all(torch.equal(p, fresh[n]) for n, p in transformer.named_parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in transformer.modules())
    # the adapter sits on the ControlNet only, and its parameters are the ones that were optimised
    keys = load_file(str(adapter_path)).keys()
    assert keys and all(k.startswith("controlnet.") for k in keys)
    assert adapter_io.read_metadata(adapter_path)["controlnet"] is True
    assert {p for p in session.params} <= set(controlnet.parameters())
