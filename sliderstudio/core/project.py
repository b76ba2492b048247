"""A project is a folder with config.json, the dataloader JSON and the prompt library (SPEC §10).

The CLI and the app open projects through this module, so both see the same validation and paths.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sliderstudio.core import atomic
from sliderstudio.core.config import (
    BucketConfig, PromptEntry, TrainConfig, coerce_override, parse_buckets, parse_prompt_library,
    parse_train_config,
)
from sliderstudio.core.errors import ConfigError
from sliderstudio.core.lycoris_config import LycorisSpec, read_lycoris_config
from sliderstudio.core.run_checks import check_files, check_limits

CONFIG_NAME = "config.json"


@dataclass
class Project:
    root: Path
    config: TrainConfig
    buckets: list[BucketConfig]
    prompts: list[PromptEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lycoris: LycorisSpec | None = None

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def dataloader_path(self) -> Path:
        return self.resolve(self.config.data_backend_config)

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.config.output_dir)

    def resolve(self, path: str | Path) -> Path:
        """Paths in a project are relative to the project folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def bucket_dir(self, bucket: BucketConfig) -> Path:
        return self.resolve(bucket.instance_data_dir or "")

    def active_buckets(self) -> list[BucketConfig]:
        return [b for b in self.buckets if not b.disabled and b.dataset_type == "image"]

    def validation_prompts(self) -> list[PromptEntry]:
        if self.prompts:
            return self.prompts
        if self.config.validation_prompt:
            return [PromptEntry(name="validation", prompt=self.config.validation_prompt)]
        return []


def read_json(path: Path, key: str | None = None) -> Any:
    """Read JSON, turning a syntax error into a ConfigError with line and column.

    `key` is the config key that named this file: a missing file is reported by that key, since the
    key is what the user edits to fix it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found" + (f" (named by the config key '{key}')" if key else ""),
                          file=path, key=key) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", file=path, key=key) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=path) from None


def locate_config(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / CONFIG_NAME
    if not p.exists():
        raise ConfigError("no such config file or project folder", file=p)
    return p.resolve()


def load_project(path: str | Path, overrides: dict[str, Any] | None = None) -> Project:
    """Load and validate a whole project; raises ConfigError (exit 2) before anything heavy happens."""
    config_path = locate_config(path)
    raw = read_json(config_path)
    if isinstance(raw, dict) and overrides:
        raw = {**{k.lstrip("-"): v for k, v in raw.items()}, **overrides}
    config, warnings = parse_train_config(raw, str(config_path))
    warnings += check_limits(config, str(config_path))
    project = Project(root=config_path.parent, config=config, buckets=[], warnings=warnings)
    buckets, bwarn = parse_buckets(read_json(project.dataloader_path, "data_backend_config"),
                                   str(project.dataloader_path))
    project.buckets, project.warnings = buckets, warnings + bwarn
    if config.user_prompt_library:
        lib = project.resolve(config.user_prompt_library)
        project.prompts = parse_prompt_library(read_json(lib, "user_prompt_library"), str(lib))
    if config.lora_type == "lycoris" and config.lycoris_config:
        # validated here, with the rest of the config, so a bad preset costs no model load
        project.lycoris = read_lycoris_config(project.resolve(config.lycoris_config))
        project.warnings += [f"{config.lycoris_config}: {w}" for w in project.lycoris.warnings]
    check_files(project)
    return project


def parse_cli_overrides(pairs: list[str]) -> dict[str, Any]:
    """['--lora_rank', '8', '--slider_lora_target', 'true'] → {'lora_rank': 8, ...}."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(pairs):
        key = pairs[i]
        if not key.startswith("--"):
            raise ConfigError(f"expected --key value, got {key!r}", file="command line")
        if i + 1 >= len(pairs) or pairs[i + 1].startswith("--"):
            raise ConfigError("missing value", file="command line", key=key.lstrip("-"))
        out[key.lstrip("-")] = coerce_override(key, pairs[i + 1])
        i += 2
    return out


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Only the keys that differ from the defaults, plus the essentials, so saved files stay readable."""
    data = config.model_dump(exclude_defaults=True)
    for key in ("model_family", "pretrained_model_name_or_path", "data_backend_config", "output_dir"):
        data[key] = getattr(config, key)
    return data


def save_project(project: Project) -> None:
    atomic.write_json(project.config_path, config_to_dict(project.config))
    atomic.write_json(project.dataloader_path,
                      [b.model_dump(exclude_defaults=True) | {"id": b.id} for b in project.buckets])
    if project.config.user_prompt_library:
        lib = {p.name: (p.prompt if p.adapter_strength is None
                        else {"prompt": p.prompt, "adapter_strength": p.adapter_strength})
               for p in project.prompts}
        atomic.write_json(project.resolve(project.config.user_prompt_library), lib)
