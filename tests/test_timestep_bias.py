"""SimpleTuner's timestep_bias_* keys (engine/timestep_bias.py): which timesteps they bias, that every family's
draw gets exactly the biased share, that the draws stay seeded (resumes, paired negatives), and bad input."""
import json
from types import SimpleNamespace

import pytest
import torch

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.config.config import TrainConfig
from sliderstudio.config.simpletuner_keys import classify_train_key
from sliderstudio.engine.sampler import MicroBatch
from sliderstudio.engine.slider_step import SliderStep, StepData
from sliderstudio.engine.timestep_bias import BINS, TimestepBias, TimestepBiasError
from sliderstudio.families.flow import FlowSchedule
from sliderstudio.families.registry import get_family

CPU = torch.device("cpu")
DRAWS = 20_000


def bias(strategy, multiplier=3.0, portion=0.25, begin=0, end=BINS):
    return TimestepBias.from_settings(strategy, multiplier, portion, begin, end)


@pytest.mark.parametrize("args,span", [
    (("later", 3.0, 0.25), (750, 1000)),
    (("earlier", 0.5, 0.1), (0, 100)),
    (("range", 4.0, 0.25, 200, 400), (200, 400)),   # the portion plays no part in a range
])
def test_each_strategy_biases_simpletuners_timesteps(args, span):
    b = bias(*args)
    assert (b.begin, b.end) == span
    w = b.weights()
    assert w.shape == (BINS,)
    assert torch.all(w[span[0]:span[1]] == args[1]) and w.sum().item() == pytest.approx(
        BINS - (span[1] - span[0]) + (span[1] - span[0]) * args[1])


@pytest.mark.parametrize("args", [(None,), ("none",), ("later", 1.0), ("later", 3.0, 0.0), ("later", 3.0, 1.0),
                                  ("range", 3.0, 0.25, 0, BINS)])
def test_settings_that_change_nothing_give_no_bias(args):
    assert bias(*args) is None


@pytest.mark.parametrize("args,key", [
    (("later", 0.0), "timestep_bias_multiplier"), (("later", -2.0), "timestep_bias_multiplier"),
    (("earlier", 2.0, 1.5), "timestep_bias_portion"), (("range", 2.0, 0.25, 500, 500), "timestep_bias_begin"),
    (("range", 2.0, 0.25, 0, 1200), "timestep_bias_begin"), (("sooner",), "timestep_bias_strategy"),
])
def test_settings_simpletuner_refuses_name_their_key(args, key):
    with pytest.raises(TimestepBiasError) as err:
        bias(*args)
    assert err.value.key == key and key in str(err.value)


def share(timesteps, total, begin, end):
    index = (timesteps.float() / total * BINS).long()
    return ((index >= begin) & (index < end)).float().mean().item()


def draw(family, schedule, b, seed=0):
    g = torch.Generator().manual_seed(seed)
    if b is None:
        return family.sample_timesteps(schedule, DRAWS, g)
    return b.draw(family.sample_timesteps, schedule, DRAWS, g)


@pytest.mark.parametrize("name,schedule,total", [
    ("sd1x", None, 1000),                                      # uniform integers (DDPM)
    ("flux", FlowSchedule(shift=3.0), 1000),                   # shifted logit-normal σ·1000
    ("stable_cascade", None, 1.0),                             # a noise ratio in [0, 1)
])
@pytest.mark.parametrize("args", [("later", 3.0, 0.5), ("earlier", 0.25, 0.3), ("range", 5.0, 0.25, 100, 300)])
def test_every_family_draws_its_own_density_times_the_bias(name, schedule, total, args):
    from diffusers import DDPMScheduler, DDPMWuerstchenScheduler

    family = get_family(name)
    schedule = schedule or (DDPMScheduler() if name == "sd1x" else DDPMWuerstchenScheduler())
    b = bias(*args)
    plain = share(draw(family, schedule, None, seed=1), total, b.begin, b.end)
    biased_t = draw(family, schedule, b, seed=2)
    expected = plain * b.multiplier / (plain * b.multiplier + 1 - plain)
    assert share(biased_t, total, b.begin, b.end) == pytest.approx(expected, abs=0.015)
    assert biased_t.dtype == family.sample_timesteps(schedule, 1, torch.Generator()).dtype
    if name == "sd1x":  # a uniform draw: the share SimpleTuner's weighted draw gives
        assert expected == pytest.approx(b.biased_share(), abs=0.015)


def step(b):
    from diffusers import DDPMScheduler

    return SliderStep(get_family("sd1x", "c.json"), torch.nn.Identity(), DDPMScheduler(), StepData({}, {}, {}, {}), 7,
                      CPU, torch.float32, adapter=SimpleNamespace(), timestep_bias=b)


