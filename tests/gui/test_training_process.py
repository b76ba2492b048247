"""How the app starts its training process and words the ways one can end without a result."""
from __future__ import annotations

import sys

from sliderstudio.gui.workers.training import child_environment, ended_without_result, training_command


def test_the_training_command_is_this_program_with_the_resume_choice(small_project, monkeypatch):
    argv = training_command(small_project)
    assert argv == [sys.executable, "-m", "sliderstudio", "train", "--config", str(small_project.root),
                    "--events", "--resume_from_checkpoint", "none"]
    small_project.config = small_project.config.model_copy(update={"resume_from_checkpoint": "latest"})
    assert training_command(small_project)[-2:] == ["--resume_from_checkpoint", "latest"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)      # the installed app runs itself
    assert training_command(small_project)[:3] == [sys.executable, "train", "--config"]


def test_the_child_finds_this_copy_of_the_package(monkeypatch):
    import sliderstudio
    from pathlib import Path

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = child_environment()
    source = str(Path(sliderstudio.__file__).resolve().parent.parent)
    assert env["PYTHONPATH"].split(":") == [source, "/elsewhere"] and env["PYTHONUNBUFFERED"] == "1"


def test_an_end_without_a_result_says_why():
    assert ended_without_result(-9, []) == ("the training process was killed by SIGKILL (the system may have "
                                            "run out of memory); the last checkpoint is kept")
    assert ended_without_result(-15, []) == "the training process was killed by SIGTERM; the last checkpoint is kept"
    assert ended_without_result(1, ["loading…", "error: RuntimeError: CUDA driver missing", "bye"]) == (
        "the training process ended with exit status 1 without a result: RuntimeError: CUDA driver missing")
    assert ended_without_result(0, []) == "the training process ended with exit status 0 without a result"
