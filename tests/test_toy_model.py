"""The shipped toy model loads through the ordinary SD 1.x path and draws what it is told."""

import json

import numpy as np
import pytest
import torch

from sliderstudio.toy.metrics import measure_image
from sliderstudio.kernel.resources import toy_model_dir
from sliderstudio.toy.vocab import world_words

MODEL = toy_model_dir()
pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").is_file(), reason="toy model not built")


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(str(MODEL), local_files_only=True)
    p.set_progress_bar_config(disable=True)
    return p


def test_size_limit_and_files():
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size <= 25 * 1024 * 1024
    index = json.loads((MODEL / "model_index.json").read_text())
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    assert all(f.suffix != ".bin" for f in MODEL.rglob("*"))
    log = json.loads((MODEL / "training_log.json").read_text())
    assert log["unet"]["steps"] > 0 and log["vae"]["steps"] > 0


def test_components(pipe):
    cfg = pipe.scheduler.config
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    assert (cfg.timestep_spacing, cfg.steps_offset, cfg.prediction_type) == ("leading", 1, "epsilon")
    assert pipe.unet.dtype == torch.float32
    assert pipe.vae.config.block_out_channels == [32, 64, 64]  # 4x downsampling
    assert all(len(pipe.tokenizer(w).input_ids) == 3 for w in world_words())


def test_renders_what_the_prompt_says(pipe):
    prompts = ["a red circle on a white background", "a yellow square on a black background",
               "a large green triangle on a gray background", "a cyan circle on a blue background"]
    gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    images = pipe(prompts, height=32, width=32, num_inference_steps=20, guidance_scale=2.0, generator=gens).images
    assert all(im.size == (32, 32) for im in images)
    ms = [measure_image(im) for im in images]
    assert all(np.asarray(im).std() > 10 for im in images)
    assert [m.background_colour for m in ms] == ["white", "black", "gray", "blue"]
    assert sum(m.shape_colour == p.split()[-6] for m, p in zip(ms, prompts)) >= 3
