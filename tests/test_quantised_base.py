"""base_model_precision: an int8/fp8 frozen base under a full-precision slider, on the CPU (tiny SD 1.x)."""
import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.adapters import adapter_io
from sliderstudio.engine import training_setup
from sliderstudio.adapters.adapters import attach_lora, lora_layers, slider_scale
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.kernel.events import Log
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.engine.project import load_project
from sliderstudio.engine.quantise import SUPPORTED, is_quantised, quantise_module, require_runnable, weight_bytes
from sliderstudio.engine.trainer import Trainer
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family

ADAPTER = "pytorch_lora_weights.safetensors"


def train(root, overrides=None):
    events = []
    path = Trainer(load_project(root, overrides), events.append).run()
    losses = [json.loads(line)["loss"] for line in (root / "output" / "metrics.jsonl").read_text().splitlines()]
    return path, events, np.array(losses)


def unet_inputs(unet):
    g = torch.Generator().manual_seed(3)
    sample = torch.randn(1, unet.config.in_channels, 8, 8, generator=g)
    text = torch.randn(1, 4, unet.config.cross_attention_dim, generator=g)
    return sample, torch.tensor([10]), text


def test_int8_run_trains_saves_and_the_adapter_loads_on_the_unquantised_model(tmp_path, tiny_models):
    common = {"max_train_steps": 6, "validation_prompt": "a photo of a square", "validation_steps": 6}
    plain = make_project(tmp_path / "plain", tiny_models["sd1x"], config=common)
    quant = make_project(tmp_path / "int8", tiny_models["sd1x"], config={**common,
                                                                         "base_model_precision": "int8-torchao"})
    plain_path, _, plain_loss = train(plain)
    path, events, loss = train(quant)
    logs = [e.message for e in events if isinstance(e, Log)]
    assert any("Linear layers of the frozen base quantised to int8" in m for m in logs)
    # same loss curve within 2 % (same seed, noise and timesteps; only the base weights differ)
    assert np.mean(np.abs(loss - plain_loss) / np.abs(plain_loss)) < 0.02
    assert not np.array_equal(loss, plain_loss)  # the base really was quantised
    tensors, plain_tensors = load_file(str(path)), load_file(str(plain_path))
    assert set(tensors) == set(plain_tensors)
    assert all(t.dtype == torch.float32 for t in tensors.values())
    meta = adapter_io.read_metadata(path)
    assert meta["base_model_precision"] == "int8-torchao"
    assert adapter_io.read_metadata(plain_path)["base_model_precision"] == "no_change"
    assert list((quant / "output" / "validation").rglob("*.png"))  # validation rendered on the int8 base
    # the ordinary preview path, unquantised model: the trained B matrices arrive unchanged
    renderer = PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"]), path)
    unet = renderer.family.denoiser(renderer.pipe)
    assert not any(is_quantised(m) for m in unet.modules())
    loaded = {name: m.lora_B["slider"].weight for name, m in unet.named_modules() if hasattr(m, "lora_B")}
    saved = {k: v for k, v in tensors.items() if "lora_B" in k}
    assert len(loaded) == len(saved) and any(v.abs().sum() > 0 for v in saved.values())
    for name, weight in loaded.items():
        assert torch.equal(weight, saved[f"unet.{name}.lora_B.weight"])
    images = renderer.render("a photo of a square", seed=1, strengths=[-1.0, 1.0], steps=2, size=32)
    assert len(images) == 2 and images[0].size == (32, 32)
    # and preview on the int8 base itself
    int8_preview = PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"]), path, base_model_precision="int8-torchao")
    assert any(is_quantised(m) for m in int8_preview.family.denoiser(int8_preview.pipe).modules())
    assert len(int8_preview.render("a photo of a square", seed=1, strengths=[0.0], steps=2, size=32)) == 1


@pytest.mark.parametrize("value", ["int8-torchao", "fp8-torchao"])
def test_strength_zero_reproduces_the_quantised_base_exactly(tiny_models, value):
    family = get_family("sd1x")
    unet = family.denoiser(load_pipeline(family, str(tiny_models["sd1x"])))
    inputs = unet_inputs(unet)
    with torch.no_grad():
        full = unet(*inputs).sample
    count, _ = quantise_module(unet, SUPPORTED[value])
    assert count > 10
    with torch.no_grad():
        base = unet(*inputs).sample
    assert not torch.equal(base, full) and torch.allclose(base, full, atol=0.05)
    targets = [n for n, m in unet.named_modules() if n.endswith(("to_q", "to_v")) and is_quantised(m)]
    attach_lora(unet, targets, 4, 4.0)
    for layer in lora_layers(unet):
        torch.nn.init.normal_(layer.lora_B["slider"].weight, std=0.1)
        assert is_quantised(layer.base_layer)  # the slider sits on the quantised layer, in float
        assert layer.lora_A["slider"].weight.dtype == torch.float32
    with torch.no_grad(), slider_scale(unet, 0.0):
        at_zero = unet(*inputs).sample
    with torch.no_grad(), slider_scale(unet, 1.0):
        at_one = unet(*inputs).sample
    assert torch.equal(at_zero, base)
    assert not torch.allclose(at_one, base)


