"""`sliderstudio train --events` with the stand-in trainer: the app's real process and wire, no model.

The app starts this file instead of `python -m sliderstudio` when a test calls
`fakes.use_fake_training_process`; the settings of the stand-in come in $FAKE_TRAINER (JSON).
Everything after the trainer (the CLI, the wire, stdin commands) is the product's own code.
"""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.gui import fakes  # noqa: E402


def install_stand_in() -> None:
    settings = json.loads(os.environ.get("FAKE_TRAINER", "{}"))
    kind = settings.pop("kind", "FakeTrainer")
    cls = getattr(fakes, kind)
    for key, value in settings.items():
        setattr(fakes.FakeTrainer, key, value)
    module = types.ModuleType("sliderstudio.engine.trainer")
    module.Trainer = cls
    sys.modules["sliderstudio.engine.trainer"] = module


if __name__ == "__main__":
    install_stand_in()
    from sliderstudio.cli import main

    sys.exit(main(sys.argv[1:]))
