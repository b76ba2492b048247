"""SimpleTuner project folders (config/config.json|toml + dataloader + LyCORIS JSON) open as they are."""
import json
import shutil
from pathlib import Path

import pytest

from conftest import draw
from sliderstudio.cli import main
from sliderstudio.engine.project import load_project, locate_config, save_project

EXAMPLES = Path(__file__).parent / "data" / "simpletuner"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())


def simpletuner_root(tmp_path: Path, name: str) -> Path:
    """A SimpleTuner checkout's layout: <root>/config/<files>, images under <root>/datasets/."""
    root = tmp_path / name
    shutil.copytree(EXAMPLES / name, root / "config")
    for entry in json.loads((root / "config" / "multidatabackend.json").read_text()):
        folder = entry.get("instance_data_dir")
        for i in range(2) if folder else ():
            draw(root / folder / f"img{i}.png", 0.3 + 0.4 * i, seed=i)
            (root / folder / f"img{i}.txt").write_text("a photo")
    return root


def test_examples_use_many_documented_keys():
    import tomllib

    from sliderstudio.config.simpletuner_keys import registry

    used = set()
    for name in NAMES:
        path = next((EXAMPLES / name).glob("config.*"))
        data = json.loads(path.read_text()) if path.suffix == ".json" else tomllib.loads(path.read_text())
        used |= {k.lstrip("-") for k in data}
    assert len(used & set(registry())) >= 120


def test_a_config_of_every_key_at_simpletuners_default_loads():
    from sliderstudio.config.config import parse_train_config_report
    from sliderstudio.config.simpletuner_keys import registry

    data = {f"--{k}": spec["default"] for k, spec in registry().items() if spec["default"] is not None}
    assert len(data) > 400
    cfg, notes = parse_train_config_report(data, "defaults.json")
    assert cfg.checkpointing_steps == 500 and cfg.validation_steps == 100  # SimpleTuner's defaults, mapped
    assert cfg.validation_sizes == [(256, 256)] and cfg.lr_scheduler == "constant_with_warmup"
    assert len(notes) == len(data) - sum(k.lstrip("-") in cfg.model_fields for k in data) + 1  # + model_type


def test_every_choice_simpletuner_lists_loads():
    from sliderstudio.config.config import parse_train_config
    from sliderstudio.config.simpletuner_keys import registry

    tried = 0
    for key, spec in registry().items():
        for choice in spec.get("choices") or []:
            extra = {"lycoris_config": "lycoris.json"} if (key, choice) == ("lora_type", "lycoris") else {}
            parse_train_config({key: choice, **extra}, "choice.json")
            tried += 1
    assert tried == 224  # every listed value of the 78 keys that have a fixed list


@pytest.mark.parametrize("name", NAMES)
def test_every_example_opens_from_its_simpletuner_root(tmp_path, name):
    root = simpletuner_root(tmp_path, name)
    project = load_project(root)
    assert project.root == root.resolve()
    assert project.config_path.parent == (root / "config").resolve()
    assert project.dataloader_path == root.resolve() / "config" / "multidatabackend.json"
    assert len(project.active_buckets()) == 2
    kinds = {n.kind for n in project.key_notes}
    assert "ignored" in kinds
    # every ignored key is a warning naming the key and saying what ignoring it means
    ignored = [n for n in project.key_notes if n.kind == "ignored"]
    assert all(any(n.key in w and n.detail in w for w in project.warnings) for n in ignored)


def test_sdxl_example_maps_and_implements_its_keys(tmp_path):
    project = load_project(simpletuner_root(tmp_path, "sdxl-lora"))
    cfg = project.config
    assert (cfg.checkpointing_steps, cfg.validation_steps, cfg.checkpoints_total_limit) == (250, 100, 3)
    assert (cfg.lr_scheduler, cfg.lr_end, cfg.lr_power, cfg.lr_warmup_steps) == ("polynomial", 1e-6, 1.0, 10)
    assert (cfg.adam_beta2, cfg.adam_epsilon, cfg.grad_clip_method) == (0.99, 1e-7, "norm")
    assert (cfg.loss_type, cfg.huber_c, cfg.huber_schedule, cfg.snr_gamma) == ("huber", 0.1, "snr", 5.0)
    assert cfg.validation_sizes == [(1024, 1024), (1216, 832)] and cfg.validation_guidance_rescale == 0.7
    assert cfg.vae_enable_tiling and cfg.vae_enable_slicing
    assert [p.name for p in project.validation_prompts()] == ["older_man", "older_woman"]
    mapped = {n.key: n.detail for n in project.key_notes if n.kind == "mapped"}
    assert mapped == {"checkpoint_step_interval": "checkpointing_steps",
                      "validation_step_interval": "validation_steps"}
    ignored = {n.key for n in project.key_notes if n.kind == "ignored"}
    assert {"push_to_hub", "report_to", "text_encoder_2_precision", "disable_bucket_pruning",
            "pretrained_vae_model_name_or_path"} <= ignored


def test_flux_example_lycoris_and_flow_keys(tmp_path):
    project = load_project(simpletuner_root(tmp_path, "flux-lycoris"))
    cfg = project.config
    assert cfg.lora_type == "lycoris" and project.lycoris.algo == "lokr"
    assert (cfg.flow_schedule_shift, cfg.flow_schedule_auto_shift) == (3.0, True)
    assert (cfg.optimizer, cfg.optimizer_beta2, cfg.grad_clip_method, cfg.max_grad_norm) == ("optimi-lion", 0.99,
                                                                                             "value", 0.1)
    assert (cfg.lr_scheduler, cfg.lr_num_cycles) == ("cosine_with_restarts", 3)
    assert cfg.validation_adapter_strength == 0.9  # validation_lycoris_strength
    assert cfg.checkpointing_steps == 500 and cfg.validation_steps == 250  # legacy names, as written


