"""The SimpleTuner keys Slider Studio implements change what training does (values checked by hand)."""
import json
import math
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import make_project
from sliderstudio.config.config import TrainConfig
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.kernel.events import Log
from sliderstudio.engine.losses import SliderLoss
from sliderstudio.config.lr_schedule import build_scheduler
from sliderstudio.config.optimizers import build_optimizer, check_optimizer
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer

CPU = torch.device("cpu")


def params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(64, 64))]


def cfg(**changes):
    return TrainConfig(**changes)


# --- optimizer ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cls_path", [
    ("adamw_bf16", "torch.optim:AdamW"),
    ("torch-adamw", "torch.optim:AdamW"),
    ("torch-adafactor", "torch.optim:Adafactor"),
    ("torch-sgd", "torch.optim:SGD"),
    ("prodigy", "prodigyopt:Prodigy"),
    ("optimi-lion", "lion_pytorch:Lion"),
    ("adamw_schedulefree", "torch.optim:AdamW"),
])
def test_optimizer_names_build_their_class(name, cls_path):
    import importlib

    module, attr = cls_path.split(":")
    optimizer = build_optimizer(params(), cfg(optimizer=name, learning_rate=3e-4), CPU)
    assert type(optimizer) is getattr(importlib.import_module(module), attr)
    assert optimizer.param_groups[0]["lr"] == 3e-4


def test_adam_settings_and_optimizer_betas_reach_the_optimizer():
    group = build_optimizer(params(), cfg(adam_beta1=0.8, adam_beta2=0.95, adam_epsilon=1e-6,
                                          adam_weight_decay=0.03), CPU).param_groups[0]
    assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.8, 0.95), 1e-6, 0.03)
    group = build_optimizer(params(), cfg(optimizer_beta1=0.5, optimizer_beta2=0.6), CPU).param_groups[0]
    assert group["betas"] == (0.5, 0.6)
    lion = build_optimizer(params(), cfg(optimizer="optimi-lion"), CPU).param_groups[0]
    assert lion["betas"] == (0.9, 0.99)  # Lion keeps its own betas unless optimizer_beta* are given


def test_optimizer_config_string_reaches_prodigy_and_bad_settings_name_the_key():
    group = build_optimizer(params(), cfg(optimizer="prodigy", optimizer_config="d_coef=0.25,use_bias_correction=true"),
                            CPU).param_groups[0]
    assert group["d_coef"] == 0.25 and group["use_bias_correction"] is True
    with pytest.raises(ConfigError) as err:
        build_optimizer(params(), cfg(optimizer="prodigy", optimizer_config="warp=9"), CPU)
    assert err.value.key == "optimizer_config" and "'warp'" in str(err.value) and "d_coef" in str(err.value)
    with pytest.raises(ConfigError) as err:
        check_optimizer(cfg(optimizer_config="d_coef"), "c.json")
    assert err.value.key == "optimizer_config"


def test_eight_bit_adamw_or_its_stand_in():
    """bnb-adamw8bit runs bitsandbytes' AdamW8bit (checked on this CPU) when the [bnb] extra is installed,
    else AdamW with a note saying so; paged variants cannot run without CUDA (exit 2)."""
    import importlib.util

    optimizer = build_optimizer(params(), cfg(optimizer="bnb-adamw8bit"), CPU)
    notes = check_optimizer(cfg(optimizer="bnb-adamw8bit"), "c.json")
    if importlib.util.find_spec("bitsandbytes"):
        assert type(optimizer).__name__ == "AdamW8bit" and notes == []
        loss = (optimizer.param_groups[0]["params"][0] ** 2).sum()
        loss.backward()
        optimizer.step()
        state = optimizer.state[optimizer.param_groups[0]["params"][0]]
        assert state["state1"].dtype == torch.uint8
        with pytest.raises(ConfigError, match="CUDA"):
            build_optimizer(params(), cfg(optimizer="bnb-adamw8bit-paged"), CPU)
    else:
        assert type(optimizer).__name__ == "AdamW"
        assert "bitsandbytes" in notes[0].detail and "sliderstudio[bnb]" in notes[0].detail


# --- lr schedule -------------------------------------------------------------------------------
def lrs(config, total, steps):
    optimizer = torch.optim.SGD(params(), lr=config.learning_rate)
    scheduler = build_scheduler(optimizer, config, total)
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return out


def test_polynomial_schedule_uses_lr_end_and_power():
    config = cfg(lr_scheduler="polynomial", learning_rate=1e-3, lr_end=1e-5, lr_power=2.0, lr_warmup_steps=2)
    got = lrs(config, 12, 12)
    assert got[0] == 0.0 and got[1] == pytest.approx(5e-4)
    for k in range(2, 12):
        expected = (1e-3 - 1e-5) * (1 - (k - 2) / 10) ** 2 + 1e-5
        assert got[k] == pytest.approx(expected)


