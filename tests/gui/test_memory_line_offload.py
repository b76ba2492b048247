"""The memory line proposes block offloading when nothing cheaper fits, and plans a run that has it on."""
from __future__ import annotations

from sliderstudio.gui.memory_line import MemoryLine
from sliderstudio.gui.viewmodels.memory import MemoryViewModel
from sliderstudio.gui.viewmodels.project import ProjectViewModel
from sliderstudio.gui.workers.tasks import TaskRunner

FLUX = {"model_family": "flux", "pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
        "resolution": 1024, "mixed_precision": "bf16", "lora_rank": 16}


def test_line_offers_offloading_on_a_small_card_and_plans_it(qtbot, small_project):
    tasks = TaskRunner()
    pvm = ProjectViewModel()
    memory = MemoryViewModel(pvm, tasks, card_gb=12)
    line = MemoryLine(memory, pvm)
    qtbot.addWidget(line)
    pvm.set_project(small_project)
    pvm.update_config(**FLUX)
    qtbot.waitUntil(lambda: "won't fit 12 GB" in line.label.text(), timeout=60000)
    assert "try offload_blocks True" in line.label.text()
    pvm.update_config(offload_blocks=True)
    qtbot.waitUntil(lambda: "fits 12 GB" in line.label.text() and "won't" not in line.label.text(), timeout=60000)
    tasks.wait()
