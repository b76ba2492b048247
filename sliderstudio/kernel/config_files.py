"""Reading the user's JSON and TOML files: one wording for a file that is missing or does not parse.

Every loader (project config, dataloader, prompt library, LyCORIS config, shipped presets) reads
through here, so a syntax error reads the same everywhere: the file, the line, the column and what
the parser expected there ("invalid JSON at line 3, column 11: Expecting value"), as a
FileSyntaxError that carries line and column for the app's editors.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sliderstudio.kernel.errors import ConfigError, FileSyntaxError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

# Python < 3.14's TOMLDecodeError has only a message, ending "(at line L, column C)" or "(at end of document)".
_TOML_WHERE = re.compile(r"^(?P<msg>.*?)\s*\(at (?:line (?P<line>\d+), column (?P<col>\d+)|end of document)\)$")


def syntax_message(kind: str, line: int, column: int, expected: str) -> str:
    """The one wording of a parse error: 'invalid JSON at line 3, column 11: Expecting value'."""
    return f"invalid {kind} at line {line}, column {column}: {expected}"


def json_syntax_error(exc: json.JSONDecodeError, file: str | Path | None) -> FileSyntaxError:
    return FileSyntaxError(syntax_message("JSON", exc.lineno, exc.colno, exc.msg), file=file,
                           line=exc.lineno, column=exc.colno)


def toml_syntax_error(exc: tomllib.TOMLDecodeError, text: str, file: str | Path | None) -> FileSyntaxError:
    """Line and column from the exception (Python ≥ 3.14) or from its message; end of document: the last line."""
    line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
    expected = getattr(exc, "msg", None) or str(exc)
    found = _TOML_WHERE.match(str(exc))
    if found and line is None:
        expected = found["msg"]
        if found["line"]:
            line, column = int(found["line"]), int(found["col"])
    if line is None:
        lines = text.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    return FileSyntaxError(syntax_message("TOML", line, column, expected), file=file, line=line, column=column)


def parse_json(text: str, file: str | Path | None = None) -> Any:
    """JSON text → data; a FileSyntaxError naming file, line and column otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise json_syntax_error(exc, file) from None


def parse_toml(text: str, file: str | Path | None = None) -> dict[str, Any]:
    """TOML text → data; a FileSyntaxError naming file, line and column otherwise."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise toml_syntax_error(exc, text, file) from None


def read_text(path: Path, key: str | None = None, label: str = "file") -> str:
    """The file's text. `key` is the config key that named the file: a missing file is reported by that
    key, since the key is what the user edits to fix it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label} not found" + (f" (named by the config key '{key}')" if key else ""),
                          file=path, key=key) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {label}: {exc}", file=path, key=key) from None


def read_json_file(path: Path, key: str | None = None, label: str = "file") -> Any:
    return parse_json(read_text(path, key, label), path)


def read_toml_file(path: Path, key: str | None = None, label: str = "file") -> dict[str, Any]:
    return parse_toml(read_text(path, key, label), path)
