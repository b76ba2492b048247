"""Several training processes (issue #17 items 1 and 3): the sampler split, noise per global item, the
process-count checks, and real 2-process runs with the gloo backend on the CPU.

Tolerances (CPU, float32): a 2-process run matches a 1-process run with the same global batch to a
relative 1e-4 per loss and 5e-5 absolute per adapter weight; the sum of gradients over processes is a different
order of float additions, so bit equality is not expected. The real-run test trains the fused cycle
(`slider_step_mode: cycle`) with a text pair beside the image buckets, at adam_epsilon 1e-5: at Adam's default
1e-8 the adapters differ by up to 6e-4 (measured 3.1e-4 to 6e-4) although the gradients agree to 1e-8. That is
Adam, not the split: a gradient element near epsilon gets an update lr * g / (|g| + eps), so a rounding
difference of 1e-9 in g moves it by a sizeable part of lr (0.003); with eps 1e-5, or with SGD, the same runs
agree to 3.8e-6 and 1.5e-8 (docs/TRAINING.md, "Several GPUs").
"""
from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from sliderstudio import cli
from sliderstudio.engine.distributed import check_num_processes, failure_message, launch_arguments
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.engine.sampler import MicroBatch, SamplerBucket, SliderSampler, split_for_rank
from sliderstudio.engine.slider_step import SliderStep
from sliderstudio.engine.timestep_bias import TimestepBias
from sliderstudio.toy.demo_project import write_demo_project

ADAPTER = "pytorch_lora_weights.safetensors"


# --- the sampler split ----------------------------------------------------------------------------
def sampler(batch_size: int) -> SliderSampler:
    stems = tuple(f"img{i}" for i in range(7))
    buckets = [SamplerBucket("pos", "positive", 0.5, 1.0, 0, stems), SamplerBucket("neg", "negative", -0.5, 1.0, 0, stems),
               SamplerBucket("neu", "neutral", 0.0, 1.0, 0, tuple(f"n{i}" for i in range(5)))]
    return SliderSampler(buckets, seed=3, batch_size=batch_size, pair_map={"pos": "neg"})


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
def test_the_global_order_is_the_same_for_1_2_and_3_processes(batch_size):
    """Every process sees the same group at each micro-batch, with distinct items that together are
    the one-process micro-batch, in its order; shares differ by at most one item."""
    global_order = sampler(batch_size).take(40)
    for world in (1, 2, 3):
        for mb in global_order:
            shares = [split_for_rank(mb, rank, world) for rank in range(world)]
            assert {(s.index, s.bucket_id, s.role, s.strength, s.paired, s.preserve) for s in shares} == \
                {(mb.index, mb.bucket_id, mb.role, mb.strength, mb.paired, mb.preserve)}
            assert tuple(i for s in shares for i in s.items) == mb.items
            assert tuple(t for s in shares for t in s.stems) == mb.stems
            assert tuple(p for s in shares for p in s.positions) == (tuple(range(len(mb.items))) if world > 1 else ())
            sizes = [len(s.items) for s in shares]
            assert max(sizes) - min(sizes) <= 1
            assert sum(s.share for s in shares) == pytest.approx(1.0)


def test_a_batch_smaller_than_the_process_count_leaves_a_process_idle():
    mb = sampler(1).take(1)[0]
    first, second = split_for_rank(mb, 0, 2), split_for_rank(mb, 1, 2)
    assert first.items == mb.items and first.share == 1.0
    assert second.items == () and second.share == 0.0


def test_paired_negatives_follow_their_positives_share():
    order = sampler(3).take(12)
    for pos, neg in zip(order, order[1:]):
        if not neg.paired:
            continue
        for rank in range(2):
            a, b = split_for_rank(pos, rank, 2), split_for_rank(neg, rank, 2)
            assert a.stems == b.stems and a.positions == b.positions


# --- noise per global item ------------------------------------------------------------------------
def noise_maker(seed: int = 5, bias: TimestepBias | None = None) -> SimpleNamespace:
    """A SliderStep's noise source without a model: the generator and timestep draw it uses."""
    family = SimpleNamespace(sample_timesteps=lambda schedule, n, g: torch.randint(0, 1000, (n,), generator=g))
    fake = SimpleNamespace(seed=seed, noise_offset=0.05, noise_offset_probability=1.0, family=family,
                           schedule=SimpleNamespace(num_train_timesteps=1000), timestep_bias=bias)
    fake.generator = functools.partial(SliderStep.generator, fake)
    return fake


