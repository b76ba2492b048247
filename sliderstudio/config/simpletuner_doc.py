"""The key tables of docs/SIMPLETUNER.md, generated from the shipped registry and the classification.

Kept as code so the doc cannot drift from what the loader does: a test compares the doc's tables
with this output. Regenerate with `python -m sliderstudio.config.simpletuner_doc`.
"""
from __future__ import annotations

from collections import defaultdict

from sliderstudio.config.simpletuner_keys import (
    ALIASES, LEGACY_KEYS, SOFT_ALIASES, VALUE_MAPS, base_ignore_reason, classify_train_key, registry,
)

# How a value-mapped key's values land in its target (VALUE_MAPS holds the conversion itself).
VALUE_MAP_NOTES = {"musubi_blocks_to_swap": "true when above 0; every block streams",
                   "ramtorch": "true when true"}

BEGIN = "<!-- generated: python -m sliderstudio.config.simpletuner_doc (do not edit below) -->"
END = "<!-- end of generated tables -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _label(key: str) -> str:
    families = registry()[key].get("model_specific")
    return f"`{key}`" + (f" ({', '.join(families)})" if families else "")


def key_tables() -> str:
    """Counts, the mapped keys, the implemented keys, and the ignored keys grouped by section."""
    implemented, ignored = [], defaultdict(list)
    for key, spec in sorted(registry().items()):
        status = classify_train_key(key)
        if status.status == "implemented":
            implemented.append(key)
        elif status.status == "ignored":
            ignored[spec["section"]].append(key)
    mapped = {**ALIASES, **SOFT_ALIASES, **{k: target for k, (target, _) in VALUE_MAPS.items()}}
    total_ignored = sum(len(v) for v in ignored.values())
    lines = [BEGIN, "",
             f"Of SimpleTuner's {len(registry())} registry keys: **{len(implemented)} implemented**, "
             f"**{len(mapped)} mapped** to another name, **{total_ignored} ignored** with a reason; plus "
             f"{len(LEGACY_KEYS)} documented legacy keys (and `text_encoder_N_precision`), all ignored.", "",
             "### Mapped", "", "| SimpleTuner key | Slider Studio key |", "| --- | --- |"]
    lines += [f"| `{k}` | `{v}`{' (only when it is not given itself)' if k in SOFT_ALIASES else ''}"
              f"{f' ({VALUE_MAP_NOTES[k]})' if k in VALUE_MAP_NOTES else ''} |" for k, v in mapped.items()]
    lines += ["", "### Implemented", "", ", ".join(f"`{k}`" for k in implemented), "",
              "### Ignored, by SimpleTuner section", "", "| Section | Keys | What ignoring them means |",
              "| --- | --- | --- |"]
    for section in sorted(ignored):
        by_reason: dict[str, list[str]] = defaultdict(list)
        for key in ignored[section]:
            by_reason[base_ignore_reason(key)].append(key)
        for reason, keys in sorted(by_reason.items(), key=lambda item: item[1][0]):
            lines.append(f"| {section} | {', '.join(_label(k) for k in keys)} | {_cell(reason)} |")
    lines += ["", "### Legacy keys outside the registry (ignored)", "", "| Key | What ignoring it means |",
              "| --- | --- |"]
    lines += [f"| `{k}` | {_cell(v)} |" for k, v in sorted(LEGACY_KEYS.items())]
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(key_tables())