def test_cosine_with_restarts_cycles():
    got = lrs(cfg(lr_scheduler="cosine_with_restarts", learning_rate=1.0, lr_num_cycles=2), 10, 10)
    assert got[0] == pytest.approx(1.0) and got[5] == pytest.approx(1.0)  # restarted half-way
    assert got[4] < 0.2 and got[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.4)))


def test_polynomial_lr_end_above_learning_rate_is_refused():
    from sliderstudio.config.config import parse_train_config

    with pytest.raises(ConfigError) as err:
        parse_train_config({"lr_scheduler": "polynomial", "learning_rate": 1e-7, "lr_end": 1e-6}, "c.json")
    assert err.value.key == "lr_end"


# --- loss --------------------------------------------------------------------------------------
def test_huber_and_smooth_l1_match_hand_computation():
    pred = torch.tensor([[0.0, 1.0, -3.0]])
    target = torch.zeros(1, 3)
    t = torch.tensor([500])
    c = 0.2
    huber = SliderLoss("huber", c, "constant")(pred, target, t)
    expected = sum(2 * c * (math.sqrt(d * d + c * c) - c) for d in (0.0, 1.0, -3.0)) / 3
    assert float(huber) == pytest.approx(expected)
    smooth = SliderLoss("smooth_l1", c, "constant")(pred, target, t)
    assert float(smooth) == pytest.approx(expected / c)
    assert float(SliderLoss("l2")(pred, target, t)) == pytest.approx((0 + 1 + 9) / 3)


def test_huber_schedules_move_c_with_the_timestep():
    from diffusers import DDPMScheduler

    schedule = DDPMScheduler(num_train_timesteps=1000)
    t = torch.tensor([0, 500, 999])
    expo = SliderLoss("huber", 0.1, "exponential", schedule).transition(t)
    assert expo.tolist() == pytest.approx([1.0, 0.1 ** 0.5, 0.1 ** 0.999])
    snr = SliderLoss("huber", 0.1, "snr", schedule).transition(t)
    a = schedule.alphas_cumprod[t]
    sigma = ((1 - a) / a).sqrt()
    assert snr.tolist() == pytest.approx(((1 - 0.1) / (1 + sigma) ** 2 + 0.1).tolist())
    assert snr[0] > snr[1] > snr[2] > 0.1


# --- flow shift --------------------------------------------------------------------------------
def flow_pipe(**scheduler):
    return SimpleNamespace(scheduler=SimpleNamespace(config={"shift": 1.0, **scheduler}), vae_scale_factor=8)


