"""Interference of two sliders (issue #16 item 4): weight-delta overlap and measured crosstalk."""
import json
import time
from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import save_file

from sliderstudio.cli import main
from sliderstudio.kernel.errors import InputError
from sliderstudio.reports.interference import delta_overlap, interference_report, lora_file_deltas


def hand_lora(path, modules, alpha=2.0):
    """A LoRA file from explicit (A, B) per module, in our naming (unet.<module>.lora_A.weight)."""
    tensors = {}
    for name, (a, b) in modules.items():
        tensors[f"unet.{name}.lora_A.weight"] = a.clone().contiguous()
        tensors[f"unet.{name}.lora_B.weight"] = b.clone().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"sliderstudio.alpha": json.dumps(alpha),
                                            "sliderstudio.rank": json.dumps(2), "sliderstudio.family": '"sd1x"'})
    return path


def e(i, n=4):
    return torch.eye(n)[i]


def test_identical_orthogonal_and_opposite_deltas(tmp_path):
    b = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])   # out 3, rank 2
    a1 = torch.stack([e(0), e(3)])                            # rank 2, in 4
    a2 = torch.stack([e(1), e(2)])                            # rows orthogonal to a1's
    m = {"q": (a1, b), "k": (a1, 3 * b)}
    f_a = hand_lora(tmp_path / "a.safetensors", m)
    same = delta_overlap(lora_file_deltas(f_a), lora_file_deltas(f_a))
    assert same["shared_modules"] == 2 and same["weighted_cosine"] == pytest.approx(1.0)
    f_o = hand_lora(tmp_path / "o.safetensors", {"q": (a2, b), "k": (a2, b)})
    ortho = delta_overlap(lora_file_deltas(f_a), lora_file_deltas(f_o))
    assert ortho["weighted_cosine"] == pytest.approx(0.0, abs=1e-12)
    assert [x["cosine"] for x in ortho["modules"]] == pytest.approx([0.0, 0.0], abs=1e-12)
    f_n = hand_lora(tmp_path / "n.safetensors", {"q": (a1, -b), "v": (a1, b)})
    opposite = delta_overlap(lora_file_deltas(f_a), lora_file_deltas(f_n))
    assert opposite["shared_modules"] == 1 and opposite["only_a"] == 1 and opposite["only_b"] == 1
    assert opposite["modules"][0]["cosine"] == pytest.approx(-1.0)
    # weighted mean: q identical (norm² = 5·s²), k orthogonal (norm 3·√5·s × √5·s) → 5 / (5 + 15) = 0.25
    f_m = hand_lora(tmp_path / "m.safetensors", {"q": (a1, b), "k": (a2, b)})
    mixed = delta_overlap(lora_file_deltas(f_a), lora_file_deltas(f_m))
    assert mixed["weighted_cosine"] == pytest.approx(0.25)
    assert mixed["mean_abs_cosine"] == pytest.approx(0.5)
    # ΔW = B·A·alpha/rank: alpha 2, rank 2 → B·A itself
    assert torch.equal(lora_file_deltas(f_a)["q"], b @ a1)


