"""Kill `sliderstudio train` with SIGKILL at random points, resume with "latest", and check nothing is lost.

One run is killed ten times at random moments (checkpoints are written every step, so many kills land
inside a checkpoint or adapter write), resumed each time, and finally allowed to finish. After every
kill every file in output_dir must be readable; every resume must continue at its checkpoint's step;
the finished run must match an uninterrupted run: the same sampler order, the same losses, the same
adapter (within floating-point tolerance on the CPU).
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sliderstudio.toy.demo_project import write_demo_project

STEPS = 24
KILLS = 10
ADAPTER = "pytorch_lora_weights.safetensors"


def project(root: Path) -> Path:
    write_demo_project(root, pairs=3, max_train_steps=STEPS)
    cfg = json.loads((root / "config.json").read_text())
    cfg.update(checkpointing_steps=1, checkpoints_total_limit=2, validation_steps=0,
               resume_from_checkpoint="latest")
    (root / "config.json").write_text(json.dumps(cfg))
    return root


def rows(root: Path) -> list[dict]:
    path = root / "output" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "sliderstudio.cli", "train", "--config", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for_rows(root: Path, proc: subprocess.Popen, n: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if len((root / "output" / "metrics.jsonl").read_text().splitlines()) >= n:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.02)


def check_readable(out: Path) -> int:
    """Open every file of the run the way the app or a resume would; return how many were checked."""
    checked = 0
    for path in out.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue  # hidden temp files and folders are never read; a resume removes them
        if any(part.startswith(".") for part in path.relative_to(out).parts):
            continue
        if path.suffix == ".safetensors":
            assert load_file(str(path)), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)
        checked += 1
    return checked


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, in the same kind of process as the killed ones (same threads, same floats)."""
    root = project(tmp_path_factory.mktemp("reference"))
    proc = start(root)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    return root


def test_killed_runs_resume_to_the_same_adapter(tmp_path, reference):
    root = project(tmp_path / "killed")
    rng = random.Random(20261122)
    files_checked, mid_write, resumed_at = 0, 0, []
    for _ in range(KILLS):
        done = len(rows(root))
        proc = start(root)
        wait_for_rows(root, proc, done + rng.randint(1, 3))
        time.sleep(rng.uniform(0.0, 0.12))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        output = proc.communicate()[0]
        if "resumed from checkpoint-" in output:
            resumed_at.append(int(output.split("resumed from checkpoint-")[1][:6]))
        out = root / "output"
        mid_write += bool(list(out.rglob(".*.tmp")) + list((out / "checkpoints").glob(".checkpoint-*"))
                          if (out / "checkpoints").exists() else list(out.rglob(".*.tmp")))
        files_checked += check_readable(out)
        steps = [r["step"] for r in rows(root)]
        assert steps == list(range(1, len(steps) + 1))  # contiguous: nothing lost, nothing repeated
    final = start(root)
    output = final.communicate(timeout=300)[0]
    assert final.returncode == 0, output
    resumed_at.append(int(output.split("resumed from checkpoint-")[1][:6]))
    print(f"\nkill/resume: {KILLS} kills, {len(resumed_at)} resumes at steps {resumed_at}, "
          f"{files_checked} files checked, {mid_write} kills left a half-written temp file behind")
    files_checked += check_readable(root / "output")
    a, b = rows(reference), rows(root)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert [r["buckets"] for r in b] == [r["buckets"] for r in a]
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-4, abs=1e-6)
    ta, tb = load_file(str(reference / "output" / ADAPTER)), load_file(str(root / "output" / ADAPTER))
    assert ta.keys() == tb.keys() and all(torch.allclose(ta[k], tb[k], atol=1e-5) for k in ta)
    assert len(resumed_at) >= KILLS - 2  # a kill before the first checkpoint restarts at step 0