@pytest.mark.parametrize("bias", [None, TimestepBias("later", 3.0, 500, 1000)])
@pytest.mark.parametrize("world", [2, 3])
def test_each_process_draws_its_items_rows_of_the_one_process_noise(world, bias):
    fake = noise_maker(bias=bias)
    order = sampler(5).take(9)
    for mb in order:
        full_noise, full_t = SliderStep.noise_for(fake, mb, torch.Size((len(mb.items), 4, 8, 8)))
        for rank in range(world):
            part = split_for_rank(mb, rank, world)
            noise, t = SliderStep.noise_for(fake, part, torch.Size((len(part.items), 4, 8, 8)))
            rows = list(part.positions)
            assert torch.equal(noise, full_noise[rows]) and torch.equal(t, full_t[rows])
            if mb.paired:  # the counterpart reuses its positive's noise on every process
                positive = split_for_rank(order[mb.index - 1], rank, world)
                p_noise, p_t = SliderStep.noise_for(fake, positive, noise.shape)
                assert torch.equal(noise, p_noise) and torch.equal(t, p_t)


# --- checks before any process starts -------------------------------------------------------------
def test_more_processes_than_devices_is_refused_naming_the_count():
    with pytest.raises(ConfigError) as err:
        check_num_processes(3, "cpu", "config.json", found=2)
    assert err.value.key == "num_processes" and err.value.value == 3 and "2 CPU cores" in str(err.value)
    with pytest.raises(ConfigError, match="0 CUDA devices"):
        check_num_processes(2, "cuda", "config.json", found=0)
    check_num_processes(2, "cpu", "config.json", found=2)


def test_launch_arguments_are_accelerates():
    from accelerate.commands.launch import launch_command_parser

    args = launch_command_parser().parse_args(launch_arguments(2, "cpu", 29999, ["train", "--config", "p"]))
    assert (args.multi_gpu, args.num_processes, args.main_process_port, args.module) == (True, 2, 29999, True)
    assert args.training_script == "sliderstudio" and args.training_script_args == ["train", "--config", "p"]


def test_failure_message_names_the_process_its_signal_and_the_checkpoint(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    (tmp_path / "checkpoints" / "checkpoint-000004").mkdir(parents=True)
    (tmp_path / "checkpoints" / "checkpoint-000004" / "state.json").write_text("{}")
    failure = ProcessFailure(local_rank=1, pid=4321, exitcode=-9, error_file="/nonexistent")
    text = failure_message(ChildFailedError("train", {1: failure}), 2, tmp_path)
    assert text.startswith("training process 1 of 2 (pid 4321) was killed by SIGKILL")
    assert "checkpoint-000004" in text and "resume_from_checkpoint" in text


def demo(root: Path, steps: int, **config) -> Path:
    write_demo_project(root, pairs=3, max_train_steps=steps)
    cfg = json.loads((root / "config.json").read_text())
    # one micro-batch per step: with the demo's fused cycle (slider_step_mode "cycle": 6 rows in one forward
    # in one process, 3 in each of two) the adapters differed by up to 6e-4 after 6 steps (losses within
    # 1e-4); not yet explained beyond the different batch sizes (issue #16 item 1 report)
    cfg.update({"validation_steps": 0, "train_batch_size": 2, "slider_step_mode": "micro_batch", **config})
    from sliderstudio.config.config import TrainConfig

    if "slider_calibration" in TrainConfig.model_fields:
        cfg["slider_calibration"] = False   # a rendered sweep at every save: minutes here, not what is tested
    (root / "config.json").write_text(json.dumps(cfg))
    return root


def test_cli_refuses_too_many_processes_with_exit_2(tmp_path, capsys):
    root = demo(tmp_path / "p", 4)
    many = (os.cpu_count() or 1) + 1
    assert cli.main(["train", "--config", str(root), "--device", "cpu", "--num_processes", str(many)]) == 2
    err = capsys.readouterr().err
    assert "num_processes" in err and f"{many} processes asked for" in err and f"{os.cpu_count()} CPU cores" in err
    assert not (root / "output" / "metrics.jsonl").exists()


# --- real runs on 2 CPU processes (gloo) ----------------------------------------------------------
def environment() -> dict[str, str]:
    source = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "SLIDERSTUDIO_DIST_TIMEOUT_S": "600",
            "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)}


def train(root: Path, *extra: str) -> subprocess.Popen:
    """`sliderstudio train` in its own process; stdout and stderr go to files next to the project, and stdin
    stays open (a closed stdin means the app is gone: --events would stop the run)."""
    return subprocess.Popen([sys.executable, "-m", "sliderstudio", "train", "--config", str(root), "--device", "cpu",
                             *extra], stdin=subprocess.PIPE, stdout=open(root.parent / "stdout.txt", "w"),
                            stderr=open(root.parent / "stderr.txt", "w"), text=True, env=environment())


def finish(proc: subprocess.Popen, root: Path, timeout: float) -> tuple[str, str]:
    proc.wait(timeout=timeout)
    proc.stdin.close()
    return (root.parent / "stdout.txt").read_text(), (root.parent / "stderr.txt").read_text()


def rows(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "output" / "metrics.jsonl").read_text().splitlines()]


