"""Whole runs on a tiny SD model: outputs, caches, reload through plain diffusers, stop/resume, crashes."""
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_project
from sliderstudio.adapters import adapter_io
from sliderstudio.engine.buckets import balance, scan_project
from sliderstudio.kernel.errors import OutputError, TargetError
from sliderstudio.kernel.events import Command, Finished, Log, Mailbox, Progress
from sliderstudio.engine.project import load_project
from sliderstudio.engine.sampler import SliderSampler, sampler_buckets
from sliderstudio.engine.trainer import Trainer

ADAPTER = "pytorch_lora_weights.safetensors"


def run(root, overrides=None, mailbox=None):
    events = []
    path = Trainer(load_project(root, overrides), events.append, mailbox).run()
    return path, events


def metrics(root):
    return [json.loads(line) for line in (root / "output" / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_adapter_metrics_in_plan_order_and_reuses_caches(tmp_path, tiny_models):
    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"max_train_steps": 6,
                                                                     "gradient_accumulation_steps": 2})
    path, events = run(root)
    assert path == root / "output" / ADAPTER and path.exists()
    rows = metrics(root)
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert set(rows[0]) >= {"step", "loss", "lr", "buckets", "strengths", "seconds"}
    project = load_project(root)
    scanned = scan_project(project)
    plan = SliderSampler(sampler_buckets(scanned), 0, 1, balance(project, scanned).pair_map).take(12)
    assert [b for r in rows for b in r["buckets"]] == [mb.bucket_id for mb in plan]
    assert [s for r in rows for s in r["strengths"]] == [mb.strength for mb in plan]
    meta = adapter_io.read_metadata(path)
    assert meta["family"] == "sd1x" and meta["rank"] == 2 and meta["alpha"] == 2.0
    assert meta["strengths"] == [-0.5, 0.0, 0.5] and meta["pairing"] is True and len(meta["targets"]) == 27
    assert meta["lora_adapter_metadata"]["unet.lora_alpha"] == 2
    assert any(isinstance(e, Log) and "paired mode" in e.message for e in events)
    assert [e.step for e in events if isinstance(e, Progress)] == list(range(1, 7))
    # Second run: every latent and caption comes from the cache.
    _, events = run(root, {"max_train_steps": 1})
    cache_line = next(e.message for e in events if isinstance(e, Log) and e.message.startswith("cache "))
    assert "0 encoded; " in cache_line and cache_line.endswith("0 encoded")


def test_plain_diffusers_loads_the_adapter_and_honours_weights(tmp_path, tiny_models):
    from diffusers import StableDiffusionPipeline

    from sliderstudio.adapters.adapters import lora_layers

    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"max_train_steps": 4, "lora_alpha": 4,
                                                                     "learning_rate": 5e-3})
    path, _ = run(root)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_models["sd1x"], local_files_only=True, safety_checker=None)
    pipe.load_lora_weights(str(path), adapter_name="s")
    layers = lora_layers(pipe.unet)
    assert len(layers) == 27 and layers[0].lora_alpha["s"] == 4 and layers[0].r["s"] == 2
    tensors = load_file(str(path))
    for layer_name, module in pipe.unet.named_modules():
        if hasattr(module, "lora_A") and "s" in module.lora_A:
            key = f"unet.{layer_name}.lora_A.weight"
            assert torch.equal(module.lora_A["s"].weight, tensors[key])
            break
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    emb = pipe.encode_prompt("a red square", "cpu", 1, False)[0]
    outs = {}
    for w in (0.0, 1.0, -1.0):
        pipe.set_adapters(["s"], [w])
        outs[w] = pipe.unet(x, t, encoder_hidden_states=emb).sample
    pipe.disable_lora()
    base = pipe.unet(x, t, encoder_hidden_states=emb).sample
    assert torch.allclose(outs[0.0], base, atol=1e-6)
    d1, d2 = (outs[1.0] - base).flatten(), (outs[-1.0] - base).flatten()
    assert d1.norm() > 0 and torch.nn.functional.cosine_similarity(d1, d2, dim=0) < -0.9


