"""A project is a folder with config.json, the dataloader JSON and the prompt library (SPEC §10).

The CLI and the app open projects through this module, so both see the same validation and paths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sliderstudio.kernel import atomic
from sliderstudio.config.config import (
    BucketConfig, PromptEntry, TrainConfig, coerce_override, parse_buckets, parse_prompt_library,
    parse_train_config_report,
)
from sliderstudio.config.simpletuner_keys import KeyNote, canonical_key
from sliderstudio.kernel.config_files import read_json_file, read_toml_file
from sliderstudio.kernel.errors import ConfigError
from sliderstudio.config.lycoris_config import LycorisSpec, read_lycoris_config
from sliderstudio.engine.run_checks import check_limits, check_project

CONFIG_NAME = "config.json"
# Where a folder's config is looked for, in order: our layout first, then SimpleTuner's (config/…).
CONFIG_CANDIDATES = ("config.json", "config.toml", "config/config.json", "config/config.toml")


@dataclass
class Project:
    root: Path
    config: TrainConfig
    buckets: list[BucketConfig]
    prompts: list[PromptEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lycoris: LycorisSpec | None = None
    config_file: Path | None = None  # None: root/config.json; else e.g. a SimpleTuner root's config/config.toml
    key_notes: list[KeyNote] = field(default_factory=list)  # SimpleTuner keys mapped / ignored / changed
    passthrough: dict[str, Any] = field(default_factory=dict)  # ignored keys, written back on save as given

    @property
    def config_path(self) -> Path:
        return self.config_file or (self.root / CONFIG_NAME)

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
        """The bucket's folder; a huggingface entry's is where its rows are exported (engine/hf_datasets.py)."""
        if bucket.type == "huggingface":
            return self.root / "cache" / "huggingface" / bucket.id
        if bucket.type == "csv":  # fetched images (engine/csv_manifest.py)
            return self.resolve(bucket.csv_cache_dir or f"cache/csv/{bucket.id}")
        if bucket.type == "aws":  # fetched objects (engine/s3_objects.py)
            return self.root / "cache" / "aws" / bucket.id
        if bucket.type == "webshart":  # exported shard samples (engine/webshart_shards.py)
            return self.root / "cache" / "webshart" / bucket.id
        return self.resolve(bucket.instance_data_dir or "")

    def active_buckets(self) -> list[BucketConfig]:
        return [b for b in self.buckets if not b.disabled and b.dataset_type == "image"]

    def validation_prompts(self) -> list[PromptEntry]:
        """The prompt library, else validation_prompt; plus the built-in library when it is switched on."""
        own = list(self.prompts)
        if not own and self.config.validation_prompt:
            own = [PromptEntry(name="validation", prompt=self.config.validation_prompt)]
        if self.config.validation_prompt_library:
            from sliderstudio.config.prompt_library import builtin_prompts

            own += builtin_prompts()
        return own


def read_json(path: Path, key: str | None = None) -> Any:
    """Read JSON; a missing file is reported by the config `key` that named it, a syntax error by line
    and column (kernel/config_files.py words both for every loader)."""
    return read_json_file(path, key)


def read_config(path: Path) -> Any:
    """config.json, or SimpleTuner's config.toml form (flat keys, with or without `--`)."""
    if path.suffix.lower() != ".toml":
        return read_json(path)
    return read_toml_file(path)


def locate_config(path: str | Path) -> Path:
    """A config file, or the first of CONFIG_CANDIDATES in a folder (ours or a SimpleTuner root)."""
    p = Path(path).expanduser()
    if p.is_dir():
        found = [p / name for name in CONFIG_CANDIDATES if (p / name).is_file()]
        if not found:
            raise ConfigError(f"no config in this folder (looked for {', '.join(CONFIG_CANDIDATES)})", file=p)
        p = found[0]
    if not p.exists():
        raise ConfigError("no such config file or project folder", file=p)
    return p.resolve()


