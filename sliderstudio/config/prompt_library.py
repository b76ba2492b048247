"""The built-in validation prompt library (SimpleTuner's `validation_prompt_library` switch).

SimpleTuner's switch adds its own varied prompt set to validation; Slider Studio ships its own small
set (portraits, animals, scenes, objects) so a slider can be seen on subjects it was not trained on.
"""
from __future__ import annotations

import functools
from importlib import resources

from sliderstudio.config.config import PromptEntry
from sliderstudio.kernel.config_files import parse_json


@functools.cache
def _library() -> dict[str, str]:
    source = resources.files("sliderstudio") / "config_data" / "builtin_prompt_library.json"
    return parse_json(source.read_text("utf-8"), str(source))


def builtin_prompts() -> list[PromptEntry]:
    """Each built-in prompt, named `library_<name>` so it never collides with a project's own names."""
    return [PromptEntry(name=f"library_{name}", prompt=prompt) for name, prompt in _library().items()]
