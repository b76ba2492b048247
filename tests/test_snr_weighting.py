"""SimpleTuner's snr_gamma (engine/snr_weighting.py): the Min-SNR-γ weights for ε and v targets, the
per-sample weighted loss (MSE and pseudo-Huber, image buckets and text pairs alike), flow schedules
trained unweighted with a warning, and bad input."""
from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.config.config import TrainConfig
from sliderstudio.config.simpletuner_keys import classify_train_key
from sliderstudio.engine.losses import SliderLoss
from sliderstudio.engine.slider_step import SliderStep, StepData
from sliderstudio.engine.snr_weighting import MinSnrWeight
from sliderstudio.families.flow import FlowSchedule
from sliderstudio.families.registry import get_family

T = torch.tensor([0, 50, 200, 500, 999])


def snr_of(schedule, t):
    a = schedule.alphas_cumprod[t]
    return a / (1 - a)


def test_epsilon_weights_are_min_snr_gamma_over_snr():
    schedule = DDPMScheduler()
    w = MinSnrWeight.for_schedule(5.0, schedule)
    snr = snr_of(schedule, T)
    assert torch.allclose(w(T), torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert torch.all(w(T)[snr <= 5] == 1) and torch.all(w(T)[snr > 5] < 1)   # only clean timesteps weigh less
    assert not w.v_prediction and "γ 5 (ε-prediction)" in w.describe()


def test_v_prediction_weights_divide_by_snr_plus_one():
    schedule = DDPMScheduler(prediction_type="v_prediction")
    w = MinSnrWeight.for_schedule(2.0, schedule)
    snr = snr_of(schedule, T)
    assert w.v_prediction and torch.allclose(w(T), torch.minimum(snr, torch.tensor(2.0)) / (snr + 1))


def test_no_gamma_or_no_alpha_table_means_no_weighting():
    assert MinSnrWeight.for_schedule(None, DDPMScheduler()) is None
    assert MinSnrWeight.for_schedule(5.0, FlowSchedule(shift=3.0)) is None


def step(loss_fn=None, weight=None):
    return SliderStep(get_family("sd1x", "c.json"), torch.nn.Identity(), DDPMScheduler(), StepData({}, {}, {}, {}), 0,
                      torch.device("cpu"), torch.float32, adapter=SimpleNamespace(), loss_fn=loss_fn,
                      snr_weight=weight)


@pytest.mark.parametrize("loss_fn", [None, SliderLoss("huber", 0.1, "constant")])
def test_the_step_weighs_each_samples_loss(loss_fn):
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([5, 100, 600, 990])
    weight = MinSnrWeight.for_schedule(5.0, DDPMScheduler())
    plain, weighted = step(loss_fn), step(loss_fn, weight)
    per_sample = torch.stack([plain._error(pred[i:i + 1], target[i:i + 1], t[i:i + 1]) for i in range(4)])
    assert plain._error(pred, target, t) == pytest.approx(per_sample.mean().item(), rel=1e-6)
    assert weighted._error(pred, target, t) == pytest.approx((per_sample * weight(t)).mean().item(), rel=1e-6)
    assert weighted._error(pred, target, t) < plain._error(pred, target, t)   # the cleanest sample weighs ~0


def test_the_key_is_implemented_and_bad_values_exit_2(tmp_path, capsys):
    assert classify_train_key("snr_gamma").status == "implemented"
    assert classify_train_key("use_soft_min_snr").status == "ignored"
    assert TrainConfig(snr_gamma=5).snr_gamma == 5.0
    root = make_project(tmp_path, "/no/model", config={"snr_gamma": 0})
    code = main(["train", "--config", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and "key 'snr_gamma'" in err and "greater than 0" in err, err


def test_training_weighs_an_epsilon_model_and_says_so(tmp_path, tiny_models, capsys):
    root = make_project(tmp_path, tiny_models["sd1x"], pairs=2, config={"max_train_steps": 2, "snr_gamma": 5})
    code = main(["train", "--config", str(root)])
    err = capsys.readouterr().err
    assert code == 0 and "min-SNR weighting: γ 5 (ε-prediction)" in err, err


def test_a_flow_family_trains_unweighted_with_a_warning(tmp_path):
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.training_setup import prepare_session
    from sliderstudio.families.flux import build_tiny_flux

    model = build_tiny_flux(tmp_path / "flux")
    root = make_project(tmp_path / "p", model, family="flux", config={"snr_gamma": 5, "resolution": 32})
    logs = []
    session = prepare_session(load_project(root), lambda msg, level: logs.append((level, msg)))
    assert session.step.snr_weight is None
    assert any(level == "warning" and msg.startswith("snr_gamma 5 is not applied") for level, msg in logs), logs
