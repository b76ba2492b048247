"""Text encoders and the VAE encoder leave the device once the caches are complete (tiny SD 1.x, CPU)."""
import pytest
import torch
from diffusers.models.autoencoders.vae import Encoder
from transformers import CLIPTextModel

from conftest import make_project
from sliderstudio.engine.encoder_residency import EncoderResidency, encoder_modules, place_pipeline
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer
from sliderstudio.engine.training_setup import prepare_session
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family


def setup(root):
    logs = []
    session = prepare_session(load_project(root), lambda msg, level: logs.append(msg))
    return session, logs


def forbid_encoders(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("an encoder ran although everything was cached")

    monkeypatch.setattr(CLIPTextModel, "forward", never)
    monkeypatch.setattr(Encoder, "forward", never)


def test_cold_cache_releases_the_encoders_and_a_warm_one_never_runs_them(tmp_path, tiny_models, monkeypatch):
    root = make_project(tmp_path / "p", tiny_models["sd1x"])
    session, logs = setup(root)
    assert session.encoders.history == ["off"] and not session.encoders.on_device
    assert set(session.encoders.modules) == {"text_encoder", "vae.encoder", "vae.quant_conv"}
    assert any(m.startswith("encoders off cpu (text_encoder, vae.encoder, vae.quant_conv") and
               "caches are complete" in m for m in logs)
    with monkeypatch.context() as patch:
        forbid_encoders(patch)
        warm, logs = setup(root)
        assert warm.encoders.history == [] and not warm.encoders.on_device
        assert any(m.startswith("every latent and caption is cached: the encoders") for m in logs)
        assert next(m for m in logs if m.startswith("cache ")).endswith("0 encoded")
    # one changed caption: the cache is incomplete, so the encoders are loaded, used and released
    (root / "data" / "neu" / "n0.txt").write_text("a photo of a dark blue square")
    session, logs = setup(root)
    assert session.encoders.history == ["off"]
    assert not any(m.startswith("every latent and caption is cached") for m in logs)


def test_a_warm_run_trains_and_validation_brings_the_text_encoder_back(tmp_path, tiny_models, monkeypatch):
    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"max_train_steps": 2})
    setup(root)  # fills the cache
    project = load_project(root, {"validation_prompt": "a photo of a square", "validation_steps": 1})
    trainer = Trainer(project, lambda event: None)
    states, real_forward = [], CLIPTextModel.forward

    def recording(self, *args, **kwargs):
        states.append(trainer.session.encoders.on_device)
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(CLIPTextModel, "forward", recording)
    monkeypatch.setattr(Encoder, "forward", lambda *a, **k: pytest.fail("the VAE encoder ran"))
    trainer.run()
    assert states and all(states)  # every text-encoder call happened inside a validation render
    history = trainer.session.encoders.history
    assert history == ["on", "off"] * (len(history) // 2) and len(history) >= 4  # validations at steps 1, 2
    assert not trainer.session.encoders.on_device
    assert list((root / "output" / "validation").rglob("*.png"))


def test_place_pipeline_leaves_the_encoders_where_they_are(tiny_models):
    pipe = load_pipeline(get_family("sd1x"), str(tiny_models["sd1x"]))
    keep = encoder_modules(pipe)
    place_pipeline(pipe, torch.device("meta"), keep)  # meta: a second "device" visible on a CPU machine
    assert all(p.device.type == "meta" for p in pipe.unet.parameters())
    assert all(p.device.type == "meta" for p in pipe.vae.decoder.parameters())
    assert all(p.device.type == "meta" for p in pipe.vae.post_quant_conv.parameters())
    for module in keep.values():
        assert all(p.device.type == "cpu" for p in module.parameters())


def test_needed_brings_and_releases_even_when_the_render_fails():
    logs = []
    residency = EncoderResidency({"text_encoder": torch.nn.Linear(2, 2)}, torch.device("cpu"),
                                 lambda msg, level: logs.append(msg), on_device=False)
    with pytest.raises(RuntimeError):
        with residency.needed():
            assert residency.on_device
            raise RuntimeError("render failed")
    assert not residency.on_device and residency.history == ["on", "off"]
    residency.bring()
    with residency.needed():  # already on the device (still encoding): left there
        pass
    assert residency.on_device and residency.history == ["on", "off", "on"]
    residency.release("done")
    assert logs == ["encoders off cpu (text_encoder, 0.0 MiB): done"]