def test_flow_schedule_shift_and_auto_shift():
    from sliderstudio.families.flow import training_schedule
    from sliderstudio.families.registry import get_family

    family = get_family("sd3", "c.json")
    base, note = training_schedule(family, flow_pipe(), cfg(resolution=1024))
    assert base.shift == 1.0 and note is None
    fixed, _ = training_schedule(family, flow_pipe(), cfg(resolution=1024, flow_schedule_shift=3.0))
    assert fixed.shift == 3.0
    u = torch.sigmoid(torch.randn(5, generator=torch.Generator().manual_seed(1)))
    drawn = family.sample_timesteps(fixed, 5, torch.Generator().manual_seed(1)) / 1000
    assert drawn.tolist() == pytest.approx((3 * u / (1 + 2 * u)).tolist())
    auto, _ = training_schedule(family, flow_pipe(), cfg(resolution=1024, flow_schedule_auto_shift=True,
                                                         flow_schedule_shift=3.0))
    seq = (1024 // 16) ** 2  # 4096 tokens: μ reaches max_shift
    assert seq == 4096 and auto.shift == pytest.approx(math.exp(1.15))
    small, _ = training_schedule(family, flow_pipe(), cfg(resolution=256, flow_schedule_auto_shift=True))
    assert small.shift == pytest.approx(math.exp(0.5))  # 256 tokens: μ = base_shift


def test_flow_shift_on_a_non_flow_family_is_a_warning():
    from sliderstudio.families.flow import training_schedule
    from sliderstudio.families.registry import get_family

    pipe = SimpleNamespace(scheduler=SimpleNamespace(config={"num_train_timesteps": 1000, "beta_schedule": "linear",
                                                             "prediction_type": "epsilon"}))
    schedule, note = training_schedule(get_family("sd1x", "c.json"), pipe, cfg(flow_schedule_shift=3.0))
    assert "flow-matching models only" in note and hasattr(schedule, "alphas_cumprod")


# --- whole runs on the tiny SD model ----------------------------------------------------------
def run(root, overrides=None):
    events = []
    Trainer(load_project(root, overrides), events.append).run()
    return events


def lora_b(root):
    tensors = load_file(str(root / "output" / "pytorch_lora_weights.safetensors"))
    return torch.cat([v.flatten() for k, v in sorted(tensors.items()) if "lora_B" in k])


def test_grad_clip_method_value_vs_norm(tmp_path, tiny_models):
    """One SGD step from lora_B = 0: the saved lora_B is exactly −lr × the clipped gradient."""
    common = {"max_train_steps": 1, "optimizer": "torch-sgd", "learning_rate": 1.0, "adam_weight_decay": 0.0,
              "max_grad_norm": 1e-4}
    value = make_project(tmp_path / "v", tiny_models["sd1x"], config={**common, "grad_clip_method": "value"})
    run(value)
    b = lora_b(value)
    assert float(b.abs().max()) == pytest.approx(1e-4, rel=1e-5)  # each gradient value capped
    assert float(b.norm()) > 2e-4
    norm = make_project(tmp_path / "n", tiny_models["sd1x"], config={**common, "grad_clip_method": "norm"})
    run(norm)
    assert float(lora_b(norm).norm()) == pytest.approx(1e-4, rel=1e-3)  # the total norm capped


def test_huber_loss_is_used_by_the_run(tmp_path, tiny_models):
    def first_loss(name, **extra):
        root = make_project(tmp_path / name, tiny_models["sd1x"], config={"max_train_steps": 1, **extra})
        run(root)
        return json.loads((root / "output" / "metrics.jsonl").read_text().splitlines()[0])["loss"]

    l2 = first_loss("l2")
    huber = first_loss("huber", loss_type="huber", huber_schedule="constant", huber_c=0.1)
    assert huber < l2 and huber != pytest.approx(l2)


def test_intervals_limit_and_validation_sizes_in_one_run(tmp_path, tiny_models):
    root = make_project(tmp_path / "p", tiny_models["sd1x"], prompts={"red": "a red square"}, config={
        "max_train_steps": 5, "checkpoint_step_interval": 2, "checkpoints_total_limit": 1,
        "validation_step_interval": 3, "validation_resolution": "64x32,32", "user_prompt_library": "prompts.json",
        "vae_enable_tiling": True})
    events = run(root)
    out = root / "output"
    # checkpoints at 2 and 4 (5 is the final adapter); the limit keeps the newest one
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-000004"]
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-000003", "step-000005"]
    files = sorted(p.name for p in (out / "validation" / "step-000003").iterdir())
    assert files == ["red_32x32_s+1.00.png", "red_64x32_s+1.00.png"]
    assert Image.open(out / "validation" / "step-000003" / "red_64x32_s+1.00.png").size == (64, 32)
    logs = [e.message for e in events if isinstance(e, Log)]
    assert any("mapped: checkpoint_step_interval → checkpointing_steps" in m for m in logs)


def test_validation_prompt_library_adds_the_builtin_prompts(tmp_path):
    root = make_project(tmp_path / "p", "/no/model", prompts={"red": "a red square"},
                        config={"user_prompt_library": "prompts.json"})
    assert [p.name for p in load_project(root).validation_prompts()] == ["red"]
    prompts = load_project(root, {"validation_prompt_library": True}).validation_prompts()
    assert prompts[0].name == "red" and len(prompts) == 9
    assert all(p.name.startswith("library_") and p.prompt for p in prompts[1:])


def test_vae_tiling_and_slicing_are_set_on_the_pipeline(tiny_models):
    from sliderstudio.engine.training_setup import apply_vae_options
    from sliderstudio.families.loading import load_pipeline
    from sliderstudio.families.registry import get_family

    pipe = load_pipeline(get_family("sd1x", "c.json"), str(tiny_models["sd1x"]), torch.float32, CPU)
    assert not pipe.vae.use_tiling and not pipe.vae.use_slicing
    logs = []
    apply_vae_options(pipe, cfg(vae_enable_tiling=True, vae_enable_slicing=True), lambda m, lvl: logs.append(m))
    assert pipe.vae.use_tiling and pipe.vae.use_slicing and logs == []
    apply_vae_options(SimpleNamespace(vae=object()), cfg(vae_enable_tiling=True), lambda m, lvl: logs.append(m))
    assert "has no enable_tiling()" in logs[0]


def test_guidance_rescale_reaches_pipelines_that_take_it():
    from sliderstudio.engine.validation_render import PipeCallOverrides, accepts_guidance_rescale

    calls = []

    class Takes:
        def __call__(self, prompt=None, height=None, width=None, guidance_rescale=0.0):
            calls.append((height, width, guidance_rescale))

    class Refuses:
        def __call__(self, prompt=None, height=None, width=None):
            calls.append((height, width))

    assert accepts_guidance_rescale(Takes()) and not accepts_guidance_rescale(Refuses())
    PipeCallOverrides(Takes(), 96, 64, 0.7)(prompt="x", height=80, width=80)
    PipeCallOverrides(Refuses(), 96, 64, 0.7)(prompt="x", height=80, width=80)
    assert calls == [(64, 96, 0.7), (64, 96)]
    from diffusers import StableDiffusionPipeline

    assert "guidance_rescale" in __import__("inspect").signature(StableDiffusionPipeline.__call__).parameters


def test_is_due_by_steps_and_by_epochs():
    from sliderstudio.config.intervals import is_due, steps_per_epoch

    assert steps_per_epoch(10, 3) == 4 and steps_per_epoch(1, 4) == 1
    assert [s for s in range(1, 13) if is_due(s, 5, None, 4)] == [5, 10]
    assert [s for s in range(1, 13) if is_due(s, None, 1, 4)] == [4, 8, 12]
    assert [s for s in range(1, 13) if is_due(s, None, 0.5, 4)] == [2, 4, 6, 8, 10, 12]
    assert [s for s in range(1, 13) if is_due(s, 5, 1, 4)] == [4, 5, 8, 10, 12]  # both schedules run
    assert not any(is_due(s, 0, None, 4) for s in range(1, 13))


def test_epoch_intervals_drive_checkpoints_and_validation(tmp_path, tiny_models):
    from sliderstudio.engine.buckets import balance, scan_project
    from sliderstudio.engine.sampler import SliderSampler, sampler_buckets

    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"validation_prompt": "a red square",
                                                                     "validation_resolution": 32})
    project = load_project(root)
    scanned = scan_project(project)
    per_epoch = SliderSampler(sampler_buckets(scanned), 0, 1, balance(project, scanned).pair_map).epoch_length()
    run(root, {"max_train_steps": per_epoch + 1, "checkpoint_epoch_interval": 1, "validation_epoch_interval": 1})
    out = root / "output"
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"checkpoint-{per_epoch:06d}"]
    assert sorted(p.name for p in (out / "validation").iterdir()) == [f"step-{per_epoch:06d}",
                                                                     f"step-{per_epoch + 1:06d}"]


