"""The slider step's contract (SPEC §2) on tiny real models loaded from disk."""
import pytest
import torch

from sliderstudio.adapters import adapters
from sliderstudio.engine.sampler import MicroBatch
from sliderstudio.engine.slider_step import SliderStep, StepData
from sliderstudio.adapters.targets import resolve_on_module
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family


def setup(path, family_id, b_std=1e-3, seed=0):
    family = get_family(family_id)
    pipe = load_pipeline(family, str(path))
    unet = family.denoiser(pipe)
    names = resolve_on_module(unet, family.presets["slider"]).module_names
    adapters.attach_lora(unet, names, 4, 4, seed=seed)
    adapters.activate(unet, adapters.SLIDER)
    torch.manual_seed(seed)
    for n, p in unet.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, b_std)
    return family, pipe, unet


def inputs(family, pipe, batch=2):
    g = torch.Generator().manual_seed(0)
    cond = family.collate(family.encode_prompts(pipe, ["a red circle"] * batch), torch.device("cpu"),
                          torch.float32, 64)
    return torch.randn(batch, 4, 8, 8, generator=g), torch.tensor([100, 700][:batch]), cond


@pytest.mark.parametrize("family_id", ["sd1x", "sd2x", "sdxl"])
def test_strength_zero_is_the_base_model_and_signs_oppose(tiny_models, family_id):
    family, pipe, unet = setup(tiny_models[family_id], family_id)
    x, t, cond = inputs(family, pipe)
    unet.disable_adapters()
    base = family.predict(unet, x, t, cond)
    unet.enable_adapters()
    adapters.activate(unet, adapters.SLIDER)
    with adapters.slider_scale(unet, 0.0):
        zero = family.predict(unet, x, t, cond)
    with adapters.slider_scale(unet, 0.7):
        plus = family.predict(unet, x, t, cond)
    with adapters.slider_scale(unet, -0.7):
        minus = family.predict(unet, x, t, cond)
    assert torch.equal(zero, base)
    up, down = (plus - base).flatten(), (minus - base).flatten()
    assert up.norm() > 0
    assert torch.nn.functional.cosine_similarity(up, down, dim=0) < -0.99
    # The scale is restored exactly after each context.
    assert adapters.get_scales(unet) == [1.0] * len(adapters.get_scales(unet))


def test_per_sample_scale_matches_separate_forwards(tiny_models):
    family, pipe, unet = setup(tiny_models["sd1x"], "sd1x", b_std=0.05)
    x, t, cond = inputs(family, pipe)
    with adapters.PerSampleScale(unet, [-1.0, 0.5]):
        both = family.predict(unet, x, t, cond)
    with adapters.slider_scale(unet, -1.0):
        a = family.predict(unet, x, t, cond)
    with adapters.slider_scale(unet, 0.5):
        b = family.predict(unet, x, t, cond)
    assert torch.allclose(both[0], a[0], atol=1e-5) and torch.allclose(both[1], b[1], atol=1e-5)


def step_for(family, pipe, unet, captions=("a red circle",)):
    conds = dict(zip(captions, family.encode_prompts(pipe, list(captions))))
    conds[""] = family.encode_prompts(pipe, [""])[0]
    g = torch.Generator().manual_seed(1)
    data = StepData(latents={(b, i): torch.randn(4, 8, 8, generator=g) for b in ("p", "n", "z") for i in range(2)},
                    captions={(b, i): captions[0] for b in ("p", "n", "z") for i in range(2)},
                    conditioning=conds, image_size={"p": 64, "n": 64, "z": 64})
    return SliderStep(family, unet, family.noise_schedule(pipe), data, seed=0, device=torch.device("cpu"),
                      dtype=torch.float32)


def mb(index, bucket, role, strength, paired=False, preserve=False):
    return MicroBatch(index, 0, bucket, role, strength, (0, 1), ("a", "b"), paired, preserve)


