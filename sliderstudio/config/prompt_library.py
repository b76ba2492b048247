"""The built-in validation prompt library (SimpleTuner's `validation_prompt_library` switch).

SimpleTuner's switch adds its own varied prompt set to validation; Slider Studio ships its own small
set (portraits, animals, scenes, objects) so a slider can be seen on subjects it was not trained on.
"""
from __future__ import annotations

import functools
from sliderstudio.config.config import PromptEntry
from sliderstudio.kernel.config_files import parse_json
from sliderstudio.kernel.resources import read_config_data


@functools.cache
def _library() -> dict[str, str]:
    return parse_json(read_config_data("builtin_prompt_library.json"), "config_data/builtin_prompt_library.json")


def builtin_prompts() -> list[PromptEntry]:
    """Each built-in prompt, named `library_<name>` so it never collides with a project's own names."""
    return [PromptEntry(name=f"library_{name}", prompt=prompt) for name, prompt in _library().items()]
