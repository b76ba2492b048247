"""How much two sliders interfere (issue #16 item 4): the overlap of their weight deltas, and in
the toy world the measured change of one slider's attribute when the other slider moves.

Weight overlap. For every module both adapters touch, ΔW = B·A·(alpha/rank) (LoRA) or LyCORIS's
own difference weight, flattened to (out, in·k·k); the cosine of the two deltas says whether the
sliders push that module the same way (1), oppositely (−1) or independently (0). The mean over
modules is weighted by ‖ΔA‖·‖ΔB‖ (= Σ⟨ΔA,ΔB⟩ / Σ‖ΔA‖‖ΔB‖), so a module where both barely act does
not swing the figure. Overlap of weights is a hint, not the effect: two sliders can overlap on a
module whose output the image hardly depends on, hence the measured figure too.

Measured crosstalk (toy world). With the two sliders composed (`composition.render_rows`), every
prompt × seed renders A at ±1 with B at 0, B at ±1 with A at 0, and B at ±1 with A at +1 in one
batch. Each slider's own attribute (its calibration's `attribute:` measure, else the one it moves
most) is read by `slider_metrics`; `leak` is how far B moves A's attribute relative to how far A
itself moves it (0: no crosstalk, 1: B moves A's attribute as much as A does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from sliderstudio.adapters.adapter_io import read_metadata, read_tensors
from sliderstudio.kernel.errors import InputError
from sliderstudio.adapters.slider_adapter import SliderAdapter, file_kind
from sliderstudio.families.registry import get_family

#: Attributes a toy slider is scored on when its calibration does not name one (same 0-1 scale).
FALLBACK_ATTRIBUTES = ("area", "brightness")
CROSS_ROWS = ((-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0), (1.0, -1.0), (1.0, 1.0))


def flat(delta: torch.Tensor) -> torch.Tensor:
    return delta.detach().to(torch.float32).reshape(delta.shape[0], -1)


def lora_file_deltas(path: Path) -> dict[str, torch.Tensor]:
    """ΔW per module of a LoRA file (our / diffusers naming), read from the file alone."""
    meta = read_metadata(path)
    peft = {k.split(".", 1)[1]: v for k, v in (meta.get("lora_adapter_metadata") or {}).items() if "." in k}
    tensors = read_tensors(path)
    out: dict[str, torch.Tensor] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        b = tensors.get(key.replace(".lora_A.weight", ".lora_B.weight"))
        if b is None:
            raise InputError("a lora_A tensor has no lora_B", file=path, key=key)
        module = key[:-len(".lora_A.weight")].split(".", 1)[1]   # drop the host prefix (unet., transformer.)
        rank = a.shape[0]
        alpha = float(meta.get("alpha") or peft.get("lora_alpha") or rank)
        out[module] = flat(b) @ flat(a) * (alpha / rank)
    if not out:
        raise InputError("no LoRA tensors (lora_A/lora_B) in this file", file=path, key="--lora")
    return out


def handle_deltas(handle: SliderAdapter) -> dict[str, torch.Tensor]:
    """ΔW per module of an attached LyCORIS slider (its own difference weight at multiplier 1)."""
    names = {id(m): n.removesuffix(".base_layer") for n, m in handle.host.named_modules()}
    out: dict[str, torch.Tensor] = {}
    for lora in handle.network.loras:
        diff = lora.get_diff_weight(multiplier=1.0, shape=lora.shape)[0]
        out[names.get(id(lora.org_module[0]), lora.lora_name)] = flat(diff)
    return out


def adapter_deltas(path: Path, model: str | None, family: str | None) -> dict[str, torch.Tensor]:
    """ΔW per module of any slider file; a LyCORIS file is attached to the model to compute it."""
    if file_kind(path) != "lycoris":
        return lora_file_deltas(path)
    if not model:
        raise InputError("a LyCORIS adapter's weight delta needs its base model: give --model", file=path,
                         key="--model")
    from sliderstudio.engine.preview import PreviewRenderer

    renderer = PreviewRenderer(get_family(family or str(read_metadata(path).get("family") or "sd1x")), model, path)
    return handle_deltas(renderer.adapter)


def delta_overlap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per shared module the cosine of ΔA and ΔB, and their ‖ΔA‖‖ΔB‖-weighted mean."""
    shared = sorted(set(a) & set(b))
    modules = []
    dot_sum = norm_sum = 0.0
    for name in shared:
        da, db = a[name].flatten().double(), b[name].flatten().double()
        if da.shape != db.shape:
            raise InputError(f"the two adapters give module '{name}' different shapes ({tuple(a[name].shape)} vs "
                             f"{tuple(b[name].shape)}): they are for different models", key="--lora")
        na, nb = float(da.norm()), float(db.norm())
        dot = float(da @ db)
        cosine = dot / (na * nb) if na > 0 and nb > 0 else 0.0
        modules.append({"module": name, "cosine": cosine, "norm_a": na, "norm_b": nb})
        dot_sum += dot
        norm_sum += na * nb
    return {"shared_modules": len(shared), "only_a": len(set(a) - set(b)), "only_b": len(set(b) - set(a)),
            "weighted_cosine": dot_sum / norm_sum if norm_sum > 0 else 0.0,
            "mean_abs_cosine": sum(abs(m["cosine"]) for m in modules) / len(modules) if modules else 0.0,
            "modules": modules}


def slider_attribute(path: Path) -> str | None:
    """The toy attribute a slider's calibration measured (`attribute:area` → 'area'), if any."""
    measure = str((read_metadata(path).get("calibration") or {}).get("measure") or "")
    return measure.split(":", 1)[1] if measure.startswith("attribute:") else None


