"""`sliderstudio queue add|list|run|cancel|move|stop`: the training queue from the command line.

Thin: each action is one call into app/queue_store.py or app/queue_runner.py and a few lines of
text. The app's Queue pane works on the same file, so either face sees what the other did.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from sliderstudio.config.config import coerce_override
from sliderstudio.kernel.errors import InputError


def add_queue_parser(sub: argparse._SubParsersAction) -> None:
    queue = sub.add_parser("queue", help="queue training runs and run them one after another")
    queue.set_defaults(handler=cmd_queue)
    actions = queue.add_subparsers(dest="queue_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="queue a project with its config as it is now")
    add.add_argument("project", help="project folder or config file")
    add.add_argument("--config-override", action="append", default=[], metavar="KEY=VALUE",
                     help="change one config key for this job only (repeatable)")
    listing = actions.add_parser("list", help="jobs in queue order with their status")
    listing.add_argument("--json", action="store_true", help="the jobs as JSON")
    actions.add_parser("run", help="train the waiting jobs one after another (interrupted ones resume)")
    cancel = actions.add_parser("cancel", help="cancel a waiting job, or stop a running one with a checkpoint")
    cancel.add_argument("job")
    move = actions.add_parser("move", help="put a job at another place in the order")
    move.add_argument("job")
    move.add_argument("--to", type=int, required=True, metavar="N", help="1-based position")
    actions.add_parser("stop", help="ask the process running the queue to stop (the job keeps a checkpoint)")


def parse_overrides(pairs: list[str]) -> dict:
    """['lora_rank=8', 'seed=3'] → {'lora_rank': 8, 'seed': 3}, each value read as on `train --key value`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError("expected KEY=VALUE", key="--config-override", value=pair)
        out[key.strip().lstrip("-")] = coerce_override(key.strip(), value)
    return out


def cmd_queue(args: argparse.Namespace) -> int:
    from sliderstudio.app.queue_store import queue_file

    path = queue_file()
    action = {"add": _add, "list": _list, "run": _run, "cancel": _cancel, "move": _move, "stop": _stop}
    return action[args.queue_action](args, path)


def _add(args, path) -> int:
    from sliderstudio.app.queue_store import add_job, read_queue

    job = add_job(path, args.project, parse_overrides(args.config_override))
    ahead = sum(1 for j in read_queue(path).jobs if j.status in ("waiting", "running") and j.id != job.id)
    print(f"queued job {job.id}: {job.project} ({ahead} ahead of it); output {job.output_dir}")
    return 0


def _list(args, path) -> int:
    from dataclasses import asdict

    from sliderstudio.app.queue_store import load_queue

    state = load_queue(path)
    if args.json:
        print(json.dumps([asdict(j) | {"label": j.label} for j in state.jobs], indent=2))
        return 0
    if not state.jobs:
        print(f"the queue is empty ({path})")
    for n, job in enumerate(state.jobs, 1):
        print(f"{n:3d}. job {job.id:>4}  {job.name:<24} {job.label}")
    return 0


def _run(args, path) -> int:
    from sliderstudio.app.queue_lock import RunnerBusy
    from sliderstudio.app.queue_runner import QueueRunner

    runner = QueueRunner(path, say=lambda line: print(f"{time.strftime('%H:%M:%S')} {line}", flush=True))
    runner.install_signal_handlers()
    try:
        counts = runner.run()
    except RunnerBusy as exc:
        print(f"{exc}; nothing to do here", file=sys.stderr)
        return 0
    ended = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    print(f"queue {'stopped' if runner.stop_reason else 'done'}: {ended or 'no job ended'}"
          + (f" ({runner.stop_reason})" if runner.stop_reason else ""), flush=True)
    return 0


def _cancel(args, path) -> int:
    from sliderstudio.app.queue_store import cancel_job

    job = cancel_job(path, args.job)
    print(f"job {job.id}: " + ("cancelled" if job.status == "cancelled" else
                               "cancel requested; its runner stops it after the current step with a checkpoint"))
    return 0


def _move(args, path) -> int:
    from sliderstudio.app.queue_store import move_job

    state = move_job(path, args.job, args.to)
    print("order: " + ", ".join(j.id for j in state.jobs))
    return 0


def _stop(args, path) -> int:
    from sliderstudio.app.queue_store import read_queue, request_stop

    request_stop(path)
    runner = read_queue(path).runner
    print(f"stop requested from process {runner['pid']}" if runner else
          "stop requested; no process is running the queue now (the next `queue run` clears it)")
    return 0