def test_paired_negative_shares_noise_and_timesteps(tiny_models):
    family, pipe, unet = setup(tiny_models["sd1x"], "sd1x")
    step = step_for(family, pipe, unet)
    shape = torch.Size((2, 4, 8, 8))
    pos_noise, pos_t = step.noise_for(mb(0, "p", "positive", 0.5), shape)
    neg_noise, neg_t = step.noise_for(mb(1, "n", "negative", -0.5, paired=True), shape)
    assert torch.equal(neg_noise, pos_noise) and torch.equal(neg_t, pos_t)
    other, _ = step.noise_for(mb(1, "n", "negative", -0.5, paired=False), shape)
    assert not torch.equal(other, pos_noise)
    # Stateless: a fresh step object (a resumed run that starts at the paired negative) draws the same.
    again = step_for(family, pipe, unet)
    resumed, resumed_t = again.noise_for(mb(1, "n", "negative", -0.5, paired=True), shape)
    assert torch.equal(resumed, pos_noise) and torch.equal(resumed_t, pos_t)


def test_only_the_slider_trains_and_the_assistant_stays_frozen_and_unscaled(tiny_models):
    family, pipe, unet = setup(tiny_models["sd1x"], "sd1x")
    names = resolve_on_module(unet, family.presets["slider"]).module_names
    adapters.attach_lora(unet, names[:6], 2, 2, adapter=adapters.ASSISTANT, seed=3)
    adapters.activate(unet, adapters.SLIDER, [adapters.ASSISTANT])
    adapters.set_multiplier(unet, 0.8, adapters.ASSISTANT)
    for n, p in unet.named_parameters():
        if "assistant" in n and "lora_B" in n:
            p.data.normal_(0, 0.01)
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    assistant_scales = adapters.get_scales(unet, adapters.ASSISTANT)
    seen = []
    hook_layer = next(layer for layer in adapters.lora_layers(unet) if adapters.ASSISTANT in layer.scaling)
    hook = hook_layer.register_forward_pre_hook(
        lambda m, a: seen.append((m.scaling[adapters.ASSISTANT], m.scaling[adapters.SLIDER])))
    params = adapters.adapter_parameters(unet)
    opt = torch.optim.AdamW(params, lr=1e-2)
    step = step_for(family, pipe, unet)
    for i, (bucket, strength) in enumerate([("p", 0.5), ("n", -0.5), ("p", 0.5)]):
        step.loss(mb(i, bucket, "positive" if strength > 0 else "negative", strength)).backward()
        opt.step()
        opt.zero_grad()
    hook.remove()
    assert all(abs(a - 0.8) < 1e-9 for a, _ in seen)  # assistant scale fixed during every forward
    assert sorted({round(s, 6) for _, s in seen}) == [-0.5, 0.5]  # slider scaled by the bucket strength
    assert adapters.get_scales(unet, adapters.ASSISTANT) == assistant_scales
    changed = {n for n, p in unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".slider." in n for n in changed)
    assert not any("assistant" in n for n, p in unet.named_parameters() if p.requires_grad)
    assert all("assistant" not in k for k in adapters.slider_state_dict(unet))


def test_neutral_batches_pull_toward_the_base_prediction(tiny_models):
    family, pipe, unet = setup(tiny_models["sd1x"], "sd1x", b_std=0.02)
    step = step_for(family, pipe, unet)
    x, t, cond = inputs(family, pipe)

    def drift() -> float:
        with torch.no_grad():
            with adapters.slider_scale(unet, 0.0):
                base = family.predict(unet, x, t, cond)
            with adapters.slider_scale(unet, 0.5):
                return (family.predict(unet, x, t, cond) - base).pow(2).mean().item()

    start = drift()
    opt = torch.optim.AdamW(adapters.adapter_parameters(unet), lr=3e-3, weight_decay=0)
    for i in range(12):
        step.loss(mb(i, "z", "neutral", 0.5 if i % 2 == 0 else -0.5, preserve=True)).backward()
        opt.step()
        opt.zero_grad()
    assert drift() < 0.5 * start
