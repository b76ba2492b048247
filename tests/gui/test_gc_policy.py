"""Cyclic garbage collection belongs to the UI thread (gui/gc_policy): workers never run it."""
import gc
import threading

from PySide6.QtCore import QObject

from sliderstudio.gui import gc_policy
from sliderstudio.gui.workers import engine


class Cycle:
    """An object in a reference cycle, which only the cyclic collector frees; records the thread that did."""

    freed_on: list[str] = []

    def __init__(self):
        self.me = self

    def __del__(self):
        Cycle.freed_on.append(threading.current_thread().name)


def test_automatic_collection_is_off_and_the_ui_thread_collects_on_its_timer(qtbot, ui_thread_gc):
    assert not gc.isenabled() and gc_policy.collector_installed()
    Cycle.freed_on.clear()

    def churn():
        Cycle()
        for _ in range(200_000):   # far past every generation's threshold: would trigger collections
            [object()]
    worker = threading.Thread(target=churn, name="worker")
    worker.start()
    worker.join()
    assert Cycle.freed_on == []            # nobody collected on the worker
    qtbot.waitUntil(lambda: bool(Cycle.freed_on), timeout=5000)
    assert Cycle.freed_on == [threading.main_thread().name]


def test_a_worker_hands_the_import_freeze_to_the_ui_thread(qtbot, ui_thread_gc):
    before = gc.get_freeze_count()
    result = []
    worker = threading.Thread(target=lambda: result.append(engine.freeze_import_heap()))
    worker.start()
    worker.join()
    assert result == [0] and gc.get_freeze_count() == before     # nothing done on the worker
    marker = QObject()
    qtbot.waitUntil(lambda: gc.get_freeze_count() > before, timeout=5000)   # done by the timer tick
    del marker


def test_uninstall_gives_automatic_collection_back(qapp):
    # the autouse fixture's collector is installed too; a second one nests and unwinds in order
    inner = gc_policy.install(qapp)
    inner.uninstall()
    assert not gc.isenabled() and gc_policy.collector_installed()   # the fixture's collector still rules
