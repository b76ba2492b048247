"""Export to ComfyUI naming (SPEC §8): alpha kept, values round-trip at strength 1, the default second file.

The round trip re-imports the exported file the way ComfyUI's loader reads it: each key stem leads to
one weight (here through the family's naming, inverted over the model's modules; that the names are the
ones ComfyUI maps is checked at full size in test_export_full_size.py), then
W += (alpha / rank) · up @ down merged into a fresh copy of the base weights; its outputs must equal
our adapter's at strength 1.
"""
import re

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.adapters import adapters
from sliderstudio.kernel.errors import InputError
from sliderstudio.engine.export import COMFYUI_NAME, export_file
from sliderstudio.adapters.lycoris_adapter import CONFIG_NAME, attach_lycoris
from sliderstudio.config.lycoris_config import parse_lycoris_config
from sliderstudio.engine.project import load_project
from sliderstudio.adapters.slider_adapter import PeftSlider, load_slider
from sliderstudio.adapters.targets import resolve_on_module
from sliderstudio.engine.trainer import Trainer
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family

TRANSFORMER_FAMILIES = ["sd3", "flux", "z_image", "qwen_image", "wan"]
EXPECTED_PREFIX = {"sd1x": "lora_unet_", "sd2x": "lora_unet_", "sdxl": "lora_unet_", "sd3": "transformer.",
                   "flux": "transformer.", "z_image": "diffusion_model.", "qwen_image": "diffusion_model.",
                   "wan": "diffusion_model."}
# modules whose ComfyUI name differs from the diffusers path (the rest keep it)
RENAMED = {"wan": {"blocks.0.attn1.to_q": "diffusion_model.blocks.0.self_attn.q", "proj_out": "diffusion_model.head.head",
                   "condition_embedder.time_proj": "diffusion_model.time_projection.1"}}


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


def comfy_key_map(module_names, family):
    """ComfyUI key stem → our module, through the family's naming (one module per stem here: no fused weights)."""
    return {family.comfy.key(n).stem: n for n in module_names}


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
    result = export_file(source, tmp_path / "comfy.safetensors", "comfyui", family)
    comfy = load_file(str(result.path))
    prefix = family.comfy.prefix
    assert prefix == EXPECTED_PREFIX[family_id] and not result.notes
    for module, key in RENAMED.get(family_id, {}).items():
        assert f"{key}.lora_down.weight" in comfy and not any(module in k for k in comfy)
    # naming rule: <prefix><module>.lora_down.weight / .lora_up.weight / .alpha, every module exactly once
    module = r"[a-z0-9_]+" if prefix.endswith("_") else r"[A-Za-z0-9_.]+"
    rule = re.compile(rf"^{re.escape(prefix)}{module}\.(lora_down\.weight|lora_up\.weight|alpha)$")
    assert all(rule.match(k) for k in comfy), [k for k in comfy if not rule.match(k)][:3]
    key_map = comfy_key_map([n for n, _ in denoiser.named_modules()], family)
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
    comfy = load_file(str(export_file(source, tmp_path / "c.safetensors", "comfyui", family).path))
    fresh = load_pipeline(family, str(models["sd1x"])).unet
    deltas = merged_weights(comfy, comfy_key_map([n for n, _ in fresh.named_modules()], family))
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
    result = export_file(source, tmp_path / "out" / "comfy.safetensors", "comfyui", family)
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


@pytest.mark.parametrize("lora_format", [None, "comfyui"])
def test_training_writes_the_comfyui_file_next_to_the_diffusers_file_by_default(tmp_path, models, lora_format):
    config = {"max_train_steps": 1} | ({"lora_format": lora_format} if lora_format else {})
    path = Trainer(load_project(make_project(tmp_path / "p", models["sd1x"], config=config))).run()
    comfy, diffusers = load_file(str(path.with_name(COMFYUI_NAME))), load_file(str(path))
    assert len([k for k in comfy if k.endswith(".alpha")]) == 27 and all(k.startswith("lora_unet_") for k in comfy)
    assert len(comfy) == 3 * 27 and len(diffusers) == 2 * 27  # down, up, alpha per module; every module kept
    for key, value in diffusers.items():  # lora_A → lora_down, lora_B → lora_up, same tensors
        module, _, kind = key[len("unet."):].rpartition(".lora_")
        name = "lora_unet_" + module.replace(".", "_") + (".lora_down.weight" if kind == "A.weight" else ".lora_up.weight")
        assert torch.equal(comfy[name], value)


def test_lora_format_diffusers_writes_only_the_diffusers_file(tmp_path, models):
    root = make_project(tmp_path / "p", models["sd1x"], config={"max_train_steps": 1, "lora_format": "diffusers"})
    path = Trainer(load_project(root)).run()
    assert path.exists() and not path.with_name(COMFYUI_NAME).exists()


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
    anonymous = slider.save(tmp_path / "anon.safetensors", {})  # no family metadata: no names to choose
    assert main(["export", "--lora", str(anonymous), "--format", "comfyui", "--out", str(out)]) == 2
    assert "family" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("family_id,mapped", [("sd1x", True), ("flux", True), ("hidream", True),
                                               ("auraflow", False), ("wan", False), ("stable_cascade", False)])
