"""Shared fixtures: tiny models saved to disk (loaded through the real from_pretrained path) and projects."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random SD 1.x, SD 2.x (v-prediction) and SDXL folders, built once per session."""
    from sliderstudio.kernel.build_lock import BUILD_LOCK
    from sliderstudio.families.tiny import build_tiny_sd

    root = tmp_path_factory.mktemp("models")
    with BUILD_LOCK:  # a GUI test's worker may still be loading a model on another thread
        return {
            "sd1x": build_tiny_sd(root / "sd1x", "sd1x"),
            "sd2x": build_tiny_sd(root / "sd2x", "sd2x", prediction="v_prediction"),
            "sdxl": build_tiny_sd(root / "sdxl", "sdxl"),
        }


def draw(path: Path, size: float, colour=(200, 40, 40), px: int = 64, seed: int = 0) -> None:
    """A filled square of relative `size` on a grey background, with a little seeded noise."""
    rng = np.random.default_rng(seed)
    arr = np.full((px, px, 3), 128, dtype=np.uint8)
    half = int(px * size / 2)
    c = px // 2
    arr[c - half:c + half, c - half:c + half] = colour
    arr = np.clip(arr.astype(int) + rng.integers(-5, 6, arr.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_project(root: Path, model: Path | str, *, pairs: int = 3, neutral: int = 2, family: str = "sd1x",
                 config: dict | None = None, buckets: list[dict] | None = None, prompts: dict | None = None) -> Path:
    """A complete project folder: bigger/smaller pairs with matching names, a neutral bucket, captions."""
    for i in range(pairs):
        draw(root / "data" / "pos" / f"img{i}.png", 0.8, seed=i)
        (root / "data" / "pos" / f"img{i}.txt").write_text("a photo of a big red square")
        draw(root / "data" / "neg" / f"img{i}.png", 0.3, seed=i)
        (root / "data" / "neg" / f"img{i}.txt").write_text("a photo of a small red square")
    for i in range(neutral):
        draw(root / "data" / "neu" / f"n{i}.png", 0.5, colour=(40, 40, 200), seed=10 + i)
        (root / "data" / "neu" / f"n{i}.txt").write_text("a photo of a blue square")
    cfg = {"model_family": family, "pretrained_model_name_or_path": str(model), "output_dir": "output",
           "data_backend_config": "multidatabackend.json", "lora_rank": 2, "lora_alpha": 2,
           "learning_rate": 1e-3, "max_train_steps": 6, "resolution": 64, "seed": 0,
           "validation_num_inference_steps": 2, "validation_guidance": 1.0}
    cfg.update(config or {})
    (root / "config.json").write_text(json.dumps(cfg))
    if buckets is None:
        buckets = [
            {"id": "pos", "instance_data_dir": "data/pos", "slider_strength": 0.5},
            {"id": "neg", "instance_data_dir": "data/neg", "slider_strength": -0.5},
            {"id": "neu", "instance_data_dir": "data/neu", "slider_strength": 0.0},
        ]
    (root / "multidatabackend.json").write_text(json.dumps(buckets))
    if prompts is not None:
        (root / "prompts.json").write_text(json.dumps(prompts))
    return root


@pytest.fixture
def project_dir(tmp_path, tiny_models) -> Path:
    return make_project(tmp_path / "proj", tiny_models["sd1x"])
