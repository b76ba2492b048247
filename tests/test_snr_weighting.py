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
    assert classify_train_key("use_soft_min_snr").status == "implemented"
    assert classify_train_key("soft_min_snr_sigma_data").status == "implemented"
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


def soft_snr_of(schedule, t, sigma_data):
    sigma_sq = 1 - schedule.alphas_cumprod[t]
    return sigma_sq * sigma_data ** 2 / (sigma_sq + sigma_data ** 2) ** 2


@pytest.mark.parametrize("prediction, gamma, sigma_data", [("epsilon", 0.1, 0.5), ("epsilon", 5.0, 1.0),
                                                           ("v_prediction", 5.0, 1.0)])
def test_soft_min_snr_reads_the_soft_snr_as_simpletuner_does(prediction, gamma, sigma_data):
    """use_soft_min_snr: SNR := (σ·σ_d)² / (σ² + σ_d²)² with σ² = 1 − ᾱ, then min(SNR, γ) / SNR (ε) or
    / (SNR + 1) (v); the soft value peaks at 1/4 (σ = σ_d), so γ ≥ 1/4 leaves ε samples at weight 1."""
    schedule = DDPMScheduler(prediction_type=prediction)
    w = MinSnrWeight.for_schedule(gamma, schedule, sigma_data)
    soft = soft_snr_of(schedule, T, sigma_data)
    divisor = soft + 1 if prediction == "v_prediction" else soft
    assert torch.allclose(w(T), torch.minimum(soft, torch.tensor(gamma)) / divisor, rtol=1e-5)
    assert float(soft.max()) <= 0.25 + 1e-6
    if prediction == "epsilon" and gamma >= 0.25:
        assert torch.all(w(T) == 1) and "every timestep weighs 1" in w.describe()
    else:
        assert not torch.all(w(T) == 1) and "soft min-SNR weighting" in w.describe()
    assert not torch.allclose(w(T), MinSnrWeight.for_schedule(gamma, schedule)(T))   # not the ordinary weights


def test_soft_min_snr_needs_sigma_data_and_gamma(tmp_path, capsys):
    """SimpleTuner refuses use_soft_min_snr without soft_min_snr_sigma_data (exit 2, the key named); set
    without snr_gamma it weighs nothing, and the run says so before it starts."""
    from sliderstudio.engine.run_checks import check_limits

    root = make_project(tmp_path, "/no/model", config={"snr_gamma": 5, "use_soft_min_snr": True})
    code = main(["train", "--config", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and "soft_min_snr_sigma_data" in err, err
    assert not (root / "output").exists() or not any((root / "output").iterdir())
    unused = check_limits(TrainConfig(use_soft_min_snr=True, soft_min_snr_sigma_data=1.0), "config.json")
    assert any("key 'use_soft_min_snr' is set but snr_gamma is not" in w for w in unused), unused
    assert not [w for w in check_limits(TrainConfig(snr_gamma=5, use_soft_min_snr=True, soft_min_snr_sigma_data=1.0),
                                        "config.json") if "min-SNR" in w]


def test_training_with_soft_min_snr_says_how_it_weighs(tmp_path, tiny_models, capsys):
    root = make_project(tmp_path, tiny_models["sd1x"], pairs=2, config={
        "max_train_steps": 2, "snr_gamma": 0.1, "use_soft_min_snr": True, "soft_min_snr_sigma_data": 0.5})
    code = main(["train", "--config", str(root)])
    err = capsys.readouterr().err
    assert code == 0 and "soft min-SNR weighting: γ 0.1, σ_data 0.5 (ε-prediction)" in err, err
