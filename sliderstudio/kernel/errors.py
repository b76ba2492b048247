"""Typed errors. Each carries the file, key and value it is about so both faces print the same message.

`InputError` and its subclasses are the user's to fix (exit status 2); anything else is ours (exit 1).
"""
from __future__ import annotations

from pathlib import Path


class SliderStudioError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1


class InputError(SliderStudioError):
    """Bad input: a config, dataset, model path or preset the user gave. Exit status 2."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | Path | None = None, key: str | None = None,
                 value: object = None, expected: str | None = None):
        self.file = str(file) if file is not None else None
        self.key = key
        self.value = value
        self.expected = expected
        self.message = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.key:
            where.append(f"key '{self.key}'")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        text = prefix + self.message
        if self.expected:
            text += f" (expected {self.expected})"
        return text


class ConfigError(InputError):
    """A config, dataloader or prompt-library file is malformed or has a bad key/value."""


class FileSyntaxError(ConfigError):
    """A JSON or TOML file that does not parse: `line` and `column` (1-based) say where, so an editor can jump there."""

    def __init__(self, message: str, *, file: str | Path | None = None, line: int = 0, column: int = 0):
        self.line = line
        self.column = column
        super().__init__(message, file=file)


class DatasetError(InputError):
    """A bucket's folder is missing, empty or holds nothing usable."""


class TargetError(InputError):
    """A target preset matches zero modules or only unsupported module types."""


class ModelLoadError(InputError):
    """A model path is missing, incomplete, or in a format we refuse (pickles)."""


class OutputError(InputError):
    """The output folder cannot be written."""


class ResourceMissingError(InputError):
    """A file Slider Studio ships (a preset, the toy model) is not in this installation."""


class OutOfMemory(SliderStudioError):
    """The accelerator ran out of memory; the message says what to change."""


class TrainingStopped(SliderStudioError):
    """Raised inside the loop when a stop command arrives; caught by the trainer, never shown as a failure."""