def test_biased_draws_are_seeded_paired_and_leave_the_noise_alone():
    biased, plain = step(bias("later", 10.0, 0.2)), step(None)
    shape = torch.Size([4, 4, 8, 8])
    positive = MicroBatch(5, 0, "pos", "positive", 1.0, (0, 1, 2, 3), ("a", "b", "c", "d"))
    negative = MicroBatch(6, 0, "neg", "negative", -1.0, (0, 1, 2, 3), ("a", "b", "c", "d"), paired=True)
    noise, t = biased.noise_for(positive, shape)
    again_noise, again_t = biased.noise_for(positive, shape)
    paired_noise, paired_t = biased.noise_for(negative, shape)
    assert torch.equal(t, again_t) and torch.equal(t, paired_t)        # resumes and paired negatives repeat it
    assert torch.equal(noise, paired_noise) and torch.equal(noise, plain.noise_for(positive, shape)[0])
    one = torch.Size([1, 4, 8, 8])
    late = sum(int(biased.noise_for(MicroBatch(i, 0, "pos", "positive", 1.0, (0,), ("a",)), one)[1].item() >= 800)
               for i in range(400))
    assert 0.65 < late / 400 < 0.80     # 200 timesteps ×10 against 800 ×1: 71 % of the draws


def test_the_keys_are_implemented_simpletuner_keys():
    for key in ("timestep_bias_strategy", "timestep_bias_multiplier", "timestep_bias_portion",
                "timestep_bias_begin", "timestep_bias_end"):
        assert classify_train_key(key).status == "implemented"
    cfg = TrainConfig(timestep_bias_strategy="later", timestep_bias_multiplier=2, timestep_bias_portion=0.5)
    assert TimestepBias.from_config(cfg) == TimestepBias("later", 2.0, 500, 1000)
    assert TimestepBias.from_config(TrainConfig()) is None
    assert TrainConfig(timestep_bias_strategy=None).timestep_bias_strategy == "none"   # SimpleTuner's null


def run_cli(root, capsys, command="train"):
    code = main([command, "--config", str(root)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("config,fragments", [
    ({"timestep_bias_strategy": "range", "timestep_bias_begin": 600, "timestep_bias_end": 200},
     ["timestep_bias_begin < timestep_bias_end", "got 600 and 200"]),
    ({"timestep_bias_strategy": "later", "timestep_bias_multiplier": 0},
     ["key 'timestep_bias_multiplier'", "greater than 0"]),
    ({"timestep_bias_strategy": "sooner"}, ["key 'timestep_bias_strategy'", "'later'", "got 'sooner'"]),
    ({"timestep_bias_strategy": "later", "timestep_bias_portion": 1.5}, ["key 'timestep_bias_portion'"]),
])
def test_bad_timestep_bias_exits_2_naming_the_key(tmp_path, capsys, config, fragments):
    root = make_project(tmp_path, "/no/model", config=config)
    code, err = run_cli(root, capsys)
    assert code == 2 and "config.json" in err and all(f in err for f in fragments), err
    assert not (root / "output").exists() or not any((root / "output").iterdir())


@pytest.mark.parametrize("config,fragment", [
    ({"timestep_bias_strategy": "later"}, "key 'timestep_bias_strategy' is 'later' but timestep_bias_multiplier is 1"),
    ({"timestep_bias_multiplier": 3}, "key 'timestep_bias_multiplier' is set but timestep_bias_strategy is 'none'"),
])
def test_bias_keys_that_change_nothing_are_warned_about(tmp_path, capsys, config, fragment):
    root = make_project(tmp_path, "/no/model", config=config)
    code = main(["plan", "--config", str(root), "--batches", "2"])
    err = capsys.readouterr().err
    assert code == 0 and fragment in err, err


def test_training_draws_with_the_bias_and_says_so(tmp_path, tiny_models):
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.training_setup import prepare_session

    root = make_project(tmp_path, tiny_models["sd1x"], pairs=2, config={
        "timestep_bias_strategy": "earlier", "timestep_bias_multiplier": 5, "timestep_bias_portion": 0.1})
    logs = []
    session = prepare_session(load_project(root), lambda msg, level: logs.append(msg))
    assert session.step.timestep_bias == TimestepBias("earlier", 5.0, 0, 100)
    assert any(m.startswith("timestep bias: timesteps 0-99 of 1000 weigh ×5 (earlier") for m in logs), logs
    saved = json.loads((root / "config.json").read_text())
    assert saved["timestep_bias_multiplier"] == 5


def test_the_command_line_sets_the_bias_simpletuner_style(tmp_path, tiny_models, capsys):
    """`train --timestep_bias_strategy=…` overrides the file like any SimpleTuner key; the run says so."""
    root = make_project(tmp_path, tiny_models["sd1x"], pairs=2, config={"max_train_steps": 2})
    code = main(["train", "--config", str(root), "--timestep_bias_strategy=later", "--timestep_bias_multiplier=4"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "timestep bias: timesteps 750-999 of 1000 weigh ×4 (later; a uniform draw would put 57% of the steps " \
           "there)" in err
    assert (root / "output" / "pytorch_lora_weights.safetensors").exists()


def test_plan_says_where_the_timesteps_go(tmp_path, capsys):
    root = make_project(tmp_path, "/no/model", config={"timestep_bias_strategy": "range", "timestep_bias_begin": 100,
                                                        "timestep_bias_end": 300, "timestep_bias_multiplier": 2})
    assert main(["plan", "--config", str(root), "--batches", "2"]) == 0
    out = capsys.readouterr().out
    assert "# timestep bias: timesteps 100-299 of 1000 weigh ×2 (range; a uniform draw would put 33% of the steps " \
           "there)" in out
    plain = make_project(tmp_path / "plain", "/no/model")
    assert main(["plan", "--config", str(plain), "--batches", "2"]) == 0
    assert "timestep bias" not in capsys.readouterr().out