def one_process(root: Path) -> None:
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer

    Trainer(load_project(root), device="cpu").run()


# the fused cycle (3 micro-batches in one forward, per-sample strengths) and a text pair (its own objective,
# one forward per micro-batch) beside the image buckets; Adam's epsilon raised so that the adapters compare
# the processes' arithmetic, not Adam's amplification of near-zero gradients (module docstring)
CYCLE = {"slider_step_mode": "cycle", "adam_epsilon": 1e-5,
         "slider_text_pairs": [{"id": "round", "positive": "a big red circle", "negative": "a small red circle",
                                "neutral": "a red circle", "anchors": ["a blue square"], "guidance": 2.0,
                                "samples": 2}]}


def test_two_processes_match_one_process_and_speak_the_wire_once(tmp_path):
    from sliderstudio.kernel.event_wire import decode
    from sliderstudio.kernel.events import Finished, Progress

    single, double = demo(tmp_path / "one", 6, **CYCLE), demo(tmp_path / "two", 6, num_processes=2, **CYCLE)
    proc = train(double, "--events")
    out, err = finish(proc, double, 240)
    assert proc.returncode == 0, err[-3000:]
    events = [decode(line) for line in out.splitlines()]   # every stdout line is one event of the wire
    assert [e.step for e in events if isinstance(e, Progress)] == list(range(1, 7))
    assert len([e for e in events if isinstance(e, Finished)]) == 1
    one_process(single)
    a, b = rows(single), rows(double)
    assert [r["buckets"] for r in b] == [r["buckets"] for r in a]
    assert [r["strengths"] for r in b] == [r["strengths"] for r in a]
    used = {bucket for r in a for bucket in r["buckets"]}
    assert {"text:round+", "text:round-"} <= used and len(used) > 2     # the text pair and image buckets trained
    assert max(len(r["buckets"]) for r in a) == 3                        # a whole cycle in one step (fused)
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-4, abs=1e-7)
    ta, tb = load_file(str(single / "output" / ADAPTER)), load_file(str(double / "output" / ADAPTER))
    assert ta.keys() == tb.keys()
    assert max((ta[k] - tb[k]).abs().max().item() for k in ta) < 5e-5   # measured: see the module docstring
    assert max(ta[k].abs().max().item() for k in ta) > 1e-3     # trained: the comparison means something