def test_toml_examples_with_dashed_keys(tmp_path):
    project = load_project(simpletuner_root(tmp_path, "sd3-toml"))
    cfg = project.config
    assert project.config_path.name == "config.toml"
    assert (cfg.lora_rank, cfg.max_train_steps, cfg.checkpointing_steps, cfg.validation_steps) == (8, 300, 50, 25)
    assert cfg.optimizer == "prodigy" and "d_coef=0.5" in cfg.optimizer_config
    qwen = load_project(simpletuner_root(tmp_path, "qwen-image-toml"))
    assert qwen.config.mixed_precision == "bf16" and qwen.config.lr_scheduler == "cosine"
    assert qwen.config.validation_sizes == [(64, 48)]
    assert any(p.name.startswith("library_") for p in qwen.validation_prompts())
    changed = {n.key for n in qwen.key_notes if n.kind == "changed"}
    assert changed == {"mixed_precision", "lr_scheduler", "optimizer"}


def test_config_discovery_order_and_the_missing_case(tmp_path):
    root = simpletuner_root(tmp_path, "sd3-toml")
    assert locate_config(root).name == "config.toml"
    (root / "config" / "config.json").write_text(json.dumps({"model_family": "sd3"}))
    assert locate_config(root) == (root / "config" / "config.json").resolve()
    (root / "config.toml").write_text('model_family = "sd3"\n')
    assert locate_config(root) == (root / "config.toml").resolve()
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["plan", "--config", str(empty)])
    assert code == 2


def test_save_keeps_ignored_simpletuner_keys_and_writes_json_beside_toml(tmp_path):
    root = simpletuner_root(tmp_path, "sd3-toml")
    project = load_project(root)
    save_project(project)
    saved = json.loads((root / "config" / "config.json").read_text())
    assert saved["report_to"] == "wandb" and saved["sd3_t5_uncond_behaviour"] == "zero"
    assert saved["checkpointing_steps"] == 50 and "checkpoint_step_interval" not in saved
    again = load_project(root)  # config.json now wins over config.toml in the same folder
    assert again.config_path.name == "config.json" and again.config.checkpointing_steps == 50


def test_cli_override_wins_over_either_spelling(tmp_path):
    root = simpletuner_root(tmp_path, "sdxl-lora")
    project = load_project(root, {"checkpointing_steps": 9})
    assert project.config.checkpointing_steps == 9
    project = load_project(root, {"checkpoint_step_interval": 11})
    assert project.config.checkpointing_steps == 11


def test_cli_plan_opens_a_simpletuner_folder_and_reports(tmp_path, capsys):
    root = simpletuner_root(tmp_path, "wan-video")
    assert main(["plan", "--config", str(root)]) == 0
    err = capsys.readouterr().err
    # block swapping streams the blocks from CPU memory: our offload_blocks
    assert "mapped: musubi_blocks_to_swap → offload_blocks" in err
    assert "ignored: musubi_block_swap_device" in err and "offload_blocks" in err


def test_cli_unknown_key_and_bad_choice_exit_2(tmp_path, capsys):
    root = simpletuner_root(tmp_path, "sdxl-lora")
    path = root / "config" / "config.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "--push_to_hubb": True}))
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "push_to_hubb" in err and "did you mean 'push_to_hub'" in err
    path.write_text(json.dumps({**data, "--report_to": "mlflow"}))
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "report_to" in err and "'mlflow'" in err and "tensorboard, wandb" in err
    path.write_text(json.dumps({**data, "--optimizer": "adamw_turbo"}))
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "optimizer" in err and "adamw_turbo" in err and "bnb-adamw8bit" in err


def test_bad_toml_exits_2_naming_the_file(tmp_path, capsys):
    root = simpletuner_root(tmp_path, "sd3-toml")
    (root / "config" / "config.toml").write_text('model_family = "sd3"\nlora_rank = \n')
    assert main(["plan", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "config.toml" in err and "invalid TOML" in err and "line 2" in err


def test_cli_trains_a_simpletuner_project_as_is(tmp_path, tiny_models, capsys):
    """The SDXL example (huber loss, polynomial lr, VAE tiling, --keys) trains from its SimpleTuner root;
    only the model and the sizes are overridden for a tiny CPU run, using SimpleTuner's spellings."""
    root = simpletuner_root(tmp_path, "sdxl-lora")
    code = main(["train", "--config", str(root), "--pretrained_model_name_or_path", str(tiny_models["sdxl"]),
                 "--max_train_steps", "2", "--checkpoint_step_interval", "1", "--validation_step_interval", "0",
                 "--mixed_precision", "no", "--lora_rank", "2", "--lr_warmup_steps", "0",
                 # the calibration sweep would render 1024 px images three times (SimpleTuner's sizes)
                 "--slider_calibration", "false"])
    err = capsys.readouterr().err
    assert code == 0, err
    out = root / "output" / "sdxl-slider"
    assert (out / "pytorch_lora_weights.safetensors").exists()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint-000001"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["lr"] < rows[0]["lr"]  # polynomial decay
    assert "ignored: push_to_hub" in err and "mapped: checkpoint_step_interval" in err
