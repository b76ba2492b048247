"""The training loop: a plain object driven by `run()`, reporting through events, polling a mailbox.

Set-up (buckets, model, targets, adapter, caches) happens in `training_setup`; this module owns the
loop: micro-batches → optimizer steps → metrics, validation, checkpoints → the final adapter.
"""
from __future__ import annotations

import json
import math
import os
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch

from sliderstudio.kernel import atomic
from sliderstudio.engine import checkpoints, distributed, fsdp
from sliderstudio.adapters.adapters import ASSISTANT, slider_scale
from sliderstudio.adapters.adapter_io import ADAPTER_NAME
from sliderstudio.engine.device_report import device_report
from sliderstudio.kernel.errors import InputError, OutOfMemory, TrainingStopped
from sliderstudio.kernel.events import (
    Checkpoint, Command, Event, Failed, Finished, Image, Log, Mailbox, PauseChanged, Progress,
)
from sliderstudio.engine.preview import render_strengths, save_image
from sliderstudio.config.intervals import is_due, steps_per_epoch
from sliderstudio.engine.loss_log import LossLog, Terms, read_terms
from sliderstudio.engine.validation_render import validation_pipes
from sliderstudio.engine.project import Project
from sliderstudio.engine.run_state import HEARTBEAT
from sliderstudio.engine.sampler import split_for_rank
from sliderstudio.engine.training_setup import TrainingSession, micro_batches_per_step, pick_device, prepare_session

METRICS = "metrics.jsonl"
DEVICE_REPORT_S = 2.0   # how often the Device event (name, memory) is sent while a run is live


