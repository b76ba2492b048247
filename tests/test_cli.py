"""The command line: exit status 2 with a message naming file/key for bad input, and each command's output."""
import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import make_project
from sliderstudio import __version__
from sliderstudio.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"sliderstudio {__version__}"


@pytest.mark.parametrize("mutate,fragment", [
    (lambda c: c.update(lora_rnak=4), "key 'lora_rnak': unknown key; did you mean 'lora_rank'?"),
    (lambda c: c.update(lora_rank="four"), "key 'lora_rank': Input should be a valid integer"),
    (lambda c: c.update(model_family="sd9"), "unknown model family 'sd9'"),
    (lambda c: c.update(pretrained_model_name_or_path="/nowhere/model"), "no such model folder or file"),
    (lambda c: c.update(pretrained_model_name_or_path="/tmp/model.ckpt"), "pickle checkpoints are refused"),
])
def test_bad_config_exits_2_before_loading(tmp_path, capsys, mutate, fragment):
    root = make_project(tmp_path, "/nowhere/model")
    cfg = json.loads((root / "config.json").read_text())
    mutate(cfg)
    (root / "config.json").write_text(json.dumps(cfg))
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert not (root / "output" / "pytorch_lora_weights.safetensors").exists()


def test_cli_override_is_validated(tmp_path, capsys):
    root = make_project(tmp_path, "/nowhere")
    assert main(["train", "--config", str(root), "--lora_rank", "-3"]) == 2
    assert "lora_rank" in capsys.readouterr().err


def test_model_folder_missing_a_component(tmp_path, tiny_models, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_models["sd1x"], broken)
    shutil.rmtree(broken / "unet")
    root = make_project(tmp_path / "p", broken)
    assert main(["train", "--config", str(root)]) == 2
    assert "missing its 'unet' component" in capsys.readouterr().err


