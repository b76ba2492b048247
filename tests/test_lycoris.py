"""LyCORIS sliders (SPEC §2, §5, §8): exact targets, strength semantics, save/reload/preview, resume, bad input."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.adapters import adapter_io
from sliderstudio.kernel.errors import ConfigError, TargetError
from sliderstudio.kernel.events import Command, Mailbox, Progress
from sliderstudio.adapters.lycoris_adapter import CONFIG_NAME, attach_lycoris
from sliderstudio.config.lycoris_config import (
    lycoris_algorithms, lycoris_preset, lycoris_presets, parse_lycoris_config, validate_lycoris_config,
)
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.engine.project import load_project
from sliderstudio.engine.sampler import MicroBatch
from sliderstudio.engine.slider_step import SliderStep, StepData
from sliderstudio.adapters.targets import matches, resolve_mixed
from sliderstudio.engine.trainer import Trainer
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import FAMILIES, get_family

ADAPTER = "pytorch_lora_weights.safetensors"
EXAMPLE = {"algo": "lokr", "multiplier": 1.0, "linear_dim": 4, "linear_alpha": 1,
           "apply_preset": {"target_module": ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "conv_in",
                                              "conv_out", "time_embedding.linear_1", "time_embedding.linear_2"]}}
PROMPT = "a photo of a red square"


def lycoris_project(root, model, preset, config=None):
    cfg = {"lora_type": "lycoris", "lycoris_config": "lycoris.json", "learning_rate": 1e-2, **(config or {})}
    make_project(root, model, config=cfg)
    (root / "lycoris.json").write_text(json.dumps(preset))
    return root


def train(root, overrides=None, mailbox=None, sink=None):
    events = []

    def collect(e):
        events.append(e)
        if sink:
            sink(e)

    trainer = Trainer(load_project(root, overrides), collect, mailbox)
    return trainer.run(), trainer, events


def slider_on(path, family_id, spec, seed=0, std=0.02):
    """A fresh tiny denoiser with a LyCORIS slider whose tensors are non-zero (as after training)."""
    family = get_family(family_id)
    pipe = load_pipeline(family, str(path))
    unet = family.denoiser(pipe)
    slider, report = attach_lycoris(unet, "unet", parse_lycoris_config(spec, "t.json"),
                                    ("slider", family.presets["slider"]), seed)
    torch.manual_seed(seed)
    for p in slider.parameters():
        p.data.add_(torch.randn_like(p) * std)
    return family, pipe, unet, slider, report


def unet_inputs(pipe, batch=2):
    g = torch.Generator().manual_seed(0)
    emb = pipe.encode_prompt([PROMPT] * batch, "cpu", 1, False)[0]
    return torch.randn(batch, 4, 8, 8, generator=g), torch.tensor([100, 700][:batch]), emb


# --- config layer -------------------------------------------------------------------------------------
def test_public_helpers_for_the_app():
    assert lycoris_algorithms() == ["lokr", "locon", "loha", "full"]
    for family in FAMILIES.values():
        presets = lycoris_presets(family.lycoris_group)
        assert sorted(presets) == sorted(lycoris_algorithms()), family.id
        for algo in presets:
            data = lycoris_preset(family.lycoris_group, algo)
            assert validate_lycoris_config(data) == [] and data["algo"] == algo
            # as in the family's slider preset: never the UNet's output layer (docs/TRAINING.md)
            assert "conv_out" not in data.get("apply_preset", {}).get("target_module", []), (family.id, algo)
    problems = validate_lycoris_config({"algo": "lokrr", "linear_dim": 0, "linear_alpha": "one",
                                        "apply_preset": {"target_modul": ["x"]}})
    assert [p.key for p in problems] == ["algo", "linear_dim", "linear_alpha", "apply_preset.target_modul"]
    assert "did you mean 'lokr'" in str(problems[0]) and "did you mean 'target_module'" in str(problems[3])


@pytest.mark.parametrize("bad,key,fragment", [
    ({"algo": "lokrr"}, "algo", "unsupported algorithm 'lokrr'; did you mean 'lokr'? (supported: lokr, locon, loha, full)"),
    ({"algo": "ia3"}, "algo", "unsupported algorithm 'ia3'"),
    ({"algo": "lokr", "linear_dim": 0}, "linear_dim", "expected a whole number ≥ 1 (got 0)"),
    ({"algo": "lokr", "linear_dim": "four"}, "linear_dim", "(got 'four')"),
    ({"algo": "lokr", "factor": 0}, "factor", "-1 (automatic) or a whole number ≥ 1"),
    ({"algo": "loha", "linear_alpha": -1}, "linear_alpha", "a number > 0"),
])
def test_bad_lycoris_config_exits_2_before_loading(tmp_path, capsys, bad, key, fragment):
    root = lycoris_project(tmp_path / "p", "/nowhere/model", bad)
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert str(root / "lycoris.json") in err and f"key '{key}'" in err and fragment in err
    assert not (root / "output").exists()


def test_missing_lycoris_file_names_it(tmp_path):
    root = make_project(tmp_path / "p", "/nowhere", config={"lora_type": "lycoris", "lycoris_config": "nope.json"})
    with pytest.raises(ConfigError, match="nope.json.*LyCORIS config file not found"):
        load_project(root)


# --- targets --------------------------------------------------------------------------------------------
def test_example_preset_trains_exactly_the_named_modules(tmp_path, tiny_models):
    root = lycoris_project(tmp_path / "p", tiny_models["sd1x"], EXAMPLE, {"max_train_steps": 2})
    path, trainer, _ = train(root)
    unet = trainer.session.denoiser
    expected = sorted({name for name, m in unet.named_modules()
                       if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
                       and any(matches(name, e) for e in EXAMPLE["apply_preset"]["target_module"])})
    assert len(expected) == 20  # attn1 q/k/v/out in 4 transformer blocks, conv_in/out, 2 time-embedding layers
    wrapped = sorted(lora.lora_name for lora in trainer.session.adapter.network.loras)
    assert wrapped == sorted("lycoris_" + n.replace(".", "_") for n in expected)
    assert sorted(adapter_io.read_metadata(path)["targets"]) == expected
    assert {k.split(".")[0] for k in load_file(str(path))} == set(wrapped)
    assert json.loads((path.parent / CONFIG_NAME).read_text()) == EXAMPLE
    assert not any("attn2" in n for n in expected)


def test_class_entries_are_classes_and_paths_are_suffixes(tiny_models):
    family = get_family("sd1x")
    unet = family.denoiser(load_pipeline(family, str(tiny_models["sd1x"])))
    report = resolve_mixed(unet, ["Attention", "conv_in", "attn9.to_q"])
    counts = {e.pattern: e.count for e in report.entries}
    assert counts == {"Attention (class)": 32, "conv_in": 1, "attn9.to_q": 0}  # attn1 + attn2, 4 layers each × 4
    assert report.total == 33


def test_zero_match_preset_fails_before_training(tmp_path, tiny_models):
    preset = {**EXAMPLE, "apply_preset": {"target_module": ["attn9.to_q", "NoSuchClass"]}}
    root = lycoris_project(tmp_path / "p", tiny_models["sd1x"], preset)
    with pytest.raises(TargetError, match="selects zero modules.*attn9.to_q, NoSuchClass"):
        train(root)
    assert not (root / "output" / "metrics.jsonl").exists() and not (root / "output" / ADAPTER).exists()


# --- strength semantics --------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["lokr", "locon", "loha", "full"])
def test_strength_zero_is_base_and_signs_oppose(tiny_models, algo):
    # `full` perturbs whole weights: a smaller step keeps the response in its linear range
    family, pipe, unet, slider, _ = slider_on(tiny_models["sd1x"], "sd1x", {**EXAMPLE, "algo": algo},
                                              std=0.002 if algo == "full" else 0.02)
    x, t, emb = unet_inputs(pipe)
    with torch.no_grad():
        with slider.strength(0.0):
            zero = unet(x, t, emb).sample
        with slider.strength(0.6):
            plus = unet(x, t, emb).sample
        with slider.strength(-0.6):
            minus = unet(x, t, emb).sample
        with slider.per_sample([-0.6, 0.0]):
            both = unet(x, t, emb).sample
        assert slider.multipliers() == [1.0] * len(slider.network.loras)
        slider.remove()
        base = unet(x, t, emb).sample
    assert torch.equal(zero, base)
    up, down = (plus - base).flatten(), (minus - base).flatten()
    assert up.norm() > 1e-4 and torch.nn.functional.cosine_similarity(up, down, dim=0) < -0.99
    assert torch.allclose(both[0], minus[0], atol=1e-5) and torch.equal(both[1], base[1])


def test_multiplier_follows_each_batch_and_is_restored(tiny_models):
    family, pipe, unet, slider, _ = slider_on(tiny_models["sd1x"], "sd1x", EXAMPLE)
    seen = []
    lora = slider.network.loras[0]
    hook = lora.org_module[0].register_forward_pre_hook(lambda m, a: seen.append(lora.multiplier))
    conds = {PROMPT: family.encode_prompts(pipe, [PROMPT])[0], "": family.encode_prompts(pipe, [""])[0]}
    g = torch.Generator().manual_seed(1)
    data = StepData({(b, i): torch.randn(4, 8, 8, generator=g) for b in "pnz" for i in range(2)},
                    {(b, i): PROMPT for b in "pnz" for i in range(2)}, conds, {"p": 64, "n": 64, "z": 64})
    step = SliderStep(family, unet, family.noise_schedule(pipe), data, 0, torch.device("cpu"), torch.float32,
                      adapter=slider)
    for i, (bucket, strength, preserve) in enumerate([("p", 0.5, False), ("n", -0.5, False), ("z", 0.5, True)]):
        step.loss(MicroBatch(i, 0, bucket, "x", strength, (0, 1), ("a", "b"), False, preserve)).backward()
        assert slider.multipliers() == [1.0] * len(slider.network.loras)
    hook.remove()
    assert seen == [0.5, -0.5, 0.0, 0.5]  # the preserve batch's target comes from the slider at 0
    assert all(p.grad is not None for p in slider.parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in unet.parameters())


# --- train, save, reload, preview -----------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["lokr", "locon", "loha", "full"])
def test_each_algorithm_trains_saves_reloads_and_previews(tmp_path, tiny_models, algo):
    preset = {"algo": algo, "multiplier": 1.0, "linear_dim": 4, "linear_alpha": 4}
    root = lycoris_project(tmp_path / "p", tiny_models["sd1x"], preset, {"max_train_steps": 3})
    path, trainer, _ = train(root)
    meta = adapter_io.read_metadata(path)
    assert meta["lora_type"] == "lycoris" and meta["algo"] == algo and meta["family"] == "sd1x"
    assert meta["strengths"] == [-0.5, 0.0, 0.5] and len(meta["targets"]) == 27  # the family's slider preset
    # the base weights never moved (full keeps its copy of the original weight)
    fresh = dict(load_pipeline(get_family("sd1x"), str(tiny_models["sd1x"])).unet.named_parameters())
    session = trainer.session
    for name, p in session.denoiser.named_parameters():
        assert torch.equal(p, fresh[name]), name
    module_of = {"lycoris_" + n.replace(".", "_"): n for n in meta["targets"]}
    for lora in session.adapter.network.loras:
        assert torch.equal(lora.org_weight.cpu(), fresh[module_of[lora.lora_name] + ".weight"])
    # reload through our own loader: the same outputs at strength 1
    x, t, emb = unet_inputs(session.pipe)
    session.adapter.train(False)
    with torch.no_grad(), session.adapter.strength(1.0):
        expected = session.denoiser(x, t, emb).sample
    renderer = PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"]), path)
    with torch.no_grad(), renderer.adapter.strength(1.0):
        reloaded = renderer.pipe.unet(x, t, emb).sample
    assert torch.allclose(expected, reloaded, atol=1e-5)
    images = [np.asarray(im, dtype=np.int16) for im in renderer.render(PROMPT, 0, [0.0, 1.0, -1.0], steps=2,
                                                                       guidance=1.0)]
    base = np.asarray(PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"])).render(PROMPT, 0, [0.0], steps=2,
                                                                               guidance=1.0)[0], dtype=np.int16)
    assert np.array_equal(images[0], base)
    assert not np.array_equal(images[1], base) and not np.array_equal(images[2], base)
    assert renderer.adapter.batched


def test_preview_cli_with_a_lycoris_adapter(tmp_path, tiny_models):
    root = lycoris_project(tmp_path / "p", tiny_models["sdxl"], {"algo": "lokr", "linear_dim": 4, "linear_alpha": 1},
                           {"max_train_steps": 2, "model_family": "sdxl"})
    path, _, _ = train(root)
    grid = tmp_path / "grid.png"
    assert main(["preview", "--family", "sdxl", "--model", str(tiny_models["sdxl"]), "--lora", str(path),
                 "--prompt", PROMPT, "--strengths", "-1,0,1", "--steps", "2", "--out", str(grid)]) == 0
    assert grid.exists()


def test_a_lycoris_file_without_our_companion_loads_from_its_keys(tmp_path, tiny_models):
    family, pipe, unet, slider, _ = slider_on(tiny_models["sd1x"], "sd1x", {**EXAMPLE, "algo": "locon"})
    path = slider.save(tmp_path / "a" / "x.safetensors", {"family": "sd1x"})
    (path.parent / CONFIG_NAME).unlink()
    x, t, emb = unet_inputs(pipe)
    with torch.no_grad(), slider.strength(1.0):
        expected = unet(x, t, emb).sample
    renderer = PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"]), path)
    assert renderer.adapter.spec is None and len(renderer.adapter.network.loras) == 20
    with torch.no_grad(), renderer.adapter.strength(1.0):
        assert torch.allclose(renderer.pipe.unet(x, t, emb).sample, expected, atol=1e-5)


# --- resume -----------------------------------------------------------------------------------------------
def test_stop_and_resume_matches_an_uninterrupted_lycoris_run(tmp_path, tiny_models):
    cfg = {"max_train_steps": 6, "checkpointing_steps": 100, "lr_scheduler": "cosine", "lr_warmup_steps": 1}
    preset = {"algo": "lokr", "linear_dim": 4, "linear_alpha": 1, "factor": 4}
    full = lycoris_project(tmp_path / "full", tiny_models["sd1x"], preset, cfg)
    train(full)
    part = lycoris_project(tmp_path / "part", tiny_models["sd1x"], preset, cfg)
    mailbox = Mailbox()
    train(part, mailbox=mailbox, sink=lambda e: isinstance(e, Progress) and e.step == 3 and mailbox.send(Command.STOP))
    checkpoint = part / "output" / "checkpoints" / "checkpoint-000003"
    assert (checkpoint / ADAPTER).exists() and (checkpoint / CONFIG_NAME).exists()
    train(part, {"resume_from_checkpoint": "latest"})
    rows = [[json.loads(line) for line in (r / "output" / "metrics.jsonl").read_text().splitlines()]
            for r in (full, part)]
    assert [r["step"] for r in rows[1]] == list(range(1, 7))
    assert [r["loss"] for r in rows[0]] == pytest.approx([r["loss"] for r in rows[1]], rel=1e-4, abs=1e-6)
    ta, tb = load_file(str(full / "output" / ADAPTER)), load_file(str(part / "output" / ADAPTER))
    assert ta.keys() == tb.keys() and all(torch.allclose(ta[k], tb[k], atol=1e-6) for k in ta)


# --- other families and the target table ----------------------------------------------------------------
@pytest.mark.parametrize("family_id", ["sd3", "z_image"])
def test_the_generic_transformer_preset_trains_flow_families(tmp_path, family_id):
    from sliderstudio.app.selfcheck import write_tiny_project

    family = get_family(family_id)
    model = family.build_tiny(tmp_path / "model")
    root = write_tiny_project(tmp_path / "p", model, family)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(lora_type="lycoris", lycoris_config="lycoris.json", max_train_steps=2)
    (root / "config.json").write_text(json.dumps(cfg))
    (root / "lycoris.json").write_text(json.dumps(lycoris_preset(family.lycoris_group, "lokr")))
    path = Trainer(load_project(root), device="cpu").run()
    targets = adapter_io.read_metadata(path)["targets"]
    assert sorted(targets) == sorted(resolve_mixed(family.denoiser(load_pipeline(family, str(model))),
                                                   family.presets["slider"]).module_names)
    size = int(family.extra.get("tiny_size", 64))
    renderer = PreviewRenderer(get_family(family_id), str(model), path)
    images = [np.asarray(im, dtype=np.int16) for im in renderer.render(PROMPT, 0, [0.0, 1.0], steps=2, guidance=1.0,
                                                                       size=size)]
    base = PreviewRenderer(get_family(family_id), str(model)).render(PROMPT, 0, [0.0, 0.0], steps=2, guidance=1.0, size=size)
    assert np.array_equal(images[0], np.asarray(base[0], dtype=np.int16))
    assert not np.array_equal(images[1], images[0])


def test_targets_cli_shows_what_a_lycoris_preset_selects(tmp_path, tiny_models, capsys):
    preset = tmp_path / "l.json"
    preset.write_text(json.dumps({**EXAMPLE, "apply_preset": {"target_module": ["attn1.to_q", "Attention"],
                                                              "exclude_name": [".*attn2.*"]}}))
    assert main(["targets", "--model", str(tiny_models["sd1x"]), "--lycoris", str(preset)]) == 0
    rows = {line.rsplit("  ", 2)[0].strip(): line.split()[-2] if "class" in line else line.split()[1]
            for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["attn1.to_q"] == "4" and rows["Attention (class)"] == "32"
    assert rows["total"] == "16"  # attn2 (cross-attention) excluded: attn1 q/k/v/out in 4 blocks
    preset.write_text(json.dumps({"algo": "lokr", "linear_dim": -2}))
    assert main(["targets", "--model", str(tiny_models["sd1x"]), "--lycoris", str(preset)]) == 2
    assert "key 'linear_dim'" in capsys.readouterr().err


def test_targets_cli_lycoris_without_targets_falls_back_to_the_given_preset(tmp_path, tiny_models, capsys):
    """As in training: a LyCORIS file that names no targets uses the config's (here --preset's) preset."""
    from sliderstudio.adapters.targets import resolve_targets

    preset = tmp_path / "l.json"
    preset.write_text(json.dumps({"algo": "lokr", "linear_dim": 4, "linear_alpha": 1, "factor": 4}))
    model = str(tiny_models["sd1x"])
    totals = {}
    for given, as_preset in (("slider", "slider"), ("attn2.to_k", ["attn2.to_k"])):
        assert main(["targets", "--model", model, "--lycoris", str(preset), "--preset", given]) == 0
        total = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("total")]
        totals[given] = int(total[0].split()[1])
        assert totals[given] == resolve_targets(get_family("sd1x"), model, as_preset, strict=False).total
    assert totals["slider"] != totals["attn2.to_k"]   # so the table really follows --preset


def test_a_foreign_dora_file_renders_one_strength_at_a_time(tmp_path, tiny_models):
    from sliderstudio.config.lycoris_config import LycorisSpec

    assert validate_lycoris_config({"algo": "locon", "dora_wd": True})[0].key == "dora_wd"  # refused for training
    family = get_family("sd1x")
    pipe = load_pipeline(family, str(tiny_models["sd1x"]))
    spec = LycorisSpec("locon", linear_dim=2, linear_alpha=2, options={"dora_wd": True}, target_module=["attn1.to_q"])
    slider, _ = attach_lycoris(pipe.unet, "unet", spec, ("slider", []))
    for p in slider.parameters():
        p.data.add_(torch.randn_like(p) * 0.02)
    path = slider.save(tmp_path / "dora.safetensors", {"family": "sd1x"})
    (tmp_path / CONFIG_NAME).unlink()
    renderer = PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"]), path)
    assert not renderer.adapter.batched
    together = renderer.render(PROMPT, 0, [1.0, -1.0], steps=2, guidance=1.0)
    apart = [renderer.render(PROMPT, 0, [s], steps=2, guidance=1.0)[0] for s in (1.0, -1.0)]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(together, apart))
    assert not np.array_equal(np.asarray(together[0]), np.asarray(together[1]))