def worker_pid(root: Path, rank: int) -> int | None:
    """The pid of the training process of `rank` for this project (read from /proc: Linux only)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(root).encode() in cmdline and f"RANK={rank}".encode() in env and b"WORLD_SIZE=2" in env:
            return int(entry.name)
    return None


@pytest.mark.slow  # two model loads, a kill and a 16-step resume: 173 s on the busy 2-core machine
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker's pid in /proc")
def test_a_killed_process_fails_the_run_clearly_and_a_resume_completes(tmp_path):
    steps = 16
    root = demo(tmp_path / "k", steps, num_processes=2, checkpointing_steps=2, resume_from_checkpoint="latest")
    proc = train(root)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        path = root / "output" / "metrics.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    pid = worker_pid(root, 1)
    assert pid is not None and proc.poll() is None
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    _, err = finish(proc, root, 60)                   # no hang: the agent stops the other process
    assert time.monotonic() - started < 30
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: training process 1 of 2 (pid {pid}) was killed by SIGKILL"), err[-3000:]
    assert "the last checkpoint is checkpoint-" in last and "resume_from_checkpoint 'latest'" in last
    done = len(rows(root))
    assert 4 <= done < steps
    # resume on ONE process (another process count): the same order of data, through to the end
    config = json.loads((root / "config.json").read_text())
    config["num_processes"] = 1
    (root / "config.json").write_text(json.dumps(config))
    one_process(root)
    resumed = rows(root)
    assert [r["step"] for r in resumed] == list(range(1, steps + 1))
    expected = [[mb.bucket_id] for mb in plan_order(root, steps)]
    assert [r["buckets"] for r in resumed] == expected
    assert (root / "output" / ADAPTER).exists()


def plan_order(root: Path, n: int) -> list[MicroBatch]:
    """The sampler's global order for this project, as `sliderstudio plan` computes it (no model)."""
    from sliderstudio.engine.buckets import assign_targets, balance, scan_project
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.sampler import sampler_buckets
    from sliderstudio.families.registry import get_family

    project = load_project(root)
    scanned = scan_project(project, check_images=False)
    bal = balance(project, scanned)
    assign_targets(project, scanned, bal.pair_map, get_family(project.config.model_family).size_alignment)
    cfg = project.config
    return SliderSampler(sampler_buckets(scanned, cfg.slider_neutral_mode), cfg.seed, cfg.train_batch_size,
                         bal.pair_map).take(n)


# --- FSDP: refused before anything starts; the memory planner's estimate --------------------------
def fsdp_project(family: str, **extra) -> SimpleNamespace:
    config = SimpleNamespace(model_family=family, num_processes=2, train_batch_size=2, fsdp_enable=True, **extra)
    return SimpleNamespace(config=config, config_path=Path("config.json"), key_notes=[])


def test_fsdp_on_a_unet_is_refused_with_exit_2_naming_the_reason():
    from sliderstudio.engine.distributed import check_launch
    from sliderstudio.families.registry import get_family

    with pytest.raises(ConfigError, match="has a unet") as err:      # a UNet family cannot shard its blocks
        check_launch(fsdp_project("sdxl"), get_family("sdxl"), "cpu")
    assert err.value.key == "fsdp_enable"
    with pytest.raises(ConfigError) as err:                          # FSDP and block offload: one or the other
        check_launch(fsdp_project("flux", offload_blocks=True), get_family("flux"), "cpu")
    assert err.value.key == "offload_blocks"
    check_launch(fsdp_project("flux"), get_family("flux"), "cpu")                         # a transformer family trains (tests/test_fsdp.py)


def test_the_planner_splits_the_batch_and_with_fsdp_the_sharded_parts():
    from sliderstudio.app.memory_plan import PlanOptions, plan
    from sliderstudio.families.registry import get_family

    flux = get_family("flux")
    one = plan(flux, PlanOptions(train_batch_size=4))
    half_batch = plan(flux, PlanOptions(train_batch_size=2))
    ddp = plan(flux, PlanOptions(train_batch_size=4, processes=2))
    assert (ddp.weights, ddp.adapter, ddp.optimizer) == (one.weights, one.adapter, one.optimizer)
    assert ddp.activations == half_batch.activations < one.activations
    sharded = plan(flux, PlanOptions(train_batch_size=4, processes=2, fsdp=True))
    assert sharded.weights == -(-one.weights // 2)
    assert (sharded.adapter, sharded.optimizer) == (one.adapter, one.optimizer)   # the slider is replicated
    assert sharded.activations == ddp.activations
    assert any("FSDP: the frozen denoiser weights split 2 ways" in note for note in sharded.notes)
    with pytest.raises(ConfigError, match="has a unet"):
        plan(get_family("sdxl"), PlanOptions(processes=2, fsdp=True))
