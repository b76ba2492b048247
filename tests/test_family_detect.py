"""The family is read from the files: model_index.json, checkpoint key layout, adapter metadata; a
`--family` / `model_family` that contradicts them is an exit-2 error naming both."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import make_project
from sliderstudio.cli import main
from sliderstudio.config.config import parse_train_config
from sliderstudio.kernel.errors import InputError
from sliderstudio.families.detect import (
    choose_family, config_family, detect_adapter, detect_checkpoint, detect_model, family_for,
)


def model_folder(root: Path, class_name: str, **configs: dict) -> Path:
    """Just the JSON a diffusers folder carries: detection needs no weights."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": class_name, "_diffusers_version": "0.42.1"}))
    for sub, config in configs.items():
        name = "scheduler_config.json" if sub == "scheduler" else "config.json"
        (root / sub).mkdir(exist_ok=True)
        (root / sub / name).write_text(json.dumps(config))
    return root


def adapter_file(path: Path, family: str | None) -> Path:
    meta = {"sliderstudio.family": json.dumps(family)} if family else {}
    save_file({"unet.x.lora_A.weight": torch.zeros(2, 2)}, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("class_name,configs,family,flavour", [
    ("StableDiffusionXLPipeline", {}, "sdxl", None),
    ("StableDiffusion3Pipeline", {}, "sd3", None),
    ("FluxPipeline", {"transformer": {"guidance_embeds": False}}, "flux", "schnell"),
    ("FluxPipeline", {"transformer": {"guidance_embeds": True}}, "flux", "dev"),
    ("Flux2KleinPipeline", {}, "flux2", None),
    ("ZImagePipeline", {}, "z_image", None),
    ("QwenImagePipeline", {}, "qwen_image", None),
    ("Kandinsky5T2IPipeline", {}, "kandinsky5", None),
    ("WanPipeline", {}, "wan", None),
    ("StableDiffusionPipeline", {"unet": {"cross_attention_dim": 768}}, "sd1x", None),
    ("StableDiffusionPipeline", {"unet": {"cross_attention_dim": 1024}}, "sd2x", "epsilon"),
    ("StableDiffusionPipeline", {"scheduler": {"prediction_type": "v_prediction"}}, "sd2x", "v-prediction"),
    # a custom text width names neither: the scheduler decides, as with no width at all
    ("StableDiffusionPipeline", {"unet": {"cross_attention_dim": 1280},
                                 "scheduler": {"prediction_type": "v_prediction"}}, "sd2x", "v-prediction"),
    ("StableDiffusionPipeline", {"unet": {"cross_attention_dim": 1280}}, "sd1x", None),
])
def test_model_index_names_the_family(tmp_path, class_name, configs, family, flavour):
    found = detect_model(str(model_folder(tmp_path / "m", class_name, **configs)))
    assert (found.family, found.flavour) == (family, flavour)
    assert found.source.endswith("model_index.json") and class_name in found.how


def test_sd1_and_sd2_share_a_pipeline_so_either_may_be_asked_for(tmp_path):
    folder = model_folder(tmp_path / "m", "StableDiffusionPipeline")
    found = detect_model(str(folder))
    assert found.family == "sd1x" and found.also == ("sd2x",)
    assert choose_family("sd2x", [found])[0] == "sd2x"
    with pytest.raises(InputError, match="'sdxl'"):
        choose_family("sdxl", [found])


def test_stable_cascade_split_layout_and_unknown_sources(tmp_path):
    cascade = tmp_path / "cascade"
    model_folder(cascade / "prior", "StableCascadePriorPipeline")
    (cascade / "decoder").mkdir()
    assert detect_model(str(cascade)).family == "stable_cascade"
    odd = model_folder(tmp_path / "odd", "SomeVideoPipeline")
    found = detect_model(str(odd))
    assert not found.known and "'SomeVideoPipeline' is not a family here" in found.reason
    assert not detect_model(str(tmp_path / "nothing-here")).known
    hub = detect_model("some-org/some-model")  # offline, not cached: cannot tell, never a download
    assert not hub.known and "not in the local cache" in hub.reason
    assert detect_model("sliderstudio:toy").family == "sd1x"


@pytest.mark.parametrize("tensors,family,flavour", [
    ({"conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (4,),
      "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (4, 4)}, "sdxl", None),
    ({"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (4, 1024),
      "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (4, 4)}, "sd2x", None),
    ({"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (4, 768),
      "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (4, 4)}, "sd1x", None),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": (4,), "img_in.weight": (8, 64)}, "flux", "schnell"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale": (4,), "img_in.weight": (8, 64),
      "guidance_in.in_layer.bias": (8,)}, "flux", "dev"),
])
def test_single_file_key_layout(tmp_path, tensors, family, flavour):
    path = tmp_path / "model.safetensors"
    save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, str(path))
    found = detect_checkpoint(path)
    assert (found.family, found.flavour) == (family, flavour)
    assert found.how.startswith("checkpoint keys")


def test_single_file_that_says_nothing(tmp_path):
    path = tmp_path / "mystery.safetensors"
    save_file({"some.weight": torch.zeros(2)}, str(path))
    assert not detect_checkpoint(path).known
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 4)
    assert "not a readable safetensors file" in detect_checkpoint(tmp_path / "junk.safetensors").reason
    ours = adapter_file(tmp_path / "slider.safetensors", "sdxl")
    assert "adapter, not a base model" in detect_model(str(ours)).reason


def test_adapter_metadata(tmp_path):
    assert detect_adapter(adapter_file(tmp_path / "a.safetensors", "sdxl")).family == "sdxl"
    assert detect_adapter(adapter_file(tmp_path / "alias.safetensors", "sd-xl")).family == "sdxl"
    bare = detect_adapter(adapter_file(tmp_path / "b.safetensors", None))
    assert not bare.known and "records no family" in bare.reason


def test_sources_that_disagree_or_cannot_tell(tmp_path):
    xl = model_folder(tmp_path / "xl", "StableDiffusionXLPipeline")
    sd15 = adapter_file(tmp_path / "sd.safetensors", "sd1x")
    with pytest.raises(InputError) as err:
        family_for(str(xl), sd15)
    assert "disagree" in str(err.value) and "'sdxl'" in str(err.value) and "'sd1x'" in str(err.value)
    with pytest.raises(InputError) as err:
        family_for(str(xl), None, "flux")
    text = str(err.value)
    assert "--family is 'flux' but the files say 'sdxl'" in text and str(xl / "model_index.json") in text
    with pytest.raises(InputError, match="key '--model': no such model folder or file"):
        family_for(str(tmp_path / "nowhere"), None, "sdxl")
    with pytest.raises(InputError, match="cannot be read from the files"):
        family_for("some-org/uncached-model", None)
    assert family_for("some-org/uncached-model", None, "sdxl")[0] == "sdxl"  # nothing contradicts it
    family, note = family_for(str(xl), adapter_file(tmp_path / "x.safetensors", "sdxl"))
    assert family == "sdxl" and "model_index.json" in note and "adapter metadata" in note


def test_config_family_reads_or_checks(tmp_path):
    xl = model_folder(tmp_path / "xl", "StableDiffusionXLPipeline")
    unset, _ = parse_train_config({"pretrained_model_name_or_path": str(xl)}, "config.json")
    family, note = config_family(unset, "config.json")
    assert family == "sdxl" and "model_family not set" in note
    wrong, _ = parse_train_config({"pretrained_model_name_or_path": str(xl), "model_family": "sd1x"}, "config.json")
    with pytest.raises(InputError) as err:
        config_family(wrong, "config.json")
    assert "key 'model_family'" in str(err.value) and "'sd1x'" in str(err.value) and "'sdxl'" in str(err.value)


def test_train_with_a_contradicting_model_family_exits_2(tmp_path, capsys, tiny_models):
    root = make_project(tmp_path, tiny_models["sdxl"], family="flux")
    assert main(["train", "--config", str(root)]) == 2
    err = capsys.readouterr().err
    assert "key 'model_family'" in err and "'flux'" in err and "'sdxl'" in err
    assert not (root / "output" / "pytorch_lora_weights.safetensors").exists()


def test_preview_reads_the_family_from_the_folder(tmp_path, capsys, tiny_models):
    out = tmp_path / "grid.png"
    assert main(["preview", "--model", str(tiny_models["sdxl"]), "--prompt", "a red square", "--strengths", "0",
                 "--steps", "1", "--size", "64", "--out", str(out)]) == 0
    assert "family 'sdxl' read from model_index.json" in capsys.readouterr().err and out.exists()


def test_preview_mismatch_exits_2_naming_both(tmp_path, capsys, tiny_models):
    out = tmp_path / "grid.png"
    assert main(["preview", "--model", str(tiny_models["sdxl"]), "--family", "sd1x", "--prompt", "x",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--family is 'sd1x' but the files say 'sdxl'" in err and not out.exists()
    adapter = adapter_file(tmp_path / "xl.safetensors", "sdxl")
    assert main(["preview", "--model", str(tiny_models["sd1x"]), "--lora", str(adapter), "--prompt", "x",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "disagree" in err and "'sd1x'" in err and "'sdxl'" in err and str(adapter) in err


def test_targets_without_family(tiny_models, capsys):
    assert main(["targets", "--model", str(tiny_models["sdxl"]), "--preset", "slider"]) == 0
    captured = capsys.readouterr()
    assert "family 'sdxl' read from" in captured.err and "conv_in" in captured.out
    assert main(["targets", "--model", str(tiny_models["sdxl"]), "--family", "wan"]) == 2
    assert "--family is 'wan' but the files say 'sdxl'" in capsys.readouterr().err
    assert main(["targets", "--model", str(tiny_models["sdxl"]), "--family", "sd9"]) == 2
    assert "key '--family': unknown model family 'sd9' (expected one of " in capsys.readouterr().err


def test_plan_checks_model_family_against_the_model(tmp_path, capsys, tiny_models):
    root = make_project(tmp_path, tiny_models["sdxl"], family="sd3")
    assert main(["plan", "--config", str(root), "--batches", "1"]) == 2
    err = capsys.readouterr().err
    assert "key 'model_family'" in err and "'sd3'" in err and "'sdxl'" in err


def test_each_family_declares_its_own_single_file_types():
    """The key-layout table lives on the families: every type one family claims is a type diffusers
    can infer, no two families claim one, and the flavour a type means is one the family has."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS
    from sliderstudio.families.registry import FAMILIES

    claimed: dict[str, str] = {}
    for family in FAMILIES.values():
        for model_type, flavour in family.single_file_types.items():
            assert model_type in DIFFUSERS_DEFAULT_PIPELINE_PATHS, (family.id, model_type)
            assert model_type not in claimed, (model_type, claimed.get(model_type), family.id)
            assert flavour is None or flavour in family.flavours, (family.id, model_type, flavour)
            claimed[model_type] = family.id
    assert claimed["z-image-turbo"] == "z_image" and claimed["sd35_large"] == "sd3"
    assert claimed["flux-2-dev"] == "flux2" and claimed["inpainting_v2"] == "sd2x"


@pytest.mark.parametrize("class_name,width,family,also", [
    ("StableDiffusionImg2ImgPipeline", 1024, "sd2x", ("sd1x",)),
    ("StableDiffusionImg2ImgPipeline", 768, "sd1x", ("sd2x",)),
    ("StableDiffusionControlNetPipeline", 1024, "sd2x", ("sd1x",)),
    ("StableDiffusionXLImg2ImgPipeline", 2048, "sdxl", ()),
    ("Lumina2Text2ImgPipeline", None, "lumina2", ()),
])
def test_related_pipeline_folders_are_told_apart_by_their_configs(tmp_path, class_name, width, family, also):
    """A folder saved by a pipeline class two families share is read by the family whose configs match
    (an SD 2.x img2img folder is SD 2.x, not the first family that lists the class)."""
    configs = {"unet": {"cross_attention_dim": width}} if width else {}
    found = detect_model(str(model_folder(tmp_path / "m", class_name, **configs)))
    assert (found.family, found.also) == (family, also)