def test_lycoris_comfyui_note_follows_the_familys_trait(family_id, mapped):
    """ComfyUI maps `lycoris_<diffusers path>` keys for some families only (`Family.comfy_lycoris`): the others
    get a note; an adapter whose family is unknown gets it too, and a ControlNet slider is refused."""
    from sliderstudio.engine.export import lycoris_notes

    notes = lycoris_notes({"family": family_id}, get_family(family_id))
    assert notes == [] if mapped else (len(notes) == 1 and f"family '{family_id}'" in notes[0])
    assert len(lycoris_notes({}, None)) == 1
    with pytest.raises(InputError, match="ControlNet"):
        lycoris_notes({"family": family_id, "controlnet": True}, get_family(family_id))


def test_a_lora_without_its_family_has_no_comfyui_names(tmp_path, models):
    _, _, _, slider, names = lora_adapter(models["sd1x"], "sd1x")
    source = slider.save(tmp_path / "a.safetensors", {"targets": names})
    with pytest.raises(InputError, match="names no model family") as err:
        export_file(source, tmp_path / "c.safetensors", "comfyui", None)
    assert err.value.key == "family" and not (tmp_path / "c.safetensors").exists()
    assert export_file(source, tmp_path / "d.safetensors", "diffusers", None).path.exists()


@pytest.fixture(scope="module")
def lumina2(tmp_path_factory):
    return get_family("lumina2").build_tiny(tmp_path_factory.mktemp("lumina2") / "model")


def peft_delta(layer) -> torch.Tensor:
    """ΔW of one PEFT LoRA layer at strength 1, as PEFT computes it (its own scaling)."""
    return layer.scaling["slider"] * layer.lora_B["slider"].weight @ layer.lora_A["slider"].weight


def test_lumina2_fused_qkv_delta_equals_the_stacked_diffusers_deltas(tmp_path, lumina2):
    """ComfyUI holds Lumina 2's q/k/v as one `attention.qkv` weight (here 2 query heads, 1 key/value head):
    the exported LoRA's delta on it is the q, k and v deltas stacked, and the fused layer then gives
    exactly the adapted q, k and v outputs."""
    family, _, denoiser, slider, names = lora_adapter(lumina2, "lumina2")
    source = slider.save(tmp_path / "a.safetensors", {"family": "lumina2", "targets": names})
    comfy = load_file(str(export_file(source, tmp_path / "c.safetensors", "comfyui", family).path))
    blocks = sorted({n.rsplit(".attn.", 1)[0] for n in names})
    assert blocks == ["layers.0", "layers.1", "noise_refiner.0"]
    assert len(comfy) == 3 * 2 * len(blocks)  # qkv + out per block, three tensors each
    x = torch.randn(3, 32)
    for block in blocks:
        stem = f"diffusion_model.{block}.attention.qkv"
        down, up = comfy[f"{stem}.lora_down.weight"], comfy[f"{stem}.lora_up.weight"]
        fused = comfy[f"{stem}.alpha"].item() / down.shape[0] * up @ down
        attn = denoiser.get_submodule(f"{block}.attn")
        layers = [attn.to_q, attn.to_k, attn.to_v]
        assert [layer.base_layer.out_features for layer in layers] == [32, 16, 16]
        assert torch.allclose(fused, torch.cat([peft_delta(layer) for layer in layers]), atol=1e-7)
        native = torch.cat([layer.base_layer.weight for layer in layers]) + fused
        with torch.no_grad(), slider.strength(1.0):
            ours = torch.cat([layer(x) for layer in layers], dim=-1)
        assert torch.allclose(x @ native.T, ours, atol=1e-5)
        out = f"diffusion_model.{block}.attention.out"
        out_delta = comfy[f"{out}.alpha"].item() / 4 * comfy[f"{out}.lora_up.weight"] @ comfy[f"{out}.lora_down.weight"]
        assert comfy[f"{out}.lora_down.weight"].shape[0] == 2 and out_delta.shape == (32, 32)
        assert torch.allclose(out_delta * 2, peft_delta(attn.to_out[0]), atol=1e-7)  # rank 2, alpha 4


def test_a_fused_weight_with_a_missing_part_is_refused_by_name(tmp_path, lumina2, capsys):
    """q and v without k cannot be one LoRA on ComfyUI's fused qkv weight: exit 2, nothing written."""
    family = get_family("lumina2")
    denoiser = load_pipeline(family, str(lumina2)).transformer
    names = ["layers.0.attn.to_q", "layers.0.attn.to_v"]
    config = adapters.attach_lora(denoiser, names, 2, 2)
    adapters.activate(denoiser, adapters.SLIDER)
    source = PeftSlider(denoiser, "transformer", config, family.pipeline_class).save(
        tmp_path / "a.safetensors", {"family": "lumina2", "targets": names})
    out = tmp_path / "c.safetensors"
    assert main(["export", "--lora", str(source), "--format", "comfyui", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "diffusion_model.layers.0.attention.qkv" in err and "layers.0.attn.to_q, layers.0.attn.to_v" in err
    assert not out.exists()
    assert main(["export", "--lora", str(source), "--format", "diffusers", "--out", str(out)]) == 0


def test_a_controlnet_slider_has_no_comfyui_file_exit_2(tmp_path, capsys):
    from safetensors.torch import save_file

    source = tmp_path / "cn.safetensors"
    save_file({"controlnet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 8),
               "controlnet.down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.zeros(8, 2)}, str(source),
              metadata={"sliderstudio.family": '"sd1x"', "sliderstudio.controlnet": "true"})
    out = tmp_path / "c.safetensors"
    assert main(["export", "--lora", str(source), "--format", "comfyui", "--out", str(out)]) == 2
    assert "Control-LoRA" in capsys.readouterr().err and not out.exists()
