"""Z-Image: slider targets on the real module tree, per-sample scale, the pipeline's conventions, assistant."""
import json

import pytest
import torch
from safetensors.torch import load_file

from sliderstudio.adapters import adapter_io, adapters
from sliderstudio.adapters.targets import matches, resolve_targets
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from tests.families.family_checks import (
    all_module_names, block_counts, check_matches_pipeline_step, check_per_sample_scale, entry_counts, slider_report,
)

FAMILY = get_family("z_image")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("z_image") / "model")


def test_aliases_and_flavours():
    assert get_family("zimage") is FAMILY and get_family("Z-Image") is FAMILY
    assert FAMILY.flavours == ("turbo", "base") and "assistant" in FAMILY.assistant_hint("turbo")
    assert FAMILY.assistant_hint("base") is None


def test_wildcard_segments_match_one_level():
    assert matches("layers.3.attention.to_q", "layers.*.attention.to_q")
    assert not matches("context_refiner.0.attention.to_q", "layers.*.attention.to_q")
    assert not matches("layers.3.attention.to_q", "layers.*.to_q")  # `*` is exactly one segment


def test_slider_preset_is_image_and_joint_attention_only(model):
    report = slider_report(FAMILY, model)
    counts = entry_counts(report)
    assert all(counts[f"layers.*.attention.{p}"] == 2 for p in ("to_q", "to_k", "to_v", "to_out.0"))
    assert all(counts[f"noise_refiner.*.attention.{p}"] == 1 for p in ("to_q", "to_k", "to_v", "to_out.0"))
    assert report.total == 12
    assert block_counts(report.module_names) == {"layers": 8, "noise_refiner": 4}
    everything = all_module_names(FAMILY, model)
    assert "context_refiner.0.attention.to_q" in everything  # the caption refiner exists …
    assert not any(n.startswith(("context_refiner", "cap_embedder")) for n in report.module_names)  # … unselected


def test_general_list_matches_nothing_and_default_reaches_the_caption_refiner(model):
    assert resolve_targets(FAMILY, str(model), "reference", strict=False).total == 0
    default = resolve_targets(FAMILY, str(model), "default").module_names
    assert any(n.startswith("context_refiner") for n in default) and len(default) == 16


def test_per_sample_scale_matches_separate_forwards(model):
    check_per_sample_scale(FAMILY, model)


def test_prediction_matches_the_pipelines_denoising_step(model):
    check_matches_pipeline_step(FAMILY, model, to_ours=lambda latents: latents)


def make_assistant(model, path):
    """A random LoRA over every attention projection (caption refiner included), saved as diffusers does."""
    from diffusers import ZImagePipeline

    pipe = load_pipeline(FAMILY, str(model))
    denoiser = FAMILY.denoiser(pipe)
    names = resolve_targets(FAMILY, str(model), "default").module_names
    config = adapters.attach_lora(denoiser, names, 2, 4, adapter="turbo_fix", seed=5)
    gen = torch.Generator().manual_seed(5)
    for name, param in denoiser.named_parameters():
        if ".turbo_fix." in name and "lora_B" in name:
            param.data = torch.randn(param.shape, generator=gen) * 0.05
    state = adapters.slider_state_dict(denoiser, "turbo_fix")
    path.mkdir(parents=True)
    ZImagePipeline.save_lora_weights(str(path), transformer_lora_layers=state,
                                     transformer_lora_adapter_metadata=config.to_dict(), safe_serialization=True)
    return path / "pytorch_lora_weights.safetensors", len(names)


def test_assistant_adapter_is_frozen_unscaled_and_not_saved(model, tmp_path, monkeypatch):
    from conftest import make_project
    import sliderstudio.engine.trainer as trainer_module
    from sliderstudio.engine.project import load_project

    assistant, assistant_modules = make_assistant(model, tmp_path / "assistant")
    root = make_project(tmp_path / "proj", model, family="z_image",
                        config={"assistant_lora_path": str(assistant), "assistant_lora_strength": 0.7,
                                "max_train_steps": 3, "learning_rate": 1e-2})
    seen: list[tuple[float, float]] = []
    real_prepare = trainer_module.prepare_session

    def spying_prepare(*args, **kwargs):
        session = real_prepare(*args, **kwargs)
        layer = next(l for l in adapters.lora_layers(session.denoiser)
                     if adapters.ASSISTANT in l.scaling and adapters.SLIDER in l.scaling)
        layer.register_forward_pre_hook(
            lambda m, a: seen.append((m.scaling[adapters.ASSISTANT], m.scaling[adapters.SLIDER])))
        return session

    monkeypatch.setattr(trainer_module, "prepare_session", spying_prepare)
    trainer = trainer_module.Trainer(load_project(root), device="cpu")
    out = trainer.run()
    session = trainer.session
    denoiser = session.denoiser

    # Loaded at its own strength (0.7 × alpha/rank = 0.7 × 4/2) and held there during every forward.
    assert seen and all(abs(a - 0.7 * 2.0) < 1e-9 for a, _ in seen)
    assert {round(s, 6) for _, s in seen} >= {0.5, -0.5}  # the slider followed the buckets
    assert all(abs(s - 1.4) < 1e-9 for s in adapters.get_scales(denoiser, adapters.ASSISTANT))
    assistant_params = [p for n, p in denoiser.named_parameters() if f".{adapters.ASSISTANT}." in n]
    assert len(assistant_params) == 2 * assistant_modules and not any(p.requires_grad for p in assistant_params)
    optimised = {id(p) for group in session.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in assistant_params)
    # The assistant's weights are exactly what the file holds (never trained).
    stored = load_file(str(assistant))
    lora_b = [k for k in stored if "lora_B" in k][0]
    module = lora_b.split("transformer.", 1)[1].rsplit(".lora_B", 1)[0]
    live = dict(denoiser.named_parameters())[f"{module}.lora_B.{adapters.ASSISTANT}.weight"]
    assert torch.equal(live.detach(), stored[lora_b])
    # The output file holds the slider only.
    tensors = load_file(str(out))
    meta = adapter_io.read_metadata(out)
    assert tensors and all("assistant" not in k and "turbo_fix" not in k for k in tensors)
    assert len(tensors) == 2 * len(meta["targets"]) == 2 * 12
    assert json.dumps(meta).count("assistant") == 0