class Trainer:
    def __init__(self, project: Project, sink: Callable[[Event], None] | None = None,
                 mailbox: Mailbox | None = None, device: str | None = None):
        self.project = project
        self.sink = sink or (lambda event: None)
        self.mailbox = mailbox or Mailbox()
        self.device = device
        self.ranks = distributed.current_ranks()  # several processes: only the main one writes and reports
        if not self.ranks.is_main:
            self.sink = distributed.rank_sink(self.ranks)
        self.session: TrainingSession | None = None
        self.step = 0
        self.micro_index = 0
        self._last_heartbeat = 0.0
        self._last_device_report = 0.0
        self._end_state = "ended"  # "finished" only once the final adapter is written
        self._losses = LossLog()  # steps whose loss is still on the device (read every logging_steps)
        self._started, self._done_here = time.perf_counter(), 0
        self._calibrate = True  # off while stopping: a stop must not wait for a calibration sweep
        self._fsdp_said = False  # the FSDP run's one line on why it is not calibrated

    # --- public --------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train to the end (or until STOP). Emits Failed and re-raises on error."""
        try:
            self._report_early_device()
            self.session = prepare_session(self.project, self.log, self.device)
            self._report_device(force=True)
            self._resume()
            return self._loop()
        except TrainingStopped:
            return self._stop()
        except InputError as exc:
            self.sink(Failed(str(exc), self.step, exit_code=2))
            raise
        except torch.OutOfMemoryError as exc:
            error = OutOfMemory(out_of_memory_advice(self.project, self.step))
            self.sink(Failed(str(error), self.step, 1, str(exc)))
            raise error from exc
        except Exception as exc:
            if distributed.is_peer_failure(exc):  # the launcher names the process that went away
                self.log(f"lost contact with another training process at step {self.step}: {exc}", "warning")
                raise
            from sliderstudio.kernel.crash_log import summary_with_log

            self.sink(Failed(summary_with_log(exc, ["train", "--config", str(self.project.root)]), self.step, 1,
                             traceback.format_exc()))
            raise
        finally:
            self._write_heartbeat(state=self._end_state, force=True)

    def log(self, message: str, level: str = "info") -> None:
        self.sink(Log(message, level))

    # --- loop ----------------------------------------------------------------------------------
    def _loop(self) -> Path:
        s = self.session
        cfg = self.project.config
        batches = self._groups(self.micro_index)
        self._started, self._done_here = time.perf_counter(), 0
        per_epoch = steps_per_epoch(s.sampler.epoch_length(), micro_batches_per_step(cfg, s.sampler))
        while self.step < s.total_steps:
            self._poll()
            t0 = time.perf_counter()
            terms, used, batches = self._guarded_step(batches)
            self.step += 1
            self._done_here += 1
            self._losses.add(self.step, terms, s.scheduler.get_last_lr()[0], used, time.perf_counter() - t0)
            if self._losses.due(self.step, cfg.logging_steps, s.total_steps):
                self._flush_losses()
            self._write_heartbeat()
            self._report_device()
            if not cfg.validation_disable and is_due(self.step, cfg.validation_steps, cfg.validation_epoch_interval,
                                                     per_epoch):
                self._validate()
            if (is_due(self.step, cfg.checkpointing_steps, cfg.checkpoint_epoch_interval, per_epoch)
                    and self.step < s.total_steps):
                self._checkpoint()
        adapter = self._save_final()
        if ((cfg.validation_steps or cfg.validation_epoch_interval) and not cfg.validation_disable
                and not is_due(self.step, cfg.validation_steps, cfg.validation_epoch_interval, per_epoch)):
            self._validate()
        self._end_state = "finished"
        self.sink(Finished(self.step, str(adapter)))
        return adapter

    def _flush_losses(self) -> None:
        """Metrics rows and Progress events of the steps not yet logged, from ONE read of their losses."""
        s = self.session
        for row, loss in self._losses.take():
            self._append_metrics({"step": row.step, "loss": loss, "lr": row.lr,
                                  "buckets": [m.bucket_id for m in row.used],
                                  "strengths": [m.strength for m in row.used], "seconds": round(row.seconds, 4)})
            rate = self._done_here / max(time.perf_counter() - self._started, 1e-9)
            self.sink(Progress(row.step, s.total_steps, loss, row.lr, rate, (s.total_steps - row.step) / rate,
                               tuple(m.bucket_id for m in row.used), tuple(m.strength for m in row.used)))

    def _guarded_step(self, batches):
        """One optimizer step. A compiler failure (any step) or an attention-kernel failure (first step)
        switches to the fallback and reruns the step from its first micro-batch with fresh gradients."""
        s = self.session
        start = self.micro_index
        while True:
            s.compiled.step_started()
            try:
                terms, used = self._optimizer_step(batches)
            except (torch.OutOfMemoryError, InputError, TrainingStopped):
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised unless a fallback takes it
                if not (s.compiled.fall_back(exc, self.log)
                        or (s.attention is not None and s.attention.fall_back(exc, self.log))):
                    raise
                s.optimizer.zero_grad(set_to_none=True)
                self.micro_index = start
                batches = self._groups(start)
                continue
            s.compiled.step_done(self.log)
            if s.attention is not None:
                s.attention.settled(self.log)
            return terms, used, batches

    def _groups(self, start: int):
        """Micro-batches from `start`, in the groups that share one forward/backward (a whole cycle with
        `slider_step_mode: cycle`, else one each), each cut to this process's share (1 process: all)."""
        s = self.session
        size = micro_batches_per_step(self.project.config, s.sampler) // self.project.config.gradient_accumulation_steps
        return ([split_for_rank(mb, self.ranks.rank, self.ranks.world) for mb in group]
                for group in s.sampler.groups_from(start, size))

    def _optimizer_step(self, batches) -> tuple[Terms, list]:
        s = self.session
        accum = self.project.config.gradient_accumulation_steps
        used, total = [], []  # the loss as device scalars (engine.loss_log): no host sync inside the step
        for _ in range(accum):
            mbs = next(batches)
            total += self._backward(mbs, accum)
            used += mbs
            self.micro_index = mbs[-1].index + 1
        if self.ranks.distributed:  # the global gradient and loss on every process (engine.distributed)
            total = [(distributed.sum_gradients(s.accelerator, s.params, read_terms(total)), 1.0)]
        if self.project.config.max_grad_norm > 0:
            if self.project.config.grad_clip_method == "value":  # SimpleTuner's grad_clip_method
                s.accelerator.clip_grad_value_(s.params, self.project.config.max_grad_norm)
            else:
                s.accelerator.clip_grad_norm_(s.params, self.project.config.max_grad_norm)
        s.optimizer.step()
        s.scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
        return total, used

    def _backward(self, mbs: list, accum: int) -> Terms:
        """Gradients of the mean loss of micro-batches that share a step: one fused forward when the
        step allows it (engine.slider_step.fused_loss), else one forward and backward each."""
        s = self.session
        if s.step.fusable(mbs) and (s.fsdp is None or fsdp.same_forwards(mbs, self.ranks.world)):
            loss = s.step.fused_loss(mbs)
            s.accelerator.backward(loss / accum)
            return [(loss.detach(), accum)]
        total: Terms = []
        for mb in mbs:
            if not mb.items:  # this process has no share of it (a batch smaller than the process count)
                if s.fsdp is not None:  # FSDP: it still joins the others' gathers, at zero weight
                    fsdp.zero_weight_backward(s.step.loss, s.accelerator.backward, mb)
                continue
            loss = s.step.loss(mb)
            s.accelerator.backward(loss / (accum * len(mbs)))
            total.append((loss.detach(), accum * len(mbs)))
        return total

    def _poll(self) -> None:
        if self.ranks.distributed:  # one command per step, the main process's, on every process
            command = distributed.share_command(self.session.accelerator,
                                                self.mailbox.take() if self.ranks.is_main else None)
            if command is not None:
                self._handle(command)
            return
        # one at a time (not drain): a PAUSE handled here must find the RESUME queued behind it
        while (command := self.mailbox.take()) is not None:
            self._handle(command)

    def _wait_command(self, seconds: float) -> Command | None:
        """The next command within `seconds` (paused runs); the main process's on every process."""
        command = self.mailbox.wait(seconds) if self.ranks.is_main else None
        if self.ranks.distributed:
            command = distributed.share_command(self.session.accelerator, command)
        return command

    def _handle(self, command: Command) -> None:
        if command is Command.STOP:
            raise TrainingStopped()
        if command is Command.SAVE_NOW:
            self._checkpoint()
        elif command is Command.SAMPLE_NOW:
            self._validate(requested=True)
        elif command is Command.PAUSE:
            self._pause()
        elif command is Command.RESUME:
            self.log("resume ignored: the run is not paused", "warning")

    def _pause(self) -> None:
        """Hold between steps until RESUME or STOP. Save/sample requests are served meanwhile, and the
        heartbeat and device report go on, so a long pause never reads as a dead run."""
        self.log(f"paused at step {self.step}")
        self.sink(PauseChanged(True, self.step))
        while True:
            nxt = self._wait_command(0.2)
            self._write_heartbeat()
            self._report_device()
            if nxt is Command.RESUME:
                self.log("resumed")
                self.sink(PauseChanged(False, self.step))
                return
            if nxt is Command.STOP:
                raise TrainingStopped()
            if nxt is Command.PAUSE:
                continue                      # already paused
            if nxt is not None:
                self._handle(nxt)

    def _stop(self) -> Path:
        """Stop: checkpoint the current state so Resume continues from here."""
        self._calibrate = False
        path = self._checkpoint() if self.session and self.step > 0 else None
        self.log(f"stopped at step {self.step}")
        adapter = path / ADAPTER_NAME if path else Path()
        self.sink(Finished(self.step, str(adapter), stopped_early=True))
        return adapter

    # --- outputs -------------------------------------------------------------------------------
    def _metrics_path(self) -> Path:
        return self.project.output_dir / METRICS

    def _append_metrics(self, row: dict) -> None:
        if not self.ranks.is_main:
            return
        with open(self._metrics_path(), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def _save_adapter(self, path: Path, checkpoint: bool = False) -> Path:
        """LoRA or LyCORIS alike: the adapter handle writes its file (and companion) atomically, with the
        slider's calibration (recommended range, polarity: engine.calibration_run) measured just before.

        A checkpoint is calibrated only when validation is on (validation_steps > 0): the sweep renders
        about eleven images per prompt, so it follows the user's choice to spend renders during training;
        the final adapter is always calibrated (unless slider_calibration is off)."""
        from sliderstudio.engine.calibration_run import calibrate_session

        calibrate = self._calibrate and self.session.fsdp is None and \
            (not checkpoint or self.project.config.validation_steps > 0)
        if self.session.fsdp is not None and self.project.config.slider_calibration and not self._fsdp_said:
            self._fsdp_said = True    # once per run, not at every save
            self.log("calibration skipped: with FSDP the main process cannot render alone (each process holds "
                     "part of the denoiser), and rendering after the run would need the whole model on one "
                     "device, which FSDP is there to avoid; the adapter is saved without a recommended range: "
                     "run 'sliderstudio report --lora' on it where the model fits", "warning")
        calibration = calibrate_session(self.session, self.project, self.step, self.log) if calibrate else {}
        return self.session.adapter.save(path, {**self.session.metadata(self.step), **calibration})

    def _save_final(self) -> Path:
        self._flush_losses()
        if not self.ranks.is_main:
            return self.project.output_dir / ADAPTER_NAME
        path = self._save_adapter(self.project.output_dir / ADAPTER_NAME)
        self._save_comfyui(path)
        self.log(f"adapter saved: {path}")
        return path

    def _save_comfyui(self, path: Path) -> None:
        """The ComfyUI/kohya file next to the diffusers one (SPEC §8) unless lora_format is 'diffusers'.

        The diffusers file is the run's result; a slider ComfyUI cannot name (ControlNet) only warns.
        """
        if self.project.config.lora_format == "diffusers":
            return
        from sliderstudio.engine.export import COMFYUI_NAME, export_file

        try:
            result = export_file(path, path.with_name(COMFYUI_NAME), "comfyui", self.session.family)
        except InputError as exc:
            self.log(f"no ComfyUI file written: {exc}", "warning")
            return
        for note in result.notes:
            self.log(note, "warning")

    def _checkpoint(self) -> Path:
        s = self.session
        self._flush_losses()  # the metrics on disk reach the checkpoint's step (resume truncates after it)

        def write(folder: Path) -> None:
            self._save_adapter(folder / ADAPTER_NAME, checkpoint=True)
            checkpoints.save_torch(s.optimizer.state_dict(), folder / "optimizer.pt")
            checkpoints.save_torch(s.scheduler.state_dict(), folder / "scheduler.pt")

        state = checkpoints.LoopState(self.step, self.micro_index, self.project.config.seed, s.total_steps)
        if not self.ranks.is_main:  # written once, by the main process (every process holds the same state)
            return checkpoints.checkpoint_root(self.project.output_dir) / f"{checkpoints.PREFIX}{self.step:06d}"
        path = checkpoints.write_checkpoint(self.project.output_dir, state, write,
                                            self.project.config.checkpoints_total_limit)
        self.sink(Checkpoint(self.step, str(path)))
        return path

    def _resume(self) -> None:
        cfg = self.project.config
        out = self.project.output_dir
        folder = checkpoints.find_resume(out, cfg.resume_from_checkpoint, self.project.root)
        if self.ranks.distributed:  # every process resumes from the main process's choice
            folder = distributed.share_path(folder)
        if self.ranks.is_main:
            checkpoints.clean_stale_temp(out)
        if folder is None:
            if cfg.resume_from_checkpoint:
                self.log("no checkpoint to resume from yet; starting at step 0")
            if self.ranks.is_main:
                self._metrics_path().unlink(missing_ok=True)
            return
        s = self.session
        state = checkpoints.read_state(folder)
        s.adapter.load_file(folder / ADAPTER_NAME)
        s.optimizer.load_state_dict(checkpoints.load_torch(folder / "optimizer.pt"))
        s.scheduler.load_state_dict(checkpoints.load_torch(folder / "scheduler.pt"))
        self.step, self.micro_index = state.step, state.micro_index
        if self.ranks.is_main:
            self._truncate_metrics(state.step)
        self.log(f"resumed from {folder.name} at step {self.step}")

    def _truncate_metrics(self, step: int) -> None:
        """Drop rows past the checkpoint (and a torn last line) so metrics match the resumed run."""
        path = self._metrics_path()
        if not path.exists():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (ValueError, KeyError):
                break
        atomic.write_text(path, "".join(x + "\n" for x in keep))

    def _validate(self, requested: bool = False) -> None:
        self._flush_losses()  # the plot shows every step before the images of this one
        s = self.session
        if not self.ranks.is_main and s.fsdp is None:
            return  # rendered once, by the main process; the others wait at the next step's collective
        cfg = self.project.config
        prompts = self.project.validation_prompts()
        if not prompts:
            if requested:   # a Sample now that renders nothing must say why
                self.log("sample now: nothing to render, the project has no validation prompts "
                         "(set validation_prompt or user_prompt_library)", "warning")
            return
        strengths = [p.adapter_strength if p.adapter_strength is not None else cfg.validation_adapter_strength
                     for p in prompts]
        was_training = s.denoiser.training
        s.denoiser.eval()
        s.adapter.train(False)
        rendered = []
        try:
            # The assistant adapter only helps training a distilled model; validation shows the slider alone.
            # One pass per validation_resolution (SimpleTuner's "WxH" / comma lists; engine.validation_render).
            for tag, size, pipe in validation_pipes(s.render_pipe, cfg.validation_sizes,
                                                    cfg.validation_guidance_rescale):
                with torch.no_grad(), s.compiled.eager(), slider_scale(s.family.denoiser(s.pipe), 0.0, ASSISTANT), \
                        (s.encoders.needed() if s.encoders else nullcontext()):  # text encoders for the render
                    images = render_strengths(s.family, pipe, [p.prompt for p in prompts], strengths,
                                              cfg.validation_seed, cfg.validation_num_inference_steps,
                                              cfg.validation_guidance, size, 0.0, cfg.validation_negative_prompt,
                                              adapter=s.adapter)
                rendered.append((tag, images))
        finally:
            s.denoiser.train(was_training)
            s.adapter.train(was_training)
        if not self.ranks.is_main:
            return  # FSDP: every process rendered (they share the sharded denoiser's gathers); one writes
        folder = self.project.output_dir / "validation" / f"step-{self.step:06d}"
        for tag, images in rendered:
            for entry, strength, image in zip(prompts, strengths, images):
                path = folder / f"{entry.name}{tag}_s{strength:+.2f}.png"
                save_image(image, path)
                self.sink(Image(image, self.step, entry.prompt, strength, str(path)))

    def _report_early_device(self) -> None:
        """The device before the model loads (seconds to minutes), so the app names it at once.
        Best effort: a device that cannot be queried fails the run in set-up with its own message."""
        try:
            self.sink(device_report(pick_device(self.device), 0))
        except Exception:  # noqa: BLE001 - prepare_session reports the real problem next
            pass

    def _report_device(self, force: bool = False) -> None:
        """The Device event every DEVICE_REPORT_S: cheap queries only, never a sync inside the step."""
        now = time.monotonic()
        if self.session is None or not self.ranks.is_main or (not force and now - self._last_device_report < DEVICE_REPORT_S):
            return
        self._last_device_report = now
        self.sink(device_report(self.session.step.device, self.step))

    def _write_heartbeat(self, state: str = "running", force: bool = False) -> None:
        """A file other processes (the app) read to tell a live run from a dead one."""
        now = time.time()
        if not self.ranks.is_main or (not force and now - self._last_heartbeat < 2.0):
            return
        self._last_heartbeat = now
        total = self.session.total_steps if self.session else 0
        try:
            atomic.write_json(self.project.output_dir / HEARTBEAT,
                              {"pid": os.getpid(), "state": state, "step": self.step, "total": total,
                               "updated": now})
        except (OSError, InputError):
            pass  # the heartbeat is advisory; a full disk must not kill the run here


def out_of_memory_advice(project: Project, step: int) -> str:
    cfg = project.config
    tips = []
    if not cfg.gradient_checkpointing:
        tips.append("turn on gradient_checkpointing (the memory mode)")
    if cfg.train_batch_size > 1:
        tips.append(f"lower train_batch_size (now {cfg.train_batch_size}; use gradient_accumulation_steps instead)")
    tips.append(f"lower resolution (now {cfg.resolution})")
    if cfg.mixed_precision == "no":
        tips.append("use mixed_precision 'bf16'")
    return f"the GPU ran out of memory at step {step}; try: " + "; ".join(tips)


def total_steps(max_train_steps: int, epochs: int, epoch_length: int, accumulation: int) -> int:
    if max_train_steps:
        return max_train_steps
    return max(1, math.ceil(epochs * epoch_length / accumulation))
