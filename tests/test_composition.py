"""Composition (issue #16 item 4): several sliders in one render, each at its own strength."""
import numpy as np
import pytest
import torch

from sliderstudio.cli import main
from sliderstudio.adapters import adapters
from sliderstudio.engine.composition import parse_lora_arg
from sliderstudio.kernel.errors import InputError
from sliderstudio.adapters.lycoris_adapter import attach_lycoris
from sliderstudio.config.lycoris_config import parse_lycoris_config
from sliderstudio.engine.preview import PreviewRenderer
from sliderstudio.adapters.slider_adapter import PeftSlider
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family

PROMPT = "a photo of a red square"
TARGETS = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn2.to_q"]


def lora_file(path, model, seed, targets=TARGETS, std=0.3, family="sd1x"):
    """A PEFT LoRA slider with non-zero B (as after training), saved in our format."""
    fam = get_family("sd1x")
    pipe = load_pipeline(fam, str(model))
    names = [n for n, _ in pipe.unet.named_modules() if any(n.endswith(t) for t in targets)]
    config = adapters.attach_lora(pipe.unet, names, 2, 2.0, seed=seed)
    torch.manual_seed(seed)
    for p in adapters.adapter_parameters(pipe.unet):
        p.data.add_(torch.randn_like(p) * std)
    path.parent.mkdir(parents=True, exist_ok=True)
    return PeftSlider(pipe.unet, "unet", config, type(pipe)).save(path, {"family": family})


def lycoris_file(path, model, seed, std=0.05):
    fam = get_family("sd1x")
    pipe = load_pipeline(fam, str(model))
    spec = parse_lycoris_config({"algo": "lokr", "linear_dim": 4, "linear_alpha": 1,
                                 "apply_preset": {"target_module": ["attn1.to_q", "attn1.to_v", "attn2.to_k"]}},
                                "t.json")
    slider, _ = attach_lycoris(pipe.unet, "unet", spec, ("slider", []), seed)
    torch.manual_seed(seed)
    for p in slider.parameters():
        p.data.add_(torch.randn_like(p) * std)
    path.parent.mkdir(parents=True, exist_ok=True)
    return slider.save(path, {"family": "sd1x"})


