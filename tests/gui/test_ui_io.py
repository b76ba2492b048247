"""Project and settings files are written on the file-writer thread, never on the UI thread, in
the order asked, with failures reported as signals; closing the window still writes everything."""
from __future__ import annotations

import io
import json
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest

from sliderstudio.kernel.errors import InputError
from sliderstudio.kernel.events import Failed
from sliderstudio.engine.project import load_project
from sliderstudio.gui.main_window import MainWindow
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers import preview as preview_worker
from sliderstudio.gui.workers.file_writer import FileWriter
from sliderstudio.gui.workers.training import TrainingWorker
from tests.gui.fakes import FakeRenderer


@dataclass(frozen=True)
class Call:
    what: str            # "fsync", "replace" (the atomic rename), "open-w" (opened for writing)
    path: str            # the target for replace/open; "" for fsync
    ui_thread: bool


@pytest.fixture
def io_calls(monkeypatch) -> list[Call]:
    """Every fsync, rename and open-for-writing in this process, with whether the UI thread made it."""
    calls: list[Call] = []
    real_fsync, real_replace, real_open = os.fsync, os.replace, io.open

    def on_ui() -> bool:
        return threading.current_thread() is threading.main_thread()

    def fsync(fd):
        calls.append(Call("fsync", "", on_ui()))
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        calls.append(Call("replace", str(dst), on_ui()))
        return real_replace(src, dst, **kwargs)

    def opener(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            calls.append(Call("open-w", str(file), on_ui()))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(io, "open", opener)
    monkeypatch.setattr("builtins.open", opener)
    return calls


def project_files(root: Path) -> set[str]:
    return {str(root / name) for name in ("config.json", "multidatabackend.json", "prompt_library.json")}


def test_typical_ui_actions_write_nothing_on_the_ui_thread(qtbot, small_project, tmp_path, app_dirs, io_calls,
                                                           monkeypatch):
    monkeypatch.setattr(preview_worker, "make_renderer", FakeRenderer)   # previews are not what is measured
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.open_project(small_project.root)            # stores the recent list
    window.dataset_vm.set_strength("plain", 0.25)
    assert window.save()
    window.preview_vm.set_start_fraction(0.4)                  # an edit after the save, then Save As
    assert window.save_as(tmp_path / "copy")
    assert window.arch_vm.set_adapter_type("lycoris")          # writes a starter LyCORIS preset
    assert window.arch_vm.save_lycoris('{"algo": "loha", "linear_dim": 4}').ok
    assert window.save()                                       # (else closing would ask)
    window.resize(700, 500)
    window.close()                                            # stores the window, flushes the writer
    settings = str(app_dirs["config"] / "settings.json")
    lycoris = str((tmp_path / "copy").resolve() / "lycoris_config.json")
    watched = (project_files(small_project.root.resolve()) | project_files((tmp_path / "copy").resolve())
               | {settings, lycoris})
    on_ui = [c for c in io_calls if c.ui_thread and (c.what == "fsync" or c.path in watched)]
    assert on_ui == []
    renamed = [c.path for c in io_calls if c.what == "replace"]
    assert {settings, str(small_project.root.resolve() / "multidatabackend.json"),
            str((tmp_path / "copy").resolve() / "config.json")} <= set(renamed)   # the writer did write them
    assert renamed.count(settings) == 3                        # on Open, on Save As (recent list), on close
    assert renamed.count(lycoris) == 2                         # the starter, then the edited preset
    assert json.loads(Path(lycoris).read_text()) == {"algo": "loha", "linear_dim": 4}
    # and the files say what the UI did, in order
    original = load_project(small_project.root)
    assert next(b for b in original.buckets if b.id == "plain").slider_strength == 0.25
    assert original.config.slider_start_fraction == 0.0        # saved before the later edit
    copy = load_project(tmp_path / "copy")
    assert copy.config.slider_start_fraction == 0.4
    assert (copy.config.lora_type, copy.config.lycoris_config) == ("lycoris", "lycoris_config.json")
    assert next(b for b in copy.buckets if b.id == "plain").slider_strength == 0.25
    stored = json.loads(Path(settings).read_text())
    assert stored["recent"] == [str((tmp_path / "copy").resolve()), str(small_project.root.resolve())]
    assert stored["geometry"] == bytes(window.saveGeometry().toHex()).decode()     # the state at close
    assert json.loads(stored["window_state"]).keys() == window._splitters().keys()


def test_a_save_that_cannot_be_written_is_reported_and_leaves_the_project_unsaved(qtbot, small_project):
    pvm = ProjectViewModel()
    pvm.set_project(small_project)
    pvm.update_config(lora_rank=8)
    small_project.dataloader_path.unlink()
    small_project.dataloader_path.mkdir()                     # the rename onto it must fail
    with qtbot.waitSignal(pvm.saveFailed, timeout=10000) as failed:
        pvm.save()
    assert "multidatabackend.json" in failed.args[0]
    assert pvm.dirty                                          # still unsaved: nothing pretends otherwise
    assert pvm.last_save.exception() is not None
    assert json.loads(small_project.config_path.read_text())["lora_rank"] == 8   # written before the failure
    assert not list(small_project.root.glob(".multidatabackend.json.*.tmp"))      # no temp file left


def test_writes_happen_in_the_order_asked_and_flush_waits(qtbot):
    writer = FileWriter()
    order: list[str] = []
    gate = threading.Event()

    def slow() -> None:
        gate.wait(5)
        order.append("first")

    writer.submit("a", slow)
    last = writer.submit("b", lambda: order.append("second"))
    assert writer.pending and not writer.flush(timeout=0.2)   # held by the first write
    gate.set()
    with qtbot.waitSignal(writer.written, timeout=5000, check_params_cb=lambda label: label == "b"):
        assert writer.flush(timeout=5)
    assert order == ["first", "second"] and last.done() and not writer.pending


def test_a_failed_write_does_not_stop_the_ones_after_it(qtbot):
    writer = FileWriter()
    done: list[str] = []

    def broken() -> None:
        raise InputError("disk says no", file="x.json", key="k")

    with qtbot.waitSignals([writer.failed, writer.written], timeout=5000):
        bad = writer.submit("bad", broken)
        writer.submit("good", lambda: done.append("good"))
    assert isinstance(bad.exception(), InputError) and done == ["good"]


def test_training_waits_for_the_save_and_reports_one_that_failed(qtbot, small_project):
    """The training process reads the saved files: it starts only once the save is on disk, and a
    save that failed is the run's failure, with no process started."""
    held: Future = Future()
    worker = TrainingWorker(small_project, ready=held)
    failures = []
    worker.event.connect(lambda event: failures.append(event) if isinstance(event, Failed) else None)
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(0.3)
    assert worker.process is None                              # still waiting for the save
    held.set_exception(InputError("cannot write", file="multidatabackend.json"))
    thread.join(10)
    qtbot.waitUntil(lambda: len(failures) > 0, timeout=5000)   # queued to this (the UI) thread
    assert worker.process is None
    assert len(failures) == 1 and "multidatabackend.json" in failures[0].message


def test_target_resolution_reads_the_lycoris_preset_off_the_ui_thread(qtbot, small_project, monkeypatch):
    """Every resolve of the target table read the LyCORIS preset file on the UI thread; the task reads it now."""
    monkeypatch.setattr(preview_worker, "make_renderer", FakeRenderer)
    readers: list[bool] = []
    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "lycoris_config.json":
            readers.append(threading.current_thread() is threading.main_thread())
        return real_read_text(self, *args, **kwargs)

    window = MainWindow()
    qtbot.addWidget(window)
    assert window.open_project(small_project.root)
    assert window.arch_vm.set_adapter_type("lycoris")           # writes a starter preset, then re-resolves
    window.project_vm.flush()
    monkeypatch.setattr(Path, "read_text", read_text)
    with qtbot.waitSignal(window.arch_vm.targetsResolved, timeout=60000):
        window.arch_vm.resolve_now()
    assert readers and not any(readers)                          # read, and never on the UI thread
    assert window.arch_vm.result.report is not None
    window.project_vm.save()
    window.shutdown(store=False)
