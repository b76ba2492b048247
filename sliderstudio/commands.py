"""The bodies of the CLI commands: thin adapters from arguments to the engine and back to text."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import sliderstudio.toy  # noqa: F401  registers the toy world's attribute meter (calibration, reports)
from sliderstudio.kernel.errors import InputError
from sliderstudio.kernel.events import (
    Checkpoint, Device, Event, Failed, Finished, Image, Log, PauseChanged, Progress,
)

if TYPE_CHECKING:
    from sliderstudio.families.base import Family


class ConsoleSink:
    """Events → a tqdm progress bar on a terminal, or plain lines when output is a file/pipe.

    One handler per event type (`handlers`; tests/test_event_wire.py checks it covers every type
    in kernel/events.py). Images, checkpoints and device reports print no line (their files are in
    the output folder; a pause is logged in words by the trainer); a Failed run's message is
    printed by the CLI's error path, with its exit status."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.bar = None
        self._last_line = 0
        self.handlers = {
            Progress: self._progress, Log: self._log, Finished: self._finished,
            Failed: lambda _event: self.close(),
            Image: _silent, Checkpoint: _silent, PauseChanged: _silent, Device: _silent,
        }

    def __call__(self, event: Event) -> None:
        self.handlers[type(event)](event)

    def _log(self, event: Log) -> None:
        self._write(("warning: " if event.level == "warning" else "") + event.message)

    def _finished(self, event: Finished) -> None:
        self.close()
        what = "stopped early" if event.stopped_early else "finished"
        self._write(f"{what} at step {event.step}: {event.adapter_path}")

    def _progress(self, e: Progress) -> None:
        if self.tty:
            from tqdm import tqdm

            if self.bar is None:
                self.bar = tqdm(total=e.total, initial=e.step - 1, unit="step", file=self.stream)
            self.bar.update(e.step - self.bar.n)
            self.bar.set_postfix(loss=f"{e.loss:.4f}", lr=f"{e.lr:.2e}")
        elif e.step == e.total or e.step - self._last_line >= max(1, e.total // 20):
            self._last_line = e.step
            print(f"step {e.step}/{e.total} loss {e.loss:.4f} lr {e.lr:.2e} {e.it_per_s:.2f} it/s "
                  f"eta {e.eta_s:.0f}s", file=self.stream, flush=True)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _silent(_event: Event) -> None:
    """An event the console shows no line for (see ConsoleSink)."""


def cmd_gui(args: argparse.Namespace) -> int:
    from sliderstudio.gui.app import main as gui_main

    return gui_main(args.project, args.screenshot)


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    found = project_to_launch(args, extra)
    if found is not None:
        project, plan = found
        if plan.launched:
            return train_on_processes(args, extra, project, plan)
        args.device = plan.device   # the chosen device (devices: cpu, or one GPU) for this one process
    if args.events:
        return train_with_events(args, extra)
    from sliderstudio.engine.project import load_project, parse_cli_overrides
    from sliderstudio.engine.trainer import Trainer

    project = load_project(args.config, parse_cli_overrides(extra))
    sink = ConsoleSink()
    try:
        Trainer(project, sink, device=args.device).run()
    finally:
        sink.close()
    return 0


def project_to_launch(args: argparse.Namespace, extra: list[str]):
    """(project, launch plan) of a run this process starts: one process on the chosen device, or
    several through accelerate's launcher (config.device_choice); None in one of the started processes
    (their device is on their command line). A config that does not load is None too: the one-process
    path reports it, on the wire with --events; a device choice that cannot run is reported here."""
    from sliderstudio.engine.distributed import in_worker
    from sliderstudio.engine.project import load_project, parse_cli_overrides

    if in_worker():
        return None
    try:
        project = load_project(args.config, parse_cli_overrides(extra))
    except InputError:
        return None
    try:
        return project, plan_for(project, args.device)
    except InputError as exc:
        report_launch_failure(args, project, exc)
        raise


def plan_for(project, requested: str | None):
    """The project's devices and num_processes with --device, checked (exit 2 on a bad choice)."""
    from sliderstudio.config.device_choice import plan_launch

    cfg = project.config
    return plan_launch(cfg.devices, cfg.num_processes, requested, file=str(project.config_path))


def report_launch_failure(args: argparse.Namespace, project, exc: Exception) -> None:
    """With --events the app learns of a launch that failed from the wire (one Failed event)."""
    if not args.events:
        return
    from sliderstudio.kernel.event_wire import WireSink, claim_stdout
    from sliderstudio.engine.run_state import read_heartbeat

    step = (read_heartbeat(project.output_dir) or {}).get("step", 0)
    WireSink(claim_stdout())(Failed(str(exc), int(step), exit_code=exc.exit_code))


def train_on_processes(args: argparse.Namespace, extra: list[str], project, plan) -> int:
    """Several processes: the same `train` command on each through accelerate's launcher
    (core/distributed), on the chosen GPUs. The main process speaks the wire with --events; a launch
    that fails (a bad process count, a process that died) is reported here, once, after every
    process has ended."""
    from sliderstudio.engine.distributed import LaunchFailed, check_launch, launch
    from sliderstudio.families.registry import get_family

    command = ["train", "--config", str(args.config), *(["--device", plan.device] if plan.device else []),
               *(["--events"] if args.events else []), *extra]
    try:
        check_launch(project, get_family(project.config.model_family, str(project.config_path)), plan.kind,
                     plan.processes)
        launch(plan.processes, plan.kind, command, project.output_dir, plan.launcher_arguments())
    except (InputError, LaunchFailed) as exc:
        report_launch_failure(args, project, exc)
        if isinstance(exc, InputError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def train_with_events(args: argparse.Namespace, extra: list[str]) -> int:
    """`train --events`: the app's training process. Every outcome reaches the wire as an event,
    including a bad config found before the trainer exists. However the app goes away (pipes
    closed, SIGTERM/SIGHUP/SIGINT, SIGKILL) the run stops with a checkpoint (core/process_guard)."""
    from sliderstudio.kernel.event_wire import WireSink, claim_stdout, listen_for_commands
    from sliderstudio.kernel.events import Mailbox
    from sliderstudio.kernel.process_guard import PROCESS_LOG, ProcessGuard
    from sliderstudio.engine.project import load_project, parse_cli_overrides
    from sliderstudio.engine.trainer import Trainer

    from sliderstudio.engine.distributed import current_ranks

    if not current_ranks().is_main:
        return train_quietly(args, extra)
    sink = WireSink(claim_stdout())
    mailbox = Mailbox()
    guard = ProcessGuard(mailbox, sink)
    sink.on_broken = lambda: guard.app_gone("the app stopped reading events (stdout closed)")
    guard.install()
    listen_for_commands(sys.stdin, mailbox, on_end=guard.input_ended,
                        on_unknown=lambda text: sink(Log(f"unknown command {text!r} ignored", "warning")))
    try:
        project = load_project(args.config, parse_cli_overrides(extra))
    except InputError as exc:
        sink(Failed(str(exc), 0, exit_code=2))
        raise
    guard.log_file = project.output_dir / PROCESS_LOG
    trainer = Trainer(project, sink, mailbox, device=args.device)
    guard.watch_setup(lambda: getattr(trainer, "session", False) is None)   # set-up: nothing to keep yet
    try:
        trainer.run()
    finally:
        guard.interruptible = lambda: False
    return 0


def train_quietly(args: argparse.Namespace, extra: list[str]) -> int:
    """A process other than the main one under --events: the main process owns the wire and the app's
    commands (it passes them on each step); this one keeps stdout and stdin alone, and a stop signal
    only ends it during set-up (afterwards it stops when the main process says so)."""
    from sliderstudio.kernel.events import Mailbox
    from sliderstudio.kernel.process_guard import ProcessGuard
    from sliderstudio.engine.project import load_project, parse_cli_overrides
    from sliderstudio.engine.trainer import Trainer

    project = load_project(args.config, parse_cli_overrides(extra))
    trainer = Trainer(project, device=args.device)
    guard = ProcessGuard(Mailbox(), trainer.sink)
    guard.install(watch_parent=False)
    guard.watch_setup(lambda: getattr(trainer, "session", False) is None)
    try:
        trainer.run()
    finally:
        guard.interruptible = lambda: False
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from sliderstudio.engine.aspect_buckets import label
    from sliderstudio.families.registry import get_family
    from sliderstudio.families.detect import config_family
    from sliderstudio.engine.buckets import assign_targets, balance, require_trainable, scan_project
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.run_checks import check_run
    from sliderstudio.engine.sampler import SliderSampler, sampler_buckets

    project = load_project(args.config)
    for note in project.key_notes:
        if note.kind == "mapped":  # SimpleTuner spellings (ignored / changed keys are warnings below)
            print(f"note: {note}", file=sys.stderr)
    for w in project.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if getattr(args, "memory", False):
        return print_memory_plan(project.config, args.vram)
    scanned = scan_project(project, check_images=False,  # csv/aws entries: fetch progress on stderr
                           log=lambda msg, level: print(f"note: {msg}", file=sys.stderr))
    require_trainable(project, scanned)
    for w in check_run(project, scanned):
        print(f"warning: {w}", file=sys.stderr)
    bal = balance(project, scanned)
    if bal.warning:
        print(f"warning: {bal.warning}", file=sys.stderr)
    cfg = project.config
    for s in scanned:  # files skipped (unreadable, too large, under minimum_image_size), each by name
        for problem in s.problems:
            print(f"warning: bucket '{s.bucket.id}': {problem}", file=sys.stderr)
    family = config_family(cfg, str(project.config_path))[0]  # read from the model's files, or checked against them
    assign_targets(project, scanned, bal.pair_map, get_family(family, str(project.config_path)).size_alignment)
    from sliderstudio.engine.sampler import text_sampler_entries

    text_entries, text_map = text_sampler_entries(cfg.slider_text_pairs)  # text pairs cycle with the buckets
    sampler = SliderSampler(sampler_buckets(scanned, cfg.slider_neutral_mode) + text_entries, cfg.seed,
                            cfg.train_batch_size, {**bal.pair_map, **text_map})
    print(f"# pairing: {'paired' if sampler.paired else 'unpaired'}; epoch length {sampler.epoch_length()} "
          f"micro-batches; batch size {cfg.train_batch_size}")
    from sliderstudio.engine.timestep_bias import TimestepBias

    bias = TimestepBias.from_config(cfg)
    if bias is not None:  # where the timesteps of these micro-batches will be drawn
        print(f"# {bias.describe()}")
    for mb in sampler.take(args.batches):
        flags = " paired" if mb.paired else (" preserve" if mb.preserve else "")
        print(f"{mb.index:5d}  {mb.bucket_id:<20} {mb.strength:+.2f}  {mb.role:<8} {','.join(mb.stems)}  "
              f"{label(mb.size)}{flags}")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from sliderstudio.adapters.targets import resolve_targets
    from sliderstudio.families.registry import get_family

    preset = args.preset if args.preset in ("reference", "slider", "default") else \
        [p.strip() for p in args.preset.split(",") if p.strip()]
    if args.model is None or needs_builtin_config(args.model):
        return print_full_size_targets(args, preset)
    args.family = read_family(args.model, None, args.family)
    if args.lycoris:
        from sliderstudio.adapters.lycoris_adapter import lycoris_target_report
        from sliderstudio.config.lycoris_config import read_lycoris_config

        report = lycoris_target_report(get_family(args.family), args.model,     # a preset naming no targets
                                       read_lycoris_config(Path(args.lycoris)).raw,  # falls back to --preset,
                                       preset=preset, file=args.lycoris)            # as training does
    else:
        report = resolve_targets(get_family(args.family), args.model, preset, strict=False)
    print(report.table())
    if report.total == 0:
        from sliderstudio.adapters.targets import require_matches

        require_matches(report, "preset")
    return 0


def print_memory_plan(config, vram: float | None) -> int:
    """`plan --memory`: the device peak broken down, and per card size the cheapest options that fit."""
    from sliderstudio.app.memory_plan import (CARD_PRESETS_GB, check_options, cheapest_fit, cuda_capability,
                                               options_from_config, plan, require_fit)
    from sliderstudio.families.registry import get_family

    if vram is not None and not vram > 0:
        raise InputError("the card size must be a positive number of GB", key="--vram", value=vram)
    family = get_family(config.model_family)
    options = options_from_config(config)
    check_options(family, options, cuda_capability())
    breakdown = plan(family, options)
    print(f"# memory plan: {family.label}, mixed_precision {options.mixed_precision}, base_model_precision "
          f"{options.base_model_precision}, {options.lora_type} r{options.lora_rank} on "
          f"{breakdown.adapter_params:,} adapter parameters, {options.resolution} px, batch "
          f"{options.train_batch_size}, gradient_checkpointing {options.gradient_checkpointing}"
          + (f", offload_blocks True ({options.offload_blocks_per_group} per group)" if options.offload_blocks else ""))
    print(breakdown.table())
    for note in breakdown.notes:
        print(f"note: {note}")
    for card in ([vram] if vram is not None else CARD_PRESETS_GB):
        advice = cheapest_fit(family, options, card)
        print(f"{card:g} GB: {advice.summary()}")
        if vram is not None:
            require_fit(advice)
    return 0


def needs_builtin_config(model: str) -> bool:
    """A hub id whose files are not in the local cache: the built-in config answers, nothing is fetched."""
    from sliderstudio.families.full_size import uncached_hub_id

    return uncached_hub_id(model)


def print_full_size_targets(args: argparse.Namespace, preset) -> int:
    """`targets --family F` (or a hub id not in the cache): the table of the real full-size model, built on
    the meta device from the family's published config, before anything is downloaded."""
    from sliderstudio.adapters.targets import require_matches, resolve_on_module
    from sliderstudio.families.full_size import families, full_size, full_size_skeleton
    from sliderstudio.families.registry import get_family

    family = args.family or next((f for f in families() if full_size(f).model == args.model), None)
    if family is None:
        why = ("give --model (a folder, file or hub id) or --family" if args.model is None else
               "the model is not in the local cache and no --family says which built-in config to use")
        raise InputError(why, key="--family", value=args.model)
    fam = get_family(family)
    if args.lycoris:
        raise InputError("--lycoris needs the model's files (--model with a local folder)", key="--lycoris",
                         value=args.lycoris)
    name, patterns = (preset, fam.presets[preset]) if isinstance(preset, str) else ("custom", preset)
    print(f"family '{fam.id}': built-in full-size config of {full_size(fam.id).model} (nothing downloaded)",
          file=sys.stderr)
    report = resolve_on_module(full_size_skeleton(fam.id), patterns, name)
    print(report.table())
    if report.total == 0:
        require_matches(report, "preset")
    return 0


def read_family(model: str, adapter: str | None, requested: str | None) -> str:
    """The family the files say (adapter metadata, model_index.json, checkpoint keys); `--family` must agree."""
    from sliderstudio.families.detect import family_for

    family, note = family_for(model, adapter, requested)
    print(note, file=sys.stderr)
    return family


def parse_strengths(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError("strengths must be numbers separated by commas", key="--strengths", value=text) from None
    if not values:
        raise InputError("no strengths given", key="--strengths")
    return values


def cmd_preview(args: argparse.Namespace) -> int:
    from sliderstudio.engine.preview import PreviewRenderer, grid, save_image
    from sliderstudio.families.registry import get_family

    strengths = parse_strengths(args.strengths)
    if not 0.0 <= args.start_fraction <= 1.0:
        raise InputError("must be between 0 and 1", key="--start-fraction", value=args.start_fraction)
    if args.control_image and not Path(args.control_image).is_file():
        raise InputError("no such image file", file=args.control_image, key="--control-image")
    from sliderstudio.engine.composition import preview_plan, range_warnings

    lora, strengths, others = preview_plan(args.lora or [], strengths)
    for line in range_warnings([(lora, strengths)] * bool(lora) + [(p, [v]) for p, v in others]):
        print(line, file=sys.stderr)
    family = read_family(args.model, str(lora) if lora else None, args.family)
    renderer = PreviewRenderer(get_family(family), args.model, lora, args.controlnet, args.control_image,
                               getattr(args, "base_model_precision", "no_change"))
    renderer.set_companions(others)
    images = renderer.render(args.prompt, args.seed, strengths, args.steps, args.guidance, args.start_fraction,
                             args.size)
    save_image(grid(images, [f"{s:+.2f}" for s in strengths]), Path(args.out))
    print(args.out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sliderstudio.engine.export import export_file

    source = Path(args.lora)
    if not source.exists():
        raise InputError("no such adapter file", file=source, key="--lora")
    result = export_file(source, Path(args.out), args.format, adapter_family(source, args.format))
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    print(result.path)
    return 0


def adapter_family(source: Path, fmt: str) -> Family | None:
    """The Family an adapter's metadata names, for the ComfyUI naming (None: it names none, or diffusers format).

    Names resolve to families here, in the app layer; the exporter receives the Family itself."""
    from sliderstudio.adapters.adapter_io import read_metadata
    from sliderstudio.families.registry import get_family

    name = read_metadata(source).get("family") if fmt == "comfyui" else None
    return get_family(str(name), file=str(source)) if name else None


def cmd_report(args: argparse.Namespace) -> int:
    """`report --lora F`: the calibrated range, polarity and response curve; quality figures where measurable."""
    import json

    from sliderstudio.reports.adapter_report import build_report, format_report

    if args.seeds < 1:
        raise InputError("must be at least 1", key="--seeds", value=args.seeds)
    if len(args.lora) > 2:
        raise InputError("give one adapter, or two for their interference", key="--lora", value=args.lora[2])
    if len(args.lora) == 2:
        from sliderstudio.reports.interference import format_interference, interference_report

        pair = interference_report(Path(args.lora[0]), Path(args.lora[1]), args.model, None, args.seeds,
                                   measure=not args.no_quality)
        print(json.dumps(pair, indent=2) if args.json else format_interference(pair))
        return 0
    report = build_report(Path(args.lora[0]), args.project, args.model, args.seeds, quality=not args.no_quality)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sliderstudio.toy.demo import run_demo

    run_demo(Path(args.workdir), concept=args.concept, steps=args.steps, seeds=args.seeds, sink=ConsoleSink(),
             text_slider=args.text_slider)
    return 0


def cmd_selfcheck(args: argparse.Namespace) -> int:
    from sliderstudio.app.selfcheck import main as selfcheck_main

    return selfcheck_main(args.family, args.json)


def cmd_runtime(args: argparse.Namespace) -> int:
    """`sliderstudio runtime status|install|remove`: the GPU build of PyTorch beside the app."""
    import json

    from sliderstudio import runtime

    if args.action == "status":
        info = runtime.runtime_status()
        print(json.dumps(info, indent=2) if args.json else
              "\n".join(f"{k}: {v}" for k, v in info.items()))
        return 0
    if args.action == "remove" or args.cuda.strip().lower() == "none":
        removed = runtime.remove_runtime()
        print("GPU runtime removed; the bundled CPU build is used from the next start" if removed
              else "no GPU runtime installed; the bundled CPU build is in use")
        return 0
    try:
        plan = runtime.plan_install(args.cuda, args.index_url, args.find_links)
    except ValueError as exc:
        raise InputError(str(exc), key="--cuda", value=args.cuda) from None
    print(plan.summary)
    if plan.action != "install":
        return 0 if plan.action == "none" else 1
    if args.dry_run:
        print(" ".join(runtime.pip_command(plan.pip_args(runtime.runtime_dir() / "NEW"))))
        return 0
    runtime.install_runtime(plan)
    return 0
