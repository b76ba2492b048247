"""Export to ComfyUI naming (SPEC §8): key names per family, alpha kept, values round-trip at strength 1.

The round trip re-imports the exported file the way ComfyUI's loader reads it: a key map from the
model's own module names (`lora_unet_<path with underscores>`, `transformer.<path>`, …), then
W += (alpha / rank) · up @ down merged into a fresh copy of the base weights; its outputs must equal
our adapter's at strength 1.
"""
import re

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.core import adapters
from sliderstudio.core.export import comfy_prefix, export_file
from sliderstudio.core.lycoris_adapter import CONFIG_NAME, attach_lycoris
from sliderstudio.core.lycoris_config import parse_lycoris_config
from sliderstudio.core.project import load_project
from sliderstudio.core.slider_adapter import PeftSlider, load_slider
from sliderstudio.core.targets import resolve_on_module
from sliderstudio.core.trainer import Trainer
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family

TRANSFORMER_FAMILIES = ["sd3", "flux", "z_image", "qwen_image", "wan"]
EXPECTED_PREFIX = {"sd1x": "lora_unet_", "sd2x": "lora_unet_", "sdxl": "lora_unet_", "sd3": "transformer.",
                   "flux": "transformer.", "z_image": "diffusion_model.", "qwen_image": "diffusion_model.",
                   "wan": "diffusion_model."}


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_models):
    """Tiny models of the UNet families and of several transformer families."""
    root = tmp_path_factory.mktemp("export-models")
    built = dict(tiny_models)
    for family_id in TRANSFORMER_FAMILIES:
        built[family_id] = get_family(family_id).build_tiny(root / family_id)
    return built


def lora_adapter(path, family_id, rank=2, alpha=4.0):
    """A fresh denoiser with a LoRA slider (non-zero B) on the family's slider preset."""
    family = get_family(family_id)
    pipe = load_pipeline(family, str(path))
    denoiser = family.denoiser(pipe)
    names = resolve_on_module(denoiser, family.presets["slider"]).module_names
    config = adapters.attach_lora(denoiser, names, rank, alpha)
    adapters.activate(denoiser, adapters.SLIDER)
    torch.manual_seed(1)
    for n, p in denoiser.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.05)
    return family, pipe, denoiser, PeftSlider(denoiser, family.denoiser_name, config, family.pipeline_class), names


def comfy_key_map(module_names, prefix):
    """What ComfyUI's loader builds from a model's module names for this prefix."""
    if prefix.endswith("_"):
        return {prefix + n.replace(".", "_"): n for n in module_names}
    return {prefix + n: n for n in module_names}


def merged_weights(comfy, key_map):
    """module name → ΔW at strength 1, computed as ComfyUI does: (alpha / rank) · up @ down."""
    deltas = {}
    for key in comfy:
        if not key.endswith(".lora_down.weight"):
            continue
        stem = key[: -len(".lora_down.weight")]
        down, up = comfy[key], comfy[f"{stem}.lora_up.weight"]
        scale = comfy[f"{stem}.alpha"].item() / down.shape[0]
        delta = torch.mm(up.flatten(1), down.flatten(1)) * scale
        deltas[key_map[stem]] = delta
    return deltas


@pytest.mark.parametrize("family_id", ["sd1x", "sd2x", "sdxl", *TRANSFORMER_FAMILIES])
def test_comfyui_names_per_family_and_values_round_trip(tmp_path, models, family_id):
    family, pipe, denoiser, slider, names = lora_adapter(models[family_id], family_id)
    source = slider.save(tmp_path / "a.safetensors", {"family": family_id, "targets": names})
    result = export_file(source, tmp_path / "comfy.safetensors", "comfyui")
    comfy = load_file(str(result.path))
    prefix, confirmed = comfy_prefix(family_id, family.denoiser_name)
    assert prefix == EXPECTED_PREFIX[family_id]
    assert bool(result.notes) != confirmed
    # naming rule: <prefix><module>.lora_down.weight / .lora_up.weight / .alpha, every module exactly once
    module = r"[a-z0-9_]+" if prefix.endswith("_") else r"[A-Za-z0-9_.]+"
    rule = re.compile(rf"^{re.escape(prefix)}{module}\.(lora_down\.weight|lora_up\.weight|alpha)$")
    assert all(rule.match(k) for k in comfy), [k for k in comfy if not rule.match(k)][:3]
    key_map = comfy_key_map([n for n, _ in denoiser.named_modules()], prefix)
    stems = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in comfy}
    assert sorted(key_map[s] for s in stems) == sorted(names)
    assert {comfy[k].item() for k in comfy if k.endswith(".alpha")} == {4.0}
    # values: each adapted layer's output at strength 1 equals the base layer with ComfyUI's merged weight
    deltas = merged_weights(comfy, key_map)
    with torch.no_grad():
        for name in names:
            layer = denoiser.get_submodule(name)
            base = layer.base_layer
            x = torch.randn(2, base.in_features) if isinstance(base, torch.nn.Linear) else \
                torch.randn(1, base.in_channels, *([6] * (base.weight.dim() - 2)))
            with slider.strength(1.0):
                ours = layer(x)
            weight = base.weight + deltas[name].reshape(base.weight.shape)
            theirs = torch.nn.functional.linear(x, weight, base.bias) if isinstance(base, torch.nn.Linear) \
                else base._conv_forward(x, weight, base.bias)
            assert torch.allclose(ours, theirs, atol=1e-5), name


