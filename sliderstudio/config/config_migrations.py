"""`schema_version` of the project config: read old files in today's form, refuse newer ones (SPEC §10).

A config file records the schema it was written in. Reading applies each migration step from the
file's version up to the current one, in order, on a copy: the file itself is rewritten only when
the project is saved (engine/project.py writes `schema_version` every time, so a saved file is never
mistaken for an older one). A file from a newer Slider Studio is refused before anything is read
from it (exit status 2, naming the file and both versions), since guessing at keys this version does
not know could train the wrong thing.

Version 1 is every config written so far, and every SimpleTuner config (SimpleTuner has no such
key): a file without `schema_version` is version 1. No change to the schema has needed a step yet,
so MIGRATIONS is empty and the current version is 1.

Adding a step: write `def _v1_to_v2(data: dict) -> dict` returning the changed copy (rename a key,
convert a value), add it as `MIGRATIONS[1]`, and add a test with a version-1 file. The current
version is 1 + the number of steps, so it cannot fall out of step with the list.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sliderstudio.kernel.errors import ConfigError
from sliderstudio.config.simpletuner_keys import KeyNote

KEY = "schema_version"
FIRST_VERSION = 1
Step = Callable[[dict[str, Any]], dict[str, Any]]
# from-version → the step that turns that version's data into the next version's.
MIGRATIONS: dict[int, Step] = {}


def current_version(steps: Mapping[int, Step] | None = None) -> int:
    """The version this Slider Studio writes: one past the last step."""
    return FIRST_VERSION + len(MIGRATIONS if steps is None else steps)


CONFIG_SCHEMA_VERSION = current_version()


def file_version(data: dict[str, Any], file: str) -> int:
    """The version a file says it is in (`schema_version`, `--schema_version`); 1 when it says nothing."""
    given = [v for k, v in data.items() if str(k).lstrip("-") == KEY]
    if not given:
        return FIRST_VERSION
    version = given[0]
    if isinstance(version, str) and version.strip().isdigit():  # SimpleTuner-style files quote numbers
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < FIRST_VERSION:
        raise ConfigError(f"expected a whole number ≥ {FIRST_VERSION} (got {version!r})", file=file, key=KEY,
                          value=version)
    return version


def migrate_config(data: dict[str, Any], file: str,
                   steps: Mapping[int, Step] | None = None) -> tuple[dict[str, Any], list[KeyNote]]:
    """The data in the current schema (a new dict; `data` is untouched) and a note when it was migrated."""
    steps = MIGRATIONS if steps is None else steps
    current = current_version(steps)
    version = file_version(data, file)
    if version > current:
        raise ConfigError(f"written by a newer Slider Studio (config schema version {version}; this version "
                          f"reads up to {current}); update Slider Studio to open it. The file is left as it is",
                          file=file, key=KEY, value=version)
    out = {k: v for k, v in data.items() if str(k).lstrip("-") != KEY}
    for step_from in range(version, current):
        out = steps[step_from](dict(out))
    out[KEY] = current
    if version == current:
        return out, []
    return out, [KeyNote("changed", KEY, f"a version {version} file, read as version {current}; it is rewritten "
                                         f"in version {current} when the project is saved", file, version)]