def crosstalk(renderer: Any, companion: SliderAdapter, prompts: Sequence[str], seeds: Sequence[int],
              attributes: tuple[str | None, str | None], steps: int, guidance: float) -> dict[str, Any]:
    """Render CROSS_ROWS for every prompt × seed (one batch each) and measure both attributes."""
    from sliderstudio.engine.composition import render_rows
    from sliderstudio.toy.metrics import attribute_value, measure_image

    size = renderer.family.default_size(renderer.pipe)
    sliders = [renderer.adapter, companion]
    per_row: list[list[Any]] = [[] for _ in CROSS_ROWS]
    for prompt in prompts:
        for seed in seeds:
            images = render_rows(renderer.family, renderer.pipe, sliders, CROSS_ROWS, [prompt] * len(CROSS_ROWS),
                                 seed, steps, guidance, size)
            for k, image in enumerate(images):
                per_row[k].append(measure_image(image))

    def mean(row: int, attribute: str) -> float:
        return sum(attribute_value(m, attribute) for m in per_row[row]) / len(per_row[row])

    def move(lo: int, hi: int, attribute: str) -> float:
        return mean(hi, attribute) - mean(lo, attribute)

    attr_a = attributes[0] or max(FALLBACK_ATTRIBUTES, key=lambda at: abs(move(0, 1, at)))
    attr_b = attributes[1] or max(FALLBACK_ATTRIBUTES, key=lambda at: abs(move(2, 3, at)))
    own_a, own_b = move(0, 1, attr_a), move(2, 3, attr_b)
    b_on_a, a_on_b = move(2, 3, attr_a), move(0, 1, attr_b)
    return {"images": len(prompts) * len(seeds) * len(CROSS_ROWS), "attribute_a": attr_a, "attribute_b": attr_b,
            "a_moves_own": own_a, "b_moves_own": own_b, "b_moves_a_attribute": b_on_a,
            "a_moves_b_attribute": a_on_b, "b_moves_a_attribute_at_a_plus1": move(4, 5, attr_a),
            "leak_b_into_a": abs(b_on_a) / abs(own_a) if own_a else None,
            "leak_a_into_b": abs(a_on_b) / abs(own_b) if own_b else None}


def interference_report(path_a: Path, path_b: Path, model: str | None = None, family: str | None = None,
                        seeds: int = 2, measure: bool = True) -> dict[str, Any]:
    """Both parts for two files; the measured part on the toy model only (its attribute meter)."""
    from sliderstudio.toy import is_toy

    for path in (path_a, path_b):
        if not path.is_file():
            raise InputError("no such adapter file", file=path, key="--lora")
    base = model or read_metadata(path_a).get("base_model")
    report: dict[str, Any] = {"a": str(path_a), "b": str(path_b),
                              "overlap": delta_overlap(adapter_deltas(path_a, base, family),
                                                       adapter_deltas(path_b, base, family)),
                              "crosstalk": None, "crosstalk_note": None}
    if not measure:
        return report
    if not (base and is_toy(str(base))):
        report["crosstalk_note"] = "measured crosstalk needs the toy model's attribute meter (this is not a toy adapter)"
        return report
    from sliderstudio.engine.composition import load_companion
    from sliderstudio.engine.preview import PreviewRenderer
    from sliderstudio.toy import TOY_MODEL_ID
    from sliderstudio.toy.demo_project import PROMPT_LIBRARY
    from sliderstudio.toy.quality import DEFAULT_GUIDANCE, DEFAULT_STEPS

    renderer = PreviewRenderer(get_family("sd1x"), TOY_MODEL_ID, path_a)
    companion = load_companion(renderer.family, renderer.pipe, path_b, 0)
    report["crosstalk"] = crosstalk(renderer, companion, list(PROMPT_LIBRARY.values()), list(range(seeds)),
                                    (slider_attribute(path_a), slider_attribute(path_b)), DEFAULT_STEPS,
                                    DEFAULT_GUIDANCE)
    return report


def format_interference(report: dict[str, Any]) -> str:
    ov = report["overlap"]
    lines = [f"interference of {report['a']} (A) and {report['b']} (B)",
             f"  weight overlap: {ov['shared_modules']} shared modules (A only {ov['only_a']}, B only {ov['only_b']}); "
             f"weighted cosine {ov['weighted_cosine']:+.3f}, mean |cosine| {ov['mean_abs_cosine']:.3f}"]
    for m in sorted(ov["modules"], key=lambda m: -abs(m["cosine"]))[:5]:
        lines.append(f"    {m['module']}: cosine {m['cosine']:+.3f}")
    ct = report["crosstalk"]
    if ct is None:
        lines.append(f"  measured crosstalk: {report['crosstalk_note'] or 'not measured'}")
        return "\n".join(lines)
    lines += [f"  measured over {ct['images']} toy images:",
              f"    A -1→+1 moves its {ct['attribute_a']} by {ct['a_moves_own']:+.3f}; B -1→+1 moves it by "
              f"{ct['b_moves_a_attribute']:+.3f} (leak {_pct(ct['leak_b_into_a'])}; with A at +1: "
              f"{ct['b_moves_a_attribute_at_a_plus1']:+.3f})",
              f"    B -1→+1 moves its {ct['attribute_b']} by {ct['b_moves_own']:+.3f}; A -1→+1 moves it by "
              f"{ct['a_moves_b_attribute']:+.3f} (leak {_pct(ct['leak_a_into_b'])})"]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"