def project_root(config_path: Path, data_backend_config: str) -> Path:
    """The folder relative paths start from: the config's own, or, for SimpleTuner's layout
    (<root>/config/config.json naming 'config/multidatabackend.json'), the SimpleTuner root."""
    folder = config_path.parent
    relative = not Path(data_backend_config).expanduser().is_absolute()
    for candidate in [folder, *list(folder.parents)[:3]]:
        if relative and (candidate / data_backend_config).exists():
            return candidate
    for candidate in [folder, *list(folder.parents)[:2]]:
        if candidate.name == "config":
            return candidate.parent
    return folder


def merge_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Command-line overrides win over the file, whichever spelling (alias or ours) either side used."""
    replaced = {canonical_key(k) for k in overrides}
    kept = {k: v for k, v in raw.items() if canonical_key(str(k)) not in replaced}
    return {**kept, **{k.lstrip("-"): v for k, v in overrides.items()}}


def load_project(path: str | Path, overrides: dict[str, Any] | None = None) -> Project:
    """Load and validate a whole project; raises ConfigError (exit 2) before anything heavy happens."""
    config_path = locate_config(path)
    raw = read_config(config_path)
    if isinstance(raw, dict) and overrides:
        raw = merge_overrides(raw, overrides)
    config, notes = parse_train_config_report(raw, str(config_path))
    warnings = [str(n) for n in notes if n.kind != "mapped"]
    warnings += check_limits(config, str(config_path))
    root = project_root(config_path, config.data_backend_config)
    project = Project(root=root, config=config, buckets=[], warnings=warnings,
                      config_file=None if config_path == root / CONFIG_NAME else config_path, key_notes=notes,
                      passthrough={n.key: n.value for n in notes if n.kind == "ignored"})
    buckets, bwarn = parse_buckets(read_json(project.dataloader_path, "data_backend_config"),
                                   str(project.dataloader_path),
                                   {"model_family": config.model_family})
    project.buckets, project.warnings = buckets, warnings + bwarn
    if config.user_prompt_library:
        lib = project.resolve(config.user_prompt_library)
        project.prompts = parse_prompt_library(read_json(lib, "user_prompt_library"), str(lib))
    if config.lora_type == "lycoris" and config.lycoris_config:
        # validated here, with the rest of the config, so a bad preset costs no model load
        project.lycoris = read_lycoris_config(project.resolve(config.lycoris_config))
        project.warnings += [f"{config.lycoris_config}: {w}" for w in project.lycoris.warnings]
    check_project(project)
    return project


def parse_cli_overrides(pairs: list[str]) -> dict[str, Any]:
    """['--lora_rank', '8', '--slider_lora_target=true'] → {'lora_rank': 8, ...}.

    Both `--key value` and SimpleTuner's own `--key=value` (its config.env and launch lines) are read.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(pairs):
        key = pairs[i]
        if not key.startswith("--"):
            raise ConfigError(f"expected --key value, got {key!r}", file="command line")
        if "=" in key:
            key, value = key.split("=", 1)
            out[key.lstrip("-")] = coerce_override(key, value)
            i += 1
            continue
        if i + 1 >= len(pairs) or pairs[i + 1].startswith("--"):
            raise ConfigError("missing value", file="command line", key=key.lstrip("-"))
        out[key.lstrip("-")] = coerce_override(key, pairs[i + 1])
        i += 2
    return out


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Only the keys that differ from the defaults, plus the essentials, so saved files stay readable.
    `schema_version` is always written: a later version's defaults may differ (config/config_migrations.py)."""
    data = config.model_dump(exclude_defaults=True)
    for key in ("model_family", "pretrained_model_name_or_path", "data_backend_config", "output_dir",
                "schema_version"):
        data[key] = getattr(config, key)
    return data


def save_project(project: Project) -> None:
    """Writes JSON; a project opened from config.toml is saved as config.json beside it (no TOML writer),
    which the folder's discovery then finds first."""
    atomic.write_json(project.config_path.with_suffix(".json"),
                      {**project.passthrough, **config_to_dict(project.config)})
    atomic.write_json(project.dataloader_path,
                      [b.model_dump(exclude_defaults=True) | {"id": b.id} for b in project.buckets])
    if project.config.user_prompt_library:
        lib = {p.name: (p.prompt if p.adapter_strength is None
                        else {"prompt": p.prompt, "adapter_strength": p.adapter_strength})
               for p in project.prompts}
        atomic.write_json(project.resolve(project.config.user_prompt_library), lib)