def test_noise_offset_probability_applies_to_that_share_of_micro_batches():
    from diffusers import DDPMScheduler

    from sliderstudio.engine.sampler import MicroBatch
    from sliderstudio.engine.slider_step import SliderStep, StepData
    from sliderstudio.families.registry import get_family

    family = get_family("sd1x", "c.json")
    data = StepData({}, {}, {}, {})

    def step(offset, probability):
        return SliderStep(family, torch.nn.Identity(), DDPMScheduler(), data, 0, CPU, torch.float32,
                          noise_offset=offset, adapter=SimpleNamespace(), noise_offset_probability=probability)

    shape = torch.Size([1, 4, 8, 8])
    plain, always, some = step(0.0, 1.0), step(0.5, 1.0), step(0.5, 0.25)
    applied = 0
    for i in range(400):
        mb = MicroBatch(i, 0, "b", "positive", 1.0, (0,), ("x",))
        no_offset = plain.noise_for(mb, shape)[0]
        with_offset, offset_t = always.noise_for(mb, shape)
        noise, t = some.noise_for(mb, shape)
        assert torch.equal(t, offset_t)                    # the decision never shifts the timesteps
        if torch.equal(noise, with_offset):
            applied += 1
        else:
            assert torch.equal(noise, no_offset)
    assert 70 < applied < 130                              # ≈ 25 % of 400


def test_validation_disable_turns_scheduled_validation_off(tmp_path, tiny_models):
    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={
        "max_train_steps": 2, "validation_step_interval": 1, "validation_prompt": "a red square",
        "validation_resolution": 32, "validation_disable": True})
    run(root)
    assert not (root / "output" / "validation").exists()


def test_lr_scale_multiplies_by_batch_and_accumulation():
    config = cfg(learning_rate=1e-4, train_batch_size=2, gradient_accumulation_steps=8)
    assert build_optimizer(params(), config, CPU).param_groups[0]["lr"] == 1e-4
    scaled = config.model_copy(update={"lr_scale": True})
    assert build_optimizer(params(), scaled, CPU).param_groups[0]["lr"] == pytest.approx(16e-4)
    root = scaled.model_copy(update={"lr_scale_sqrt": True})
    assert build_optimizer(params(), root, CPU).param_groups[0]["lr"] == pytest.approx(4e-4)