def test_plan_prints_one_line_per_micro_batch(tmp_path, capsys):
    root = make_project(tmp_path, "/nowhere")
    assert main(["plan", "--config", str(root), "--batches", "6"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("# pairing: paired")
    rows = [line.split() for line in lines[1:]]
    assert [(r[1], r[2], r[3]) for r in rows] == [("pos", "+0.50", "positive"), ("neg", "-0.50", "negative"),
                                                  ("neu", "+0.50", "neutral"), ("pos", "+0.50", "positive"),
                                                  ("neg", "-0.50", "negative"), ("neu", "-0.50", "neutral")]
    assert rows[1][-1] == "paired" and rows[0][4] == rows[1][4]


def test_plan_warns_on_unbalanced_counts(tmp_path, capsys):
    root = make_project(tmp_path, "/nowhere")
    (root / "data" / "neg" / "img0.png").unlink()
    assert main(["plan", "--config", str(root), "--batches", "2"]) == 0
    captured = capsys.readouterr()
    assert "positive buckets hold 3 images and negative buckets hold 2" in captured.err
    assert "# pairing: unpaired" in captured.out


def test_targets_table(tiny_models, capsys):
    assert main(["targets", "--model", str(tiny_models["sd1x"]), "--family", "sd1x", "--preset", "default"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows == {"to_q": "8", "to_k": "8", "to_v": "8", "to_out.0": "8", "total": "32"}


def test_preview_grid_and_export_round_trip(tmp_path, tiny_models):
    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"max_train_steps": 2})
    assert main(["train", "--config", str(root)]) == 0
    lora = root / "output" / "pytorch_lora_weights.safetensors"
    grid = tmp_path / "grid.png"
    assert main(["preview", "--model", str(tiny_models["sd1x"]), "--lora", str(lora), "--prompt", "a red square",
                 "--strengths", "-1,0,1", "--steps", "2", "--out", str(grid)]) == 0
    assert Image.open(grid).size == (3 * 64, 64 + 14)
    comfy = tmp_path / "comfy.safetensors"
    assert main(["export", "--lora", str(lora), "--format", "comfyui", "--out", str(comfy)]) == 0
    src, dst = load_file(str(lora)), load_file(str(comfy))
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    assert torch.equal(dst[f"{name}.lora_down.weight"], src[key])
    assert torch.equal(dst[f"{name}.lora_up.weight"], src[key.replace("lora_A", "lora_B")])
    assert dst[f"{name}.alpha"].item() == 2.0
    assert len([k for k in dst if k.endswith(".alpha")]) == 27


def test_preview_rejects_bad_strengths(tiny_models, tmp_path, capsys):
    assert main(["preview", "--model", str(tiny_models["sd1x"]), "--prompt", "x", "--strengths", "a,b",
                 "--out", str(tmp_path / "g.png")]) == 2
    assert "--strengths" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()


def test_unexpected_exception_names_where_and_keeps_the_traceback(tmp_path, capsys, monkeypatch):
    from sliderstudio.engine import buckets

    def broken_balance(project, scanned):
        raise TypeError("argument of type 'NoneType' is not iterable")

    monkeypatch.setattr(buckets, "balance", broken_balance)
    monkeypatch.setenv("SLIDERSTUDIO_LOG_DIR", str(tmp_path / "logs"))
    root = make_project(tmp_path / "p", "/nowhere")
    assert main(["plan", "--config", str(root)]) == 1
    err = capsys.readouterr().err
    assert "error: an unexpected TypeError: argument of type 'NoneType' is not iterable" in err
    assert "where: sliderstudio/commands.py:" in err and " in cmd_plan" in err
    logs = list((tmp_path / "logs").glob("crash-*.log"))
    assert len(logs) == 1 and f"full traceback: {logs[0]}" in err
    text = logs[0].read_text()
    assert "Traceback (most recent call last)" in text and "broken_balance" in text
    assert f"command: sliderstudio plan --config {root}" in text


def test_unexpected_exception_without_a_writable_log_folder(tmp_path, capsys, monkeypatch):
    from sliderstudio import commands

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(commands, "cmd_plan", broken)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the log folder should be")
    monkeypatch.setenv("SLIDERSTUDIO_LOG_DIR", str(blocker / "logs"))
    assert main(["plan", "--config", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error: an unexpected RuntimeError: boom" in err and "where: sliderstudio/cli.py:" in err
    assert "the traceback follows" in err and 'raise RuntimeError("boom")' in err


def test_trainer_failure_event_says_where(tmp_path, tiny_models, monkeypatch):
    monkeypatch.setenv("SLIDERSTUDIO_LOG_DIR", str(tmp_path / "logs"))
    from sliderstudio.kernel.events import Failed
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.slider_step import SliderStep
    from sliderstudio.engine.trainer import Trainer

    def broken(self, mb):
        return None + 1  # a TypeError raised inside a library-free frame of the test

    monkeypatch.setattr(SliderStep, "loss", broken)
    root = make_project(tmp_path, tiny_models["sd1x"], config={"max_train_steps": 1})
    events = []
    with pytest.raises(TypeError):
        Trainer(load_project(root), events.append).run()
    failed = events[-1]
    assert isinstance(failed, Failed) and failed.message.startswith("unexpected TypeError at sliderstudio/engine/")
    assert "unsupported operand type(s)" in failed.message and "Traceback" in failed.details
    logs = list((tmp_path / "logs").glob("crash-*.log"))      # the app shows this message: it names the log
    assert len(logs) == 1 and failed.message.endswith(f"(full traceback: {logs[0]})")


def test_a_training_crash_writes_one_log_that_the_event_and_the_cli_both_name(tmp_path, tiny_models, monkeypatch,
                                                                          capsys):
    from sliderstudio.engine.slider_step import SliderStep

    monkeypatch.setattr(SliderStep, "loss", lambda self, mb: None + 1)
    monkeypatch.setenv("SLIDERSTUDIO_LOG_DIR", str(tmp_path / "logs"))
    root = make_project(tmp_path / "p", tiny_models["sd1x"], config={"max_train_steps": 1})
    assert main(["train", "--config", str(root)]) == 1
    logs = list((tmp_path / "logs").glob("crash-*.log"))
    assert len(logs) == 1 and f"full traceback: {logs[0]}" in capsys.readouterr().err
