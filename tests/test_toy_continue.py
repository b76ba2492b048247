"""Continuing the toy model's denoiser training (`train_base --init-from`): what changes, what is kept,
what the log says, and that the same command gives the same weights."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sliderstudio.kernel.resources import toy_model_dir
from sliderstudio.toy import train_base

MODEL = toy_model_dir()
pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").is_file(), reason="toy model not built")


@pytest.fixture()
def small_start(tmp_path):
    """A copy of the shipped model whose log asks for a 64-image pool (the test's cost, not the model's)."""
    start = tmp_path / "start"
    shutil.copytree(MODEL, start)
    log = json.loads((start / "training_log.json").read_text())
    (start / "training_log.json").write_text(json.dumps({**log, "pool_size": 64}))
    return start


def _weights(folder, part):
    return load_file(str(next((folder / part).glob("*.safetensors"))))


def test_continued_run_trains_the_denoiser_keeps_the_vae_and_logs_both_runs(small_start, tmp_path):
    out = tmp_path / "out"
    log = train_base.continue_training(out, small_start, steps=3, seed=5, lr=1e-4, threads=1)
    before, after = _weights(small_start, "unet"), _weights(out, "unet")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(a, b) for a, b in zip(_weights(small_start, "vae").values(), _weights(out, "vae").values()))
    assert log["continued"]["steps_done"] == 3 and log["continued"]["lr"] == 1e-4 and log["complete"]
    assert "--init-from DIR --steps 3 --seed 5" in log["continued"]["reproduce"]
    first = json.loads((small_start / "training_log.json").read_text())
    assert log["reproduce"] == first["reproduce"] and log["unet"] == first["unet"]
    assert log["minutes"] == first["minutes"] and log["continued"]["minutes"] >= 0
    vae_cfg = json.loads((out / "vae" / "config.json").read_text())
    assert vae_cfg["scaling_factor"] == json.loads((small_start / "vae" / "config.json").read_text())["scaling_factor"]


def test_same_command_same_weights_and_stop_after_is_a_snapshot(small_start, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train_base.continue_training(a, small_start, steps=2, seed=3, threads=1)
    train_base.continue_training(b, small_start, steps=2, seed=3, threads=1)
    wa, wb = _weights(a, "unet"), _weights(b, "unet")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    part = tmp_path / "part"
    log = train_base.continue_training(part, small_start, steps=4, seed=3, threads=1, stop_after=1)
    assert not log["complete"] and log["continued"]["steps_done"] == 1
    assert log["continued"]["reproduce"].endswith("--stop-after 1")


def test_init_from_a_folder_it_did_not_write_is_refused(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="training_log.json"):
        train_base.continue_training(tmp_path / "o", tmp_path, steps=1)
    with pytest.raises(SystemExit) as exc:
        train_base.main(["--out", str(tmp_path / "o"), "--init-from", str(MODEL)])
    assert exc.value.code == 2 and "--init-from needs --steps" in capsys.readouterr().err