def test_stop_and_resume_matches_an_uninterrupted_run(tmp_path, tiny_models):
    cfg = {"max_train_steps": 8, "checkpointing_steps": 100, "lr_scheduler": "cosine", "lr_warmup_steps": 2}
    full = make_project(tmp_path / "full", tiny_models["sd1x"], config=cfg)
    run(full)
    part = make_project(tmp_path / "part", tiny_models["sd1x"], config=cfg)
    mailbox = Mailbox()
    events = []

    def sink(e):
        events.append(e)
        if isinstance(e, Progress) and e.step == 4:  # the next micro-batch is a paired negative
            mailbox.send(Command.STOP)

    Trainer(load_project(part), sink, mailbox).run()
    finished = [e for e in events if isinstance(e, Finished)]
    assert finished[-1].stopped_early and finished[-1].step == 4
    assert (part / "output" / "checkpoints" / "checkpoint-000004" / ADAPTER).exists()
    assert not (part / "output" / ADAPTER).exists()
    run(part, {"resume_from_checkpoint": "latest"})
    a, b = metrics(full), metrics(part)
    assert [r["step"] for r in b] == list(range(1, 9))
    assert [r["buckets"] for r in a] == [r["buckets"] for r in b]
    assert [r["lr"] for r in a] == pytest.approx([r["lr"] for r in b])
    assert [r["strengths"] for r in a] == [r["strengths"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4, abs=1e-7)
    ta, tb = load_file(str(full / "output" / ADAPTER)), load_file(str(part / "output" / ADAPTER))
    assert ta.keys() == tb.keys()
    assert all(torch.allclose(ta[k], tb[k], atol=1e-6) for k in ta)


def test_crash_while_saving_keeps_the_previous_adapter(tmp_path, tiny_models, monkeypatch):
    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"max_train_steps": 2})
    path, _ = run(root)
    good = path.read_bytes()

    def torn_write(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(adapter_io, "save_file", torn_write)
    with pytest.raises(OutputError, match="no space left on the device"):
        run(root, {"max_train_steps": 3})
    assert path.read_bytes() == good
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_zero_match_preset_fails_before_training(tmp_path, tiny_models):
    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"peft_lora_target_modules": ["attn9.to_q"]})
    with pytest.raises(TargetError, match="selects zero modules"):
        run(root)
    out = root / "output"
    assert not (out / "metrics.jsonl").exists() and not (out / ADAPTER).exists()


@pytest.mark.parametrize("family_id", ["sd2x", "sdxl"])
def test_other_unet_families_train_and_validate(tmp_path, tiny_models, family_id):
    root = make_project(tmp_path / "p", tiny_models[family_id], family=family_id,
                        config={"max_train_steps": 3, "validation_steps": 3, "user_prompt_library": "prompts.json"},
                        prompts={"sq": "a red square", "neg": {"prompt": "a red square", "adapter_strength": -1}})
    path, events = run(root)
    rows = metrics(root)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    names = sorted(p.name for p in (root / "output" / "validation" / "step-000003").iterdir())
    assert names == ["neg_s-1.00.png", "sq_s+1.00.png"]
    assert load_file(str(path)).keys()


def test_a_distilled_flavour_without_its_assistant_is_warned_about(tmp_path, tiny_models):
    from sliderstudio.engine.training_setup import attach_assistant
    from sliderstudio.families.registry import get_family

    logs = []
    for flavour, disable in (("turbo", False), ("base", False), ("turbo", True)):
        root = make_project(tmp_path / f"{flavour}{disable}", "/unused", family="z_image",
                            config={"model_flavour": flavour, "disable_assistant_lora": disable})
        logs.append([])
        assert attach_assistant(load_project(root), get_family("z_image"), None,
                                lambda m, level, out=logs[-1]: out.append((level, m))) == []
    assert logs[0] and logs[0][0][0] == "warning" and "assistant_lora_path" in logs[0][0][1]
    assert logs[1] == [] and logs[2] == []  # the base flavour needs none; disabling it on purpose is quiet
