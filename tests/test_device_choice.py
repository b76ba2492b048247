"""The `devices` choice (issue #17 item 1): cpu, a GPU, some GPUs or all, checked against the GPUs found,
turned into the launch (process count, accelerate's --gpu_ids, CUDA_VISIBLE_DEVICES), and refused with exit 2
naming the key and value when it cannot run. GPUs are faked (the detection function is replaced)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sliderstudio import cli
from sliderstudio.config import device_choice
from sliderstudio.config.device_choice import Gpu, LaunchPlan, normalise, options, plan_launch, process_count
from sliderstudio.engine.distributed import free_port, launch_arguments
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.toy.demo_project import write_demo_project

TWO = [Gpu(0, "NVIDIA H100 80GB HBM3", 80 * 2**30), Gpu(1, "NVIDIA H100 80GB HBM3", 80 * 2**30)]


@pytest.mark.parametrize("value, canonical", [(None, None), ("auto", None), (" CPU ", "cpu"), ("all", "all"),
                                              ("1", "1"), ("0, 2", "0,2"), (3, "3")])
def test_values_are_normalised(value, canonical):
    assert normalise(value) == canonical


@pytest.mark.parametrize("value, reason", [("gpu0", "devices is cpu, all"), ("0,,1", "devices is cpu, all"),
                                           ("-1", "devices is cpu, all"), ("0,0", "named twice")])
def test_bad_values_are_refused_naming_the_key_and_value(value, reason):
    with pytest.raises(ConfigError, match=reason) as err:
        normalise(value, "config.json")
    assert (err.value.key, err.value.value, err.value.file) == ("devices", value, "config.json")


def test_the_plans():
    assert plan_launch(None, 2, "cpu", TWO) == LaunchPlan("cpu", 2, None, "cpu")          # the old default
    assert plan_launch("cpu", 3, None, TWO) == LaunchPlan("cpu", 3, None, "cpu")
    one = plan_launch("1", 1, None, TWO)
    assert one == LaunchPlan("cuda", 1, (1,), "cuda:1") and not one.launched
    assert one.environment() == {} and one.launcher_arguments() == []    # one process: trains on cuda:1 itself
    both = plan_launch("all", 1, None, TWO)                                # num_processes 1 follows the choice
    assert both == LaunchPlan("cuda", 2, (0, 1), "cuda") and both.launched
    assert both.environment() == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert both.launcher_arguments() == ["--gpu_ids", "0,1"]
    assert plan_launch("1,0", 2, None, TWO).environment() == {"CUDA_VISIBLE_DEVICES": "1,0"}


def test_choices_that_cannot_run_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"GPU 2 does not exist: this machine has 2 CUDA devices \(0, 1\)") as err:
        plan_launch("0,2", 2, None, TWO, "config.json")
    assert (err.value.key, err.value.value) == ("devices", "0,2")
    with pytest.raises(ConfigError, match="0 CUDA devices"):
        plan_launch("0", 1, None, [])
    with pytest.raises(ConfigError, match="no CUDA device"):
        plan_launch("all", 1, None, [])
    with pytest.raises(ConfigError, match="3 processes asked for, but devices '0,1' names 2 GPUs") as err:
        plan_launch("0,1", 3, None, TWO)                                   # more processes than devices
    assert (err.value.key, err.value.value) == ("num_processes", 3)
    with pytest.raises(ConfigError, match="both choose the device") as err:
        plan_launch("cpu", 1, "cuda", TWO)
    assert err.value.key == "devices"


def test_the_apps_options_and_the_counts_they_imply():
    listed = options(TWO)
    assert [value for value, _ in listed] == [None, "cpu", "0", "1", "all"]
    assert listed[2][1] == "GPU 0 · NVIDIA H100 80GB HBM3 · 80 GiB" and listed[4][1] == "All 2 GPUs · 160 GiB"
    assert [value for value, _ in options(TWO[:1])] == [None, "cpu", "0"]      # "all" only when there are several
    assert [process_count(v, TWO) for v in (None, "cpu", "1", "0,1", "all")] == [None, None, 1, 2, 2]


def test_the_launchers_processes_see_the_chosen_gpus():
    """accelerate's own launcher, given the plan's arguments, sets CUDA_VISIBLE_DEVICES for its processes."""
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    plan = plan_launch("0,1", 2, None, TWO)
    args = launch_command_parser().parse_args(
        launch_arguments(plan.processes, plan.kind, free_port(), ["train"], plan.launcher_arguments()))
    assert args.gpu_ids == "0,1" and args.num_processes == 2
    env = prepare_multi_gpu_env(args)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"


# --- the CLI: --devices (a config key, so also `devices` in config.json) ------------------------------
def project(root: Path, **config) -> Path:
    write_demo_project(root, pairs=3, max_train_steps=2)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(validation_steps=0, **config)
    (root / "config.json").write_text(json.dumps(cfg))
    return root


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(device_choice, "detect_gpus", lambda: list(TWO))
    return project(tmp_path / "p")


@pytest.mark.parametrize("argv, key, value, text", [
    (["--devices", "5"], "devices", "5", "GPU 5 does not exist: this machine has 2 CUDA devices"),
    (["--devices", "0,1", "--num_processes", "3"], "num_processes", "3", "3 processes asked for"),
    (["--devices", "gpu1"], "devices", "gpu1", "devices is cpu, all"),
    (["--devices", "cpu", "--device", "cuda"], "devices", "cpu", "both choose the device"),
])
def test_cli_bad_devices_exit_2_naming_key_and_value(root, capsys, argv, key, value, text):
    assert cli.main(["train", "--config", str(root), *argv]) == 2
    err = capsys.readouterr().err
    assert key in err and value in err and text in err, err
    assert not (root / "output" / "metrics.jsonl").exists()


def test_cli_devices_start_one_process_per_chosen_gpu_through_accelerate(root, monkeypatch):
    """The launch that `train --devices 0,1` asks accelerate for (the launch itself is replaced: no GPU here)."""
    from sliderstudio.engine import distributed

    launched = []
    monkeypatch.setattr(distributed, "check_num_processes", lambda n, kind, file, found=None: None)
    monkeypatch.setattr(distributed, "launch", lambda *a: launched.append(a))
    assert cli.main(["train", "--config", str(root), "--devices", "0,1"]) == 0
    (n, kind, command, output_dir, devices), = launched
    assert (n, kind, devices) == (2, "cuda", ["--gpu_ids", "0,1"])
    assert command[:5] == ["train", "--config", str(root), "--device", "cuda"] and command[-2:] == ["--devices", "0,1"]
