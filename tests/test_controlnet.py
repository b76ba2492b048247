"""Sliders trained on a ControlNet (SPEC §5): targets on the ControlNet, the UNet untouched, preview with a control image."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import draw, make_project
from sliderstudio.cli import main
from sliderstudio.adapters import adapter_io
from sliderstudio.kernel.errors import DatasetError
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.engine.project import load_project
from sliderstudio.engine.trainer import Trainer
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family

PROMPT = "a photo of a red square"


@pytest.fixture(scope="module")
def tiny_controlnet(tmp_path_factory, tiny_models):
    """A ControlNet built from the tiny UNet; its zero convolutions get weights, as a trained one has."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(tiny_models["sd1x"]), subfolder="unet")
    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 16))
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                 controlnet.controlnet_cond_embedding.conv_out]:
        torch.nn.init.normal_(conv.weight, std=0.05)
    path = tmp_path_factory.mktemp("controlnet") / "cn"
    controlnet.save_pretrained(path)
    return path


def controlnet_project(root, model, controlnet, skip=(), config=None):
    make_project(root, model, config={"controlnet": True, "controlnet_model_name_or_path": str(controlnet),
                                      "learning_rate": 1e-2, **(config or {})})
    buckets = json.loads((root / "multidatabackend.json").read_text())
    for bucket in buckets:
        for image in sorted((root / "data" / bucket["id"]).glob("*.png")):
            if image.stem not in skip:
                draw(root / "cond" / bucket["id"] / image.name, 0.4 + 0.1 * len(image.stem), colour=(255, 255, 255))
        bucket["conditioning_data_dir"] = f"cond/{bucket['id']}"
    (root / "multidatabackend.json").write_text(json.dumps(buckets))
    return root


def test_controlnet_slider_leaves_the_unet_untouched_and_changes_the_controlnet(tmp_path, tiny_models,
                                                                               tiny_controlnet):
    root = controlnet_project(tmp_path / "p", tiny_models["sd1x"], tiny_controlnet, config={"max_train_steps": 3})
    trainer = Trainer(load_project(root))
    path = trainer.run()
    session = trainer.session
    unet, controlnet = session.denoiser.unet, session.denoiser.controlnet
    # the UNet: no adapter layer, no gradient, every weight as loaded
    assert not any("lora" in n for n, _ in unet.named_parameters())
    assert not any(p.requires_grad for p in unet.parameters())
    fresh = dict(load_pipeline(get_family("sd1x"), str(tiny_models["sd1x"])).unet.named_parameters())
    assert all(torch.equal(p, fresh[n]) for n, p in unet.named_parameters())
    # the adapter sits on the ControlNet, on the family's slider preset resolved there
    keys = load_file(str(path)).keys()
    assert keys and all(k.startswith("controlnet.") for k in keys)
    meta = adapter_io.read_metadata(path)
    assert meta["controlnet"] is True and not any("attn2" in t for t in meta["targets"])
    assert {p for p in session.params} <= set(controlnet.parameters())
    # the ControlNet's residuals change with the strength; strength 0 is the ControlNet as loaded
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([200, 600])
    emb = session.pipe.encode_prompt([PROMPT] * 2, "cpu", 1, False)[0]
    cond = torch.rand(2, 3, 64, 64, generator=g)

    def residual(strength):
        with torch.no_grad(), session.adapter.strength(strength):
            return controlnet(x, t, emb, controlnet_cond=cond, return_dict=False)[1]

    from diffusers import ControlNetModel

    base = ControlNetModel.from_pretrained(str(tiny_controlnet))(x, t, emb, controlnet_cond=cond, return_dict=False)[1]
    assert torch.equal(residual(0.0), base.detach())
    up, down = (residual(1.0) - base).flatten(), (residual(-1.0) - base).flatten()
    assert up.norm() > 0 and torch.nn.functional.cosine_similarity(up, down, dim=0) < -0.9

    # preview: the CLI needs a control image for this adapter; with one, strength 0 is the plain ControlNet render
    grid = tmp_path / "grid.png"
    args = ["preview", "--model", str(tiny_models["sd1x"]), "--lora", str(path), "--prompt", PROMPT,
            "--strengths", "-1,0,1", "--steps", "2", "--out", str(grid)]
    assert main(args) == 2 and not grid.exists()
    control = root / "cond" / "pos" / "img0.png"
    assert main(args + ["--control-image", str(control)]) == 0 and Image.open(grid).size == (3 * 64, 78)
    renderer = PreviewRenderer(get_family("sd1x"), str(tiny_models["sd1x"]), path, control_image=control)
    images = [np.asarray(im) for im in renderer.render(PROMPT, 0, [0.0, 1.0], steps=2, guidance=1.0)]
    renderer.adapter.remove()
    from sliderstudio.adapters.controlnet import load_control_image

    reference = renderer._control_pipe(prompt=[PROMPT] * 2, image=[load_control_image(control, 64)] * 2,
                                       num_inference_steps=2, guidance_scale=1.0, height=64, width=64,
                                       generator=[torch.Generator().manual_seed(0) for _ in range(2)],
                                       output_type="pil").images
    assert np.array_equal(images[0], np.asarray(reference[0])) and not np.array_equal(images[1], images[0])


