"""Stable Cascade: the slider is on the prior's attention/embedding/timestep layers, never its CLIP
mappers; the prior + decoder folders load as one pipeline; images encode to prior latents; and per-sample
slider scales over a batch equal separate forwards of the prior."""
import pytest
import torch

from sliderstudio.adapters.targets import resolve_targets, text_path_modules
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from sliderstudio.app.selfcheck import attach_random_slider, per_sample_scale_error
from sliderstudio.families.stage_c_encoder import StageCEncoder, load_encoder

FAMILY = get_family("stable_cascade")
EXPECTED = {"attention.to_q": 4, "attention.to_k": 4, "attention.to_v": 4, "attention.to_out.0": 4,
            "embedding.1": 1, "clf.1": 1, "mapper": 4}
CONDITIONING = ("kv_mapper", "clip_txt_mapper", "clip_txt_pooled_mapper", "clip_img_mapper", "mapper_sca", "mapper_crp")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return FAMILY.build_tiny(tmp_path_factory.mktemp("cascade") / "model")


@pytest.fixture(scope="module")
def pipe(model):
    return load_pipeline(FAMILY, str(model))


def test_simpletuner_spellings_resolve():
    assert all(get_family(name) is FAMILY for name in ("stable-cascade", "wuerstchen", "StableCascade"))


def test_slider_preset_counts_per_entry_and_visual_path_only(model):
    report = resolve_targets(FAMILY, str(model), "slider")
    assert {e.pattern: e.count for e in report.entries} == EXPECTED
    assert text_path_modules(report.module_names) == []
    assert not any(part in n for n in report.module_names for part in CONDITIONING)


def test_text_conditioning_layers_exist_but_are_not_selected(model):
    names = {n for n, _ in FAMILY.skeleton(model).named_modules()}
    conditioning = {n for n in names if any(part in n for part in CONDITIONING)}
    assert {"clip_txt_mapper", "clip_txt_pooled_mapper", "down_blocks.0.2.kv_mapper.1"} <= conditioning
    assert conditioning.isdisjoint(resolve_targets(FAMILY, str(model), "slider").module_names)


def test_prior_and_decoder_folders_load_as_one_pipeline(pipe):
    assert type(pipe).__name__ == "StableCascadeCombinedPipeline"
    assert FAMILY.denoiser(pipe) is pipe.prior_prior
    assert pipe.prior_pipe.config.resolution_multiple == 8.0 and pipe.decoder_pipe.config.latent_dim_scale == 2.0


def test_a_saved_combined_pipeline_loads_too(pipe, tmp_path):
    """diffusers 0.42 cannot resolve Stage A (PaellaVQModel) from model_index.json; the family loads it."""
    pipe.save_pretrained(tmp_path / "combined", safe_serialization=True)
    again = load_pipeline(FAMILY, str(tmp_path / "combined"))
    assert type(again).__name__ == "StableCascadeCombinedPipeline"
    for name in ("vqgan", "prior_prior", "decoder"):
        left, right = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert all(torch.equal(left[k], right[k]) for k in left)
    assert again.decoder_pipe.vqgan is again.vqgan


def test_images_encode_to_the_prior_latent_grid(pipe):
    latents = FAMILY.encode_images(pipe, torch.rand(2, 3, 32, 32) * 2 - 1)
    # the same grid the prior samples at this size: ceil(32 / resolution_multiple) = 4
    assert latents.shape == (2, pipe.prior_prior.config.in_channels, 4, 4)


def test_training_noise_follows_the_wuerstchen_schedule(pipe):
    schedule = FAMILY.noise_schedule(pipe)
    x0, eps, t = torch.ones(1, 4, 4, 4), torch.zeros(1, 4, 4, 4), torch.tensor([0.5])
    noisy, target = FAMILY.noisy_and_target(schedule, x0, eps, t)
    alpha = schedule._alpha_cumprod(t, "cpu")
    assert torch.allclose(noisy, alpha.sqrt() * x0) and torch.equal(target, eps)


def test_per_sample_scale_matches_separate_forwards(model):
    pipe = load_pipeline(FAMILY, str(model))
    attach_random_slider(FAMILY, pipe)
    error, effect = per_sample_scale_error(FAMILY, pipe)
    assert effect > 1e-4
    assert error < 1e-5


def test_full_size_stage_c_encoder_has_efficientnet_v2_s_shape_and_key_names(tmp_path):
    """Stability's effnet_encoder.safetensors = torchvision efficientnet_v2_s().features + mapper."""
    from safetensors.torch import save_file

    encoder = StageCEncoder()
    backbone = sum(p.numel() for n, p in encoder.named_parameters() if n.startswith("backbone."))
    assert backbone == 21_458_488 - 1280 * 1000 - 1000  # torchvision's count without the classifier
    state = encoder.state_dict()
    assert {"backbone.0.0.weight", "backbone.1.0.block.0.1.running_var", "backbone.4.0.block.2.fc1.bias",
            "backbone.7.0.weight", "mapper.0.weight", "mapper.1.running_mean"} <= set(state)
    official = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(official, str(tmp_path / "effnet_encoder.safetensors"))
    loaded = load_encoder(tmp_path / "effnet_encoder.safetensors")
    assert torch.equal(loaded.state_dict()["mapper.0.weight"], state["mapper.0.weight"])
    save_file({**official, "extra.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(Exception, match="not a Stage C encoder"):
        load_encoder(tmp_path / "bad.safetensors")
