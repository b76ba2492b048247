"""ControlNet sliders on the transformer families SimpleTuner trains ControlNets for: SD3 and Flux.1.

The slider's targets sit on the ControlNet; the transformer stays as loaded. The ControlNet reads
VAE latents of the control image (InstantX style), or pixels through its hint block (XLabs style,
Flux), the way diffusers' ControlNet pipelines feed it.
"""
import numpy as np
import pytest
import torch

from sliderstudio.adapters.controlnet import load_control_image
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family
from controlnet_checks import assert_trained_on_the_controlnet_only
from test_controlnet import PROMPT, controlnet_project


def randomise_zero_layers(controlnet: torch.nn.Module) -> None:
    """A fresh ControlNet's output (and input) projections are zero; a trained one's are not."""
    torch.manual_seed(1)
    for name, module in controlnet.named_modules():
        zeroed = ("controlnet_blocks." in name or "controlnet_single_blocks." in name
                  or name in ("pos_embed_input.proj", "controlnet_x_embedder"))
        if zeroed and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.normal_(module.weight, std=0.2)


def build_controlnet(family: str, model, out, xlabs: bool = False):
    pipe = load_pipeline(get_family(family), str(model))
    torch.manual_seed(0)
    if family == "sd3":
        from diffusers import SD3ControlNetModel

        controlnet = SD3ControlNetModel.from_transformer(pipe.transformer, num_layers=1,
                                                         num_extra_conditioning_channels=0)
    else:
        from diffusers import FluxControlNetModel

        cfg = dict(pipe.transformer.config)
        cfg.update(num_layers=1, num_single_layers=1)
        if xlabs:  # as XLabs' configs: the hint's 8× features are 2×2-patchified into the packed token width
            cfg.update(conditioning_embedding_channels=cfg["in_channels"] // 4, patch_size=2)
        controlnet = FluxControlNetModel.from_config(cfg)
    randomise_zero_layers(controlnet)
    controlnet.save_pretrained(out)
    return out


def flux_with_8x_vae(source, out):
    """The tiny Flux with an 8× VAE, as real Flux has: an XLabs ControlNet's hint block assumes that factor."""
    from diffusers import AutoencoderKL

    pipe = load_pipeline(get_family("flux"), str(source))
    torch.manual_seed(0)
    pipe.vae = AutoencoderKL(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                             norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 4,
                             up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=1.5, shift_factor=0.1,
                             use_quant_conv=False, use_post_quant_conv=False)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def transformer_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tmodels")
    models = {f: get_family(f).build_tiny(root / f) for f in ("sd3", "flux")}
    models["flux-8x"] = flux_with_8x_vae(models["flux"], root / "flux-8x")
    return models


@pytest.mark.parametrize("family,xlabs", [("sd3", False), ("flux", False), ("flux", True)],
                         ids=["sd3", "flux-instantx", "flux-xlabs"])
def test_transformer_controlnet_slider_trains_on_the_controlnet_and_previews(tmp_path, transformer_models,
                                                                           family, xlabs):
    model = transformer_models["flux-8x" if xlabs else family]
    cn_path = build_controlnet(family, model, tmp_path / "cn", xlabs)
    root = controlnet_project(tmp_path / "p", model, cn_path,
                              config={"max_train_steps": 2, "model_family": family})
    trainer = Trainer(load_project(root))
    path = trainer.run()
    assert_trained_on_the_controlnet_only(trainer.session, family, model, path)
    # the conditioning was cached in the family's representation
    kind = "pixels" if xlabs else ("latents-noshift" if family == "sd3" else "latents")
    assert list((root / "cache").rglob(f"control-{kind}/*.safetensors"))

    # preview: ±1 differ from 0 and from each other; strength 0 is exactly the plain ControlNet pipeline's
    # render (SD3's pipeline samples the control latents from the global RNG, hence the seeding)
    control = root / "cond" / "pos" / "img0.png"
    renderer = PreviewRenderer(get_family(family), str(model), path, control_image=control)
    images = [np.asarray(im) for im in renderer.render(PROMPT, 0, [0.0, 1.0, -1.0], steps=2, guidance=1.0,
                                                       size=64)]
    assert not np.array_equal(images[1], images[0]) and not np.array_equal(images[2], images[1])
    torch.manual_seed(7)
    at_zero = np.asarray(renderer.render(PROMPT, 0, [0.0], steps=2, guidance=1.0, size=64)[0])
    renderer.adapter.remove()
    torch.manual_seed(7)
    reference = renderer._control_pipe(prompt=[PROMPT], control_image=[load_control_image(control, 64)],
                                       num_inference_steps=2, guidance_scale=1.0, height=64, width=64,
                                       generator=[torch.Generator().manual_seed(0)], output_type="pil").images
    assert np.array_equal(at_zero, np.asarray(reference[0]))


def test_flux_controlnet_union_is_refused_with_the_key(tmp_path, transformer_models, capsys):
    from diffusers import FluxControlNetModel

    from sliderstudio.cli import main

    model = transformer_models["flux"]
    pipe = load_pipeline(get_family("flux"), str(model))
    cfg = dict(pipe.transformer.config)
    cfg.update(num_layers=1, num_single_layers=1, num_mode=3)
    FluxControlNetModel.from_config(cfg).save_pretrained(tmp_path / "union")
    root = controlnet_project(tmp_path / "p", model, tmp_path / "union",
                              config={"max_train_steps": 1, "model_family": "flux"})
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "controlnet_model_name_or_path" in err and "ControlNet-Union" in err
    assert not (root / "output" / "pytorch_lora_weights.safetensors").exists()