def test_quantised_weights_are_smaller():
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 128))
    before = weight_bytes(model)
    quantise_module(model, SUPPORTED["int8-torchao"])
    assert weight_bytes(model) < before * 0.3  # int8 data + one scale per row vs fp32


@pytest.mark.parametrize("value,reason", [
    ("nf4-bnb", "needs a CUDA GPU and this run's device is cpu"),
    ("fp8-native", "needs a CUDA GPU"),
    ("int4-quanto", "this build does not implement it"),
    ("int8-sdnq", "this build does not implement it"),
])
def test_a_quantisation_this_machine_cannot_run_exits_2_before_loading(tmp_path, tiny_models, capsys,
                                                                      monkeypatch, value, reason):
    def never(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(training_setup, "load_pipeline", never)
    root = make_project(tmp_path, tiny_models["sd1x"], config={"base_model_precision": value})
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "base_model_precision" in err and value in err and reason in err
    assert "int8-torchao" in err  # what works here
    assert not (root / "output" / ADAPTER).exists()


def test_lycoris_on_a_quantised_base_exits_2_before_loading(tmp_path, tiny_models, capsys, monkeypatch):
    monkeypatch.setattr(training_setup, "load_pipeline", lambda *a, **k: pytest.fail("weights were loaded"))
    root = make_project(tmp_path, tiny_models["sd1x"], config={
        "base_model_precision": "int8-torchao", "lora_type": "lycoris", "lycoris_config": "lycoris.json"})
    (root / "lycoris.json").write_text(json.dumps({"algo": "lokr", "linear_dim": 4, "linear_alpha": 1}))
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "base_model_precision" in err and "lora_type 'lycoris' is not supported" in err


def test_an_unknown_value_is_refused_at_config_load(tmp_path, tiny_models, capsys):
    root = make_project(tmp_path, tiny_models["sd1x"], config={"base_model_precision": "int9-torchao"})
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "base_model_precision" in err and "int9-torchao" in err


def test_without_torchao_int8_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(ConfigError, match="needs torchao"):
        require_runnable("int8-torchao", torch.device("cpu"))
    assert require_runnable("no_change", torch.device("cpu")) is None


def test_int8_quanto_runs_through_torchao_and_says_so():
    scheme = require_runnable("int8-quanto", torch.device("cpu"))
    assert scheme.weight_dtype == torch.int8 and "optimum-quanto is not installed" in scheme.note


@pytest.mark.slow
def test_int8_changes_the_50_step_loss_curve_by_under_2_percent(tmp_path, tiny_models):
    plain = make_project(tmp_path / "plain", tiny_models["sd1x"], config={"max_train_steps": 50})
    quant = make_project(tmp_path / "int8", tiny_models["sd1x"],
                         config={"max_train_steps": 50, "base_model_precision": "int8-torchao"})
    _, _, a = train(plain)
    _, _, b = train(quant)
    assert len(a) == len(b) == 50
    assert np.mean(np.abs(a - b) / np.abs(a)) < 0.02


def test_cli_preview_on_an_int8_base_and_a_refused_value(tmp_path, tiny_models, capsys, monkeypatch):
    out = tmp_path / "grid.png"
    args = ["preview", "--model", str(tiny_models["sd1x"]), "--family", "sd1x", "--prompt", "x",
            "--strengths", "0", "--steps", "2", "--size", "32", "--out", str(out)]
    assert main([*args, "--base-model-precision", "int8-torchao"]) == 0 and out.exists()
    out.unlink()
    monkeypatch.setattr("sliderstudio.engine.preview.load_pipeline",
                        lambda *a, **k: pytest.fail("weights were loaded"))
    assert main([*args, "--base-model-precision", "nf4-bnb"]) == 2
    err = capsys.readouterr().err
    assert "base_model_precision" in err and "'nf4-bnb' needs a CUDA GPU" in err and not out.exists()


def test_quantising_while_loading_gives_the_same_base_as_quantising_after(tiny_models):
    from sliderstudio.engine.quantise import loading_config

    family = get_family("sd1x")
    after = family.denoiser(load_pipeline(family, str(tiny_models["sd1x"])))
    quantise_module(after, SUPPORTED["int8-torchao"])
    during = family.denoiser(load_pipeline(family, str(tiny_models["sd1x"]), quantization_config=loading_config(
        SUPPORTED["int8-torchao"], family.denoiser_name)))
    quantised = {n: m.weight for n, m in during.named_modules() if is_quantised(m)}
    assert quantised.keys() == {n for n, m in after.named_modules() if is_quantised(m)} and len(quantised) > 10
    for name, module in after.named_modules():
        if name in quantised:
            assert torch.equal(module.weight.qdata, quantised[name].qdata)
            assert torch.equal(module.weight.scale, quantised[name].scale)
    assert quantise_module(during, SUPPORTED["int8-torchao"])[0] == 0  # nothing left in float to quantise