def test_unet_round_trip_gives_the_same_model_output(tmp_path, models):
    family, pipe, unet, slider, names = lora_adapter(models["sd1x"], "sd1x")
    source = slider.save(tmp_path / "a.safetensors", {"family": "sd1x", "targets": names})
    comfy = load_file(str(export_file(source, tmp_path / "c.safetensors", "comfyui").path))
    fresh = load_pipeline(family, str(models["sd1x"])).unet
    deltas = merged_weights(comfy, comfy_key_map([n for n, _ in fresh.named_modules()], "lora_unet_"))
    with torch.no_grad():
        for name, delta in deltas.items():
            weight = fresh.get_submodule(name).weight
            weight.add_(delta.reshape(weight.shape))
        x, t = torch.randn(1, 4, 8, 8), torch.tensor([400])
        emb = pipe.encode_prompt("a red square", "cpu", 1, False)[0]
        with slider.strength(1.0):
            ours = unet(x, t, emb).sample
        assert torch.allclose(ours, fresh(x, t, emb).sample, atol=1e-4)


def test_lycoris_export_keeps_lycoris_names_and_reimports(tmp_path, models):
    family = get_family("sd1x")
    pipe = load_pipeline(family, str(models["sd1x"]))
    spec = parse_lycoris_config({"algo": "lokr", "linear_dim": 4, "linear_alpha": 2, "factor": 4}, "x.json")
    slider, report = attach_lycoris(pipe.unet, "unet", spec, ("slider", family.presets["slider"]))
    for p in slider.parameters():
        p.data.add_(torch.randn_like(p) * 0.02)
    source = slider.save(tmp_path / "src" / "a.safetensors", {"family": "sd1x"})
    result = export_file(source, tmp_path / "out" / "comfy.safetensors", "comfyui")
    comfy, original = load_file(str(result.path)), load_file(str(source))
    assert comfy.keys() == original.keys() and not result.notes
    names = {n.replace(".", "_"): n for n, _ in pipe.unet.named_modules()}
    assert sorted(names[k.split(".")[0][len("lycoris_"):]] for k in comfy if k.endswith(".alpha")) \
        == sorted(report.module_names)
    assert not (result.path.parent / CONFIG_NAME).exists()
    fresh = load_pipeline(family, str(models["sd1x"])).unet
    reloaded = load_slider(result.path, fresh, "unet")  # from the keys alone: LyCORIS infers every module
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([400])
    emb = pipe.encode_prompt("a red square", "cpu", 1, False)[0]
    with torch.no_grad(), slider.strength(1.0), reloaded.strength(1.0):
        assert torch.allclose(pipe.unet(x, t, emb).sample, fresh(x, t, emb).sample, atol=1e-5)


def test_lora_format_comfyui_writes_both_files(tmp_path, models):
    root = make_project(tmp_path / "p", models["sd1x"], config={"max_train_steps": 1, "lora_format": "comfyui"})
    path = Trainer(load_project(root)).run()
    comfy = load_file(str(path.with_name("pytorch_lora_weights_comfyui.safetensors")))
    assert len([k for k in comfy if k.endswith(".alpha")]) == 28 and all(k.startswith("lora_unet_") for k in comfy)


def test_export_cli_bad_input_exits_2_and_writes_nothing(tmp_path, models, capsys):
    out = tmp_path / "x.safetensors"
    assert main(["export", "--lora", str(tmp_path / "missing.safetensors"), "--format", "comfyui",
                 "--out", str(out)]) == 2
    assert "no such adapter file" in capsys.readouterr().err
    pickle = tmp_path / "a.ckpt"
    pickle.write_bytes(b"not a tensor file")
    assert main(["export", "--lora", str(pickle), "--format", "comfyui", "--out", str(out)]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--lora", str(pickle), "--format", "kohya", "--out", str(out)])
    assert exit_.value.code == 2
    _, _, _, slider, names = lora_adapter(models["sd1x"], "sd1x")
    source = slider.save(tmp_path / "a.safetensors", {"family": "sd1x"})
    before = source.read_bytes()
    assert main(["export", "--lora", str(source), "--format", "comfyui", "--out", str(source)]) == 2
    assert source.read_bytes() == before
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt", "a.safetensors"]