def test_report_cli_two_adapters_and_bad_input(tmp_path, capsys):
    b = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    f_a = hand_lora(tmp_path / "a.safetensors", {"q": (torch.stack([e(0), e(3)]), b)})
    f_b = hand_lora(tmp_path / "b.safetensors", {"q": (torch.stack([e(0), e(1)]), b)})
    assert main(["report", "--lora", str(f_a), "--lora", str(f_b), "--no-quality", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["overlap"]["weighted_cosine"] == pytest.approx(1.0)   # B's second column is 0: same ΔW
    assert out["crosstalk"] is None
    assert main(["report", "--lora", str(f_a), "--lora", str(f_b), "--no-quality"]) == 0
    assert "weighted cosine +1.000" in capsys.readouterr().out
    assert main(["report", "--lora", str(f_a), "--lora", str(f_b), "--lora", str(f_a), "--no-quality"]) == 2
    assert "--lora" in capsys.readouterr().err
    assert main(["report", "--lora", str(f_a), "--lora", str(tmp_path / "none.safetensors"), "--no-quality"]) == 2
    assert "none.safetensors" in capsys.readouterr().err
    wide = hand_lora(tmp_path / "w.safetensors", {"q": (torch.eye(5)[:2], torch.ones(3, 2))})
    assert main(["report", "--lora", str(f_a), "--lora", str(wide), "--no-quality"]) == 2
    assert "different shapes" in capsys.readouterr().err


def test_lycoris_delta_needs_the_model_and_matches_itself(tmp_path, tiny_models):
    from tests.test_composition import lora_file, lycoris_file

    lyc = lycoris_file(tmp_path / "l" / "l.safetensors", tiny_models["sd1x"], 3)
    lora = lora_file(tmp_path / "a" / "a.safetensors", tiny_models["sd1x"], 1)
    with pytest.raises(InputError, match="--model"):
        interference_report(lyc, lora, measure=False)
    from sliderstudio.adapters.adapter_io import read_metadata

    targets = read_metadata(lyc)["targets"]
    same = interference_report(lyc, lyc, str(tiny_models["sd1x"]), "sd1x", measure=False)["overlap"]
    assert same["shared_modules"] == len(targets) == 12
    assert same["weighted_cosine"] == pytest.approx(1.0, abs=1e-6)
    mixed = interference_report(lora, lyc, str(tiny_models["sd1x"]), "sd1x", measure=False)["overlap"]
    # LoRA on attn1.to_q/k/v + attn2.to_q, LyCORIS on attn1.to_q/v + attn2.to_k: shared are attn1.to_q/v
    shared = [t for t in targets if t.endswith(("attn1.to_q", "attn1.to_v"))]
    assert (mixed["shared_modules"], mixed["only_b"]) == (len(shared), len(targets) - len(shared))
    assert {m["module"] for m in mixed["modules"]} == set(shared)
    assert abs(mixed["weighted_cosine"]) < 0.2   # independent random deltas


@contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory):
    """Two short toy sliders: size (area) and brightness; no calibration (the attribute is found)."""
    from sliderstudio.engine.project import load_project
    from sliderstudio.engine.trainer import Trainer
    from sliderstudio.toy.demo_project import write_demo_project

    root = tmp_path_factory.mktemp("pair")
    out = {}
    t0 = time.perf_counter()
    with one_thread():
        for concept in ("size", "brightness"):
            project = write_demo_project(root / concept, concept=concept, max_train_steps=80,
                                         config={"validation_steps": 0, "slider_calibration": False,
                                                 "learning_rate": 0.003})  # short run: the faster rate
            out[concept] = Trainer(load_project(project), lambda e: None).run()
    out["train_s"] = time.perf_counter() - t0
    return out


@pytest.mark.slow   # trains two toy sliders (about 55 s) and renders 24 images at 20 steps
def test_toy_crosstalk_of_size_and_brightness(toy_pair, capsys, tmp_path):
    from sliderstudio.reports.interference import format_interference

    with one_thread():
        assert main(["report", "--lora", str(toy_pair["size"]), "--lora", str(toy_pair["brightness"]),
                     "--seeds", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    print(format_interference(report), f"\ntraining both: {toy_pair['train_s']:.0f} s")
    ct = report["crosstalk"]
    assert ct["images"] == 4 * 1 * 6
    assert (ct["attribute_a"], ct["attribute_b"]) == ("area", "brightness")
    assert ct["a_moves_own"] > 0.05 and ct["b_moves_own"] > 0.05     # each slider moves its own attribute
    assert ct["leak_b_into_a"] < 0.5 and ct["leak_a_into_b"] < 0.5   # far less than the other's own move
    assert report["overlap"]["shared_modules"] > 0
    assert -1.0 <= report["overlap"]["weighted_cosine"] <= 1.0
    text = format_interference(report)
    assert "moves its area" in text and "moves its brightness" in text and "leak" in text