@pytest.fixture(scope="module")
def files(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("compose")
    model = tiny_models["sd1x"]
    return {"model": model,
            "A": lora_file(root / "a" / "a.safetensors", model, 1),
            "B": lora_file(root / "b" / "b.safetensors", model, 2),
            "L": lycoris_file(root / "l" / "l.safetensors", model, 3),
            "M": lycoris_file(root / "m" / "m.safetensors", model, 4)}


def arrays(images):
    return [np.asarray(im) for im in images]


def render(model, main_path, companions, strengths):
    renderer = PreviewRenderer(get_family("sd1x"), str(model), main_path)
    renderer.set_companions(companions)
    return arrays(renderer.render(PROMPT, 0, strengths, steps=2, guidance=2.0))


@pytest.mark.parametrize("first, second", [("A", "B"), ("A", "L"), ("L", "A"), ("L", "M")])
def test_two_sliders_reduce_to_one_and_to_the_base(files, first, second):
    """All at 0 = the base bit for bit; the second at 0 = the first alone bit for bit (LoRA and LyCORIS)."""
    model = files["model"]
    base = arrays(PreviewRenderer(get_family("sd1x"), str(model)).render(PROMPT, 0, [0.0], steps=2, guidance=2.0))[0]
    alone = render(model, files[first], [], [0.8, -0.5, 0.0])
    both_second_off = render(model, files[first], [(files[second], 0.0)], [0.8, -0.5, 0.0])
    assert all(np.array_equal(a, b) for a, b in zip(alone, both_second_off))
    assert np.array_equal(both_second_off[2], base)
    assert not np.array_equal(alone[0], base)
    both_on = render(model, files[first], [(files[second], 1.0)], [0.8, 0.0])
    assert not np.array_equal(both_on[0], alone[0])  # the second slider really acts
    assert not np.array_equal(both_on[1], base)
    # the second slider alone at 1 (the first at 0) is the second's own single render (same batch shape)
    second_alone = render(model, files[second], [], [0.3, 1.0])[1]
    assert np.array_equal(both_on[1], second_alone)


def test_strengths_change_without_reloading(files):
    renderer = PreviewRenderer(get_family("sd1x"), str(files["model"]), files["A"])
    renderer.set_companions([(files["B"], 0.5)])
    handle = renderer.companions[0][1]
    renderer.set_companions([(files["B"], -0.5)])
    assert renderer.companions[0][1] is handle and renderer.companions[0][2] == -0.5
    renderer.set_companions([])
    assert renderer.companions == []
    names = {n for layer in adapters.lora_layers(renderer.pipe.unet) for n in layer.lora_A}
    assert names == {"slider"}  # the companion's PEFT adapter is gone


def test_batched_equals_one_image_at_a_time(files):
    """Three sliders (LoRA, LoRA, LyCORIS) in one batch = each row rendered alone (per-sample scales)."""
    renderer = PreviewRenderer(get_family("sd1x"), str(files["model"]), files["A"])
    renderer.set_companions([(files["B"], -0.5), (files["L"], 0.7)])
    together = arrays(renderer.render(PROMPT, 0, [1.0, -1.0], steps=2, guidance=2.0))
    apart = [arrays(renderer.render(PROMPT, 0, [s], steps=2, guidance=2.0))[0] for s in (1.0, -1.0)]
    for a, b in zip(together, apart):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_parse_lora_arg(tmp_path):
    f = tmp_path / "x:y" / "a.safetensors"
    f.parent.mkdir()
    f.write_bytes(b"")
    assert parse_lora_arg(str(f)) == (f, None)
    assert parse_lora_arg(f"{f}:0.8") == (f, 0.8)
    assert parse_lora_arg(f"{f}:-1.5") == (f, -1.5)
    for bad in (f"{f}:", f"{f}:abc", f"{f}:nan", f"{f}0.8", str(tmp_path / "a.pt")):
        with pytest.raises(InputError) as err:
            parse_lora_arg(bad)
        assert err.value.key == "--lora"
    with pytest.raises(InputError, match="no such adapter file"):
        parse_lora_arg(str(tmp_path / "missing.safetensors:0.5"))


def test_cli_composes_two_adapters(files, tmp_path, capsys):
    from PIL import Image

    model = str(files["model"])
    out = tmp_path / "two.png"
    assert main(["preview", "--model", model, "--lora", f"{files['A']}:0.8", "--lora", f"{files['L']}:-0.5",
                 "--prompt", PROMPT, "--steps", "2", "--out", str(out)]) == 0
    expected = render(files["model"], files["A"], [(files["L"], -0.5)], [0.8])[0]
    assert np.array_equal(np.asarray(Image.open(out))[:64, :64], expected)
    sweep = tmp_path / "sweep.png"
    assert main(["preview", "--model", model, "--lora", str(files["A"]), "--lora", f"{files['B']}:0.5",
                 "--prompt", PROMPT, "--strengths", "-1,0,1", "--steps", "2", "--out", str(sweep)]) == 0
    assert Image.open(sweep).size == (3 * 64, 64 + 14)


@pytest.mark.parametrize("args, fragment", [
    (["--lora", "{A}:x"], "--lora"),
    (["--lora", "{A}:0.5", "--lora", "{missing}:0.5"], "missing.safetensors"),
    (["--lora", "{A}", "--lora", "{B}"], "--lora"),
    (["--lora", "{A}:0.5", "--lora", "{foreign}:0.5"], "trained for 'sdxl'"),
])
def test_cli_bad_input_exits_2(files, tmp_path, capsys, args, fragment):
    foreign = tmp_path / "f" / "foreign.safetensors"
    if "{foreign}" in " ".join(args):
        lora_file(foreign, files["model"], 5, family="sdxl")
    fill = {"A": files["A"], "B": files["B"], "missing": tmp_path / "missing.safetensors", "foreign": foreign}
    out = tmp_path / "g.png"
    argv = ["preview", "--model", str(files["model"]), "--family", "sd1x", "--prompt", "x", "--steps", "1",
            "--out", str(out)] + [a.format(**fill) for a in args]
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err
    assert not out.exists()


def test_cli_warns_outside_the_calibrated_range(files, tmp_path, capsys):
    from sliderstudio.adapters.adapter_io import read_metadata, read_tensors
    from sliderstudio.engine.calibration import RANGE_KEY
    from safetensors.torch import save_file
    import json

    calibrated = tmp_path / "cal" / "c.safetensors"
    calibrated.parent.mkdir()
    header = {f"sliderstudio.{k}": json.dumps(v) for k, v in read_metadata(files["A"]).items()
              if k != "lora_adapter_metadata"}
    header["lora_adapter_metadata"] = json.dumps(read_metadata(files["A"])["lora_adapter_metadata"])
    header[f"sliderstudio.{RANGE_KEY}"] = json.dumps([-0.5, 1.0])
    save_file(read_tensors(files["A"]), str(calibrated), metadata=header)
    out = tmp_path / "w.png"
    assert main(["preview", "--model", str(files["model"]), "--lora", f"{calibrated}:-0.9", "--lora",
                 f"{files['B']}:0.2", "--prompt", PROMPT, "--steps", "1", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "-0.9" in err and "-0.5" in err and str(calibrated) in err
    assert out.exists()


def test_swapping_the_main_adapter_keeps_the_companions(files):
    """A new checkpoint while composed (the app's Follow training): the same images as a fresh load."""
    renderer = PreviewRenderer(get_family("sd1x"), str(files["model"]), files["B"])
    renderer.set_companions([(files["L"], 0.6), (files["A"], -0.4)])
    renderer.load_lora(files["M"])   # LoRA → LyCORIS main, beside a LoRA and a LyCORIS companion
    swapped = arrays(renderer.render(PROMPT, 0, [1.0, 0.0], steps=2, guidance=2.0))
    fresh = render(files["model"], files["M"], [(files["L"], 0.6), (files["A"], -0.4)], [1.0, 0.0])
    assert all(np.array_equal(a, b) for a, b in zip(swapped, fresh))
