"""The `sliderstudio` command (SPEC §9). Every command calls the engine; nothing here trains or renders.

Exit status: 0 success, 2 bad input (the message says what and where), 1 anything else.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from sliderstudio import __version__
from sliderstudio.kernel.errors import InputError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sliderstudio", description="Train and compare concept sliders.")
    p.add_argument("--version", action="version", version=f"sliderstudio {__version__}")
    sub = p.add_subparsers(dest="command")

    gui = sub.add_parser("gui", help="open the desktop app")
    gui.add_argument("project", nargs="?", help="project folder (default: the bundled demo project)")
    gui.add_argument("--screenshot", help="render the window to this PNG and exit")

    train = sub.add_parser("train", help="train a slider")
    train.add_argument("--config", required=True, help="config.json or the project folder")
    train.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available); or, as any config key, "
                                        "--devices cpu|0|0,1|all: one process on each chosen GPU, and "
                                        "--num_processes N")
    train.add_argument("--events", action="store_true",
                       help="write events as JSON lines to stdout and read commands from stdin, one a line "
                            "(stop, pause, resume, sample_now, save_now); the app trains this way. Closing "
                            "stdin stops the run with a checkpoint (docs/TRAINING.md: the train --events wire)")

    plan = sub.add_parser("plan", help="print the sampling order without loading a model")
    plan.add_argument("--config", required=True)
    plan.add_argument("--batches", type=int, default=24, help="how many micro-batches to print")
    plan.add_argument("--memory", action="store_true",
                      help="estimate the device memory peak instead, and the cheapest options that fit a card")
    plan.add_argument("--vram", type=float, help="card size in GB for --memory (presets: 8, 12, 16, 24, 48); "
                                                 "exit 2 when no supported option fits")

    targets = sub.add_parser("targets", help="show which modules a target preset matches")
    targets.add_argument("--model", help="model folder, file or hub id (omitted, or a hub id not in the cache: "
                                          "the family's built-in full-size config)")
    targets.add_argument("--family", help="model family (default: read from the model's files)")
    targets.add_argument("--preset", default="slider",
                         help="reference | slider | default, or a comma-separated list of names")
    targets.add_argument("--lycoris", help="a LyCORIS preset JSON: the modules its apply_preset selects")

    preview = sub.add_parser("preview", help="render a strength sweep into one grid image")
    preview.add_argument("--model", required=True)
    preview.add_argument("--family", help="model family (default: read from the adapter and the model's files)")
    preview.add_argument("--lora", action="append", default=[],
                         help="adapter .safetensors[:STRENGTH]; repeat to compose sliders (omit for the base model)")
    preview.add_argument("--prompt", required=True)
    preview.add_argument("--strengths", default="-1,-0.5,0,0.5,1")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--steps", type=int, default=20)
    preview.add_argument("--guidance", type=float, default=2.0)
    preview.add_argument("--size", type=int)
    preview.add_argument("--base-model-precision", default="no_change",
                         help="render on a quantised base, e.g. int8-torchao (as trained with base_model_precision)")
    preview.add_argument("--start-fraction", type=float, default=0.0)
    preview.add_argument("--control-image", help="conditioning image for a slider trained on a ControlNet")
    preview.add_argument("--controlnet", help="ControlNet folder (default: the one the adapter records)")
    preview.add_argument("--out", required=True)

    demo = sub.add_parser("demo", help="the whole flow on the bundled toy model")
    demo.add_argument("--workdir", default="sliderstudio-demo")
    demo.add_argument("--concept", default="size")
    demo.add_argument("--steps", type=int, help="training steps (default: the demo's own)")
    demo.add_argument("--seeds", type=int, default=2, help="seeds per prompt in the sweep")
    demo.add_argument("--no-text-slider", dest="text_slider", action="store_false",
                      help="skip the text-pair size slider ('large' ↔ 'small', trained from prompts alone)")

    export = sub.add_parser("export", help="write an adapter in another tool's key naming")
    export.add_argument("--lora", required=True)
    export.add_argument("--format", required=True, choices=["diffusers", "comfyui"])
    export.add_argument("--out", required=True)

    report = sub.add_parser("report", help="an adapter's calibrated range, polarity, response curve and quality")
    report.add_argument("--lora", required=True, action="append",
                        help="adapter .safetensors; twice (--lora A --lora B): how much the two interfere")
    report.add_argument("--project", help="measure now on this project's validation prompts (any model)")
    report.add_argument("--model", help="base model to render with (default: the project's, or the adapter's metadata)")
    report.add_argument("--seeds", type=int, default=2, help="seeds per prompt for the quality figures")
    report.add_argument("--no-quality", action="store_true", help="only what the metadata says; render nothing")
    report.add_argument("--json", action="store_true", help="the report as JSON")

    check = sub.add_parser("selfcheck", help="offline check of every model family on tiny random models")
    check.add_argument("--family", default="all")
    check.add_argument("--json", action="store_true")

    from sliderstudio.queue_commands import add_queue_parser

    add_queue_parser(sub)

    runtime = sub.add_parser("runtime", help="GPU runtime: the PyTorch build for this machine's NVIDIA GPU")
    runtime.add_argument("action", nargs="?", default="status", choices=["status", "install", "remove"])
    runtime.add_argument("--cuda", default="auto", help="auto (detect), a CUDA version such as 12.8, or none")
    runtime.add_argument("--index-url", help="a PyTorch wheel index to use instead of the official one")
    runtime.add_argument("--find-links", help="install from this folder of wheels (no internet needed)")
    runtime.add_argument("--dry-run", action="store_true", help="print the plan and the pip command only")
    runtime.add_argument("--json", action="store_true", help="status as JSON")
    return p


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--strengths -1,0,1` would read as an option to argparse; glue it into `--strengths=-1,0,1`."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--strengths" and i + 1 < len(argv):
            out.append(f"--strengths={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from sliderstudio.runtime import activate

    activate()  # an installed GPU runtime goes first on sys.path, before anything imports torch
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    command = args.command or "gui"
    try:
        from sliderstudio import commands

        handler = getattr(args, "handler", None) or getattr(commands, f"cmd_{command}")   # queue: its own module
        if command == "gui" and args.command is None:
            args = parser.parse_args(["gui"])
        return handler(args, extra) if command == "train" else handler(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: what, where, and the traceback in a log file; exit 1
        from sliderstudio.kernel.crash_log import report_unexpected

        print(report_unexpected(exc, argv), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