def test_missing_conditioning_image_fails_before_the_model_loads(tmp_path, tiny_controlnet, capsys):
    root = controlnet_project(tmp_path / "p", "/nowhere/model", tiny_controlnet, skip=("img1",))
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "conditioning_data_dir" in err and "no conditioning image with the same name (e.g. 'img1')" in err
    assert not (root / "output" / "metrics.jsonl").exists()


@pytest.mark.parametrize("change,fragment", [
    ({"controlnet_model_name_or_path": None}, "controlnet: true needs controlnet_model_name_or_path"),
    ({"controlnet_model_name_or_path": "/nowhere/cn"}, "controlnet_model_name_or_path': no such folder"),
    ({"model_family": "sd2x"}, "Stable Diffusion 2.x has no ControlNet support here"),
])
def test_controlnet_config_errors_exit_2(tmp_path, tiny_controlnet, capsys, change, fragment):
    root = controlnet_project(tmp_path / "p", "/nowhere/model", tiny_controlnet)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(change)
    (root / "config.json").write_text(json.dumps(cfg))
    assert main(["train", "--config", str(root)]) == 2
    assert fragment in capsys.readouterr().err
    out = root / "output"
    assert not out.exists() or {p.name for p in out.iterdir()} <= {"run.json"}  # only the run-state heartbeat


def test_conditioning_images_are_cached_like_latents(tmp_path, tiny_models, tiny_controlnet):
    root = controlnet_project(tmp_path / "p", tiny_models["sd1x"], tiny_controlnet, config={"max_train_steps": 1})
    Trainer(load_project(root)).run()
    cached = list((root / "cache").rglob("control-pixels01/*.safetensors"))
    assert len(cached) == len(set(p.read_bytes() for p in (root / "cond").rglob("*.png")))
    with pytest.raises(DatasetError):
        (root / "cond" / "neu" / "n0.png").unlink()
        Trainer(load_project(root)).run()


def test_sdxl_controlnet_slider_trains_on_the_controlnet_and_previews(tmp_path, tiny_models):
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(tiny_models["sdxl"]), subfolder="unet")
    torch.manual_seed(0)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 16))
    for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                 controlnet.controlnet_cond_embedding.conv_out]:
        torch.nn.init.normal_(conv.weight, std=0.05)
    cn_path = tmp_path / "cn-xl"
    controlnet.save_pretrained(cn_path)
    root = controlnet_project(tmp_path / "p", tiny_models["sdxl"], cn_path,
                              config={"max_train_steps": 2, "model_family": "sdxl"})
    trainer = Trainer(load_project(root))
    path = trainer.run()
    unet = trainer.session.denoiser.unet
    assert not any("lora" in n for n, _ in unet.named_parameters())
    assert not any(p.requires_grad for p in unet.parameters())
    keys = load_file(str(path)).keys()
    assert keys and all(k.startswith("controlnet.") for k in keys)
    control = root / "cond" / "pos" / "img0.png"
    renderer = PreviewRenderer(get_family("sdxl"), str(tiny_models["sdxl"]), path, control_image=control)
    images = [np.asarray(im) for im in renderer.render(PROMPT, 0, [0.0, 1.0, -1.0], steps=2, guidance=1.0)]
    assert not np.array_equal(images[1], images[0]) and not np.array_equal(images[2], images[1])
