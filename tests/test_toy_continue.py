"""Continuing the toy model's denoiser training (`train_base --init-from`): what changes, what is kept,
what the log says, and that the same command gives the same weights."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sliderstudio.kernel.resources import toy_model_dir
from sliderstudio.toy import train_base

MODEL = toy_model_dir()
pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").is_file(), reason="toy model not built")


@pytest.fixture()
def small_start(tmp_path):
    """A copy of the shipped model whose log asks for a 64-image pool (the test's cost, not the model's)."""
    start = tmp_path / "start"
    shutil.copytree(MODEL, start)
    log = json.loads((start / "training_log.json").read_text())
    (start / "training_log.json").write_text(json.dumps({**log, "pool_size": 64}))
    return start


def _weights(folder, part):
    return load_file(str(next((folder / part).glob("*.safetensors"))))


def test_continued_run_trains_the_denoiser_keeps_the_vae_and_logs_both_runs(small_start, tmp_path):
    out = tmp_path / "out"
    log = train_base.continue_training(out, small_start, steps=3, seed=5, lr=1e-4, threads=1)
    before, after = _weights(small_start, "unet"), _weights(out, "unet")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(a, b) for a, b in zip(_weights(small_start, "vae").values(), _weights(out, "vae").values()))
    assert log["continued"]["steps_done"] == 3 and log["continued"]["lr"] == 1e-4 and log["complete"]
    first = json.loads((small_start / "training_log.json").read_text())
    depth = train_base._continuations(first)
    start_dir = f"DIR{depth + 1}" if depth else "DIR"
    assert f"--out DIR{depth + 2} --init-from {start_dir} --steps 3 --seed 5" in log["continued"]["reproduce"]
    assert log["continued"].get("previous") == train_base.with_world(first).get("continued")  # the chain is kept
    assert log["reproduce"] == first["reproduce"] and log["unet"] == first["unet"]
    assert log["minutes"] == first["minutes"] and log["continued"]["minutes"] >= 0
    assert not any("_name_or_path" in json.loads(c.read_text()) for c in out.glob("*/config.json"))
    vae_cfg = json.loads((out / "vae" / "config.json").read_text())
    assert vae_cfg["scaling_factor"] == json.loads((small_start / "vae" / "config.json").read_text())["scaling_factor"]


def test_same_command_same_weights_and_stop_after_is_a_snapshot(small_start, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train_base.continue_training(a, small_start, steps=2, seed=3, threads=1)
    train_base.continue_training(b, small_start, steps=2, seed=3, threads=1)
    wa, wb = _weights(a, "unet"), _weights(b, "unet")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    part = tmp_path / "part"
    log = train_base.continue_training(part, small_start, steps=4, seed=3, threads=1, stop_after=1)
    assert not log["complete"] and log["continued"]["steps_done"] == 1
    assert log["continued"]["reproduce"].endswith("--stop-after 1")


def test_init_from_a_folder_it_did_not_write_is_refused(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="training_log.json"):
        train_base.continue_training(tmp_path / "o", tmp_path, steps=1)
    with pytest.raises(SystemExit) as exc:
        train_base.main(["--out", str(tmp_path / "o"), "--init-from", str(MODEL)])
    assert exc.value.code == 2 and "--init-from needs --steps" in capsys.readouterr().err


def test_a_continued_run_after_a_continued_run_keeps_the_chain(small_start, tmp_path):
    once, twice = tmp_path / "once", tmp_path / "twice"
    first = train_base.continue_training(once, small_start, steps=1, seed=1, threads=1)
    log = json.loads((once / "training_log.json").read_text())
    (once / "training_log.json").write_text(json.dumps({**log, "pool_size": 64}))
    second = train_base.continue_training(twice, once, steps=1, seed=2, threads=1)
    depth = train_base._continuations(second)
    assert depth == train_base._continuations(first) + 1
    assert second["continued"]["previous"]["seed"] == 1 and second["continued"]["seed"] == 2
    assert f"--out DIR{depth + 1} --init-from DIR{depth} " in second["continued"]["reproduce"]


def _encoder(vocab_size: int, seed: int):
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(train_base.text_encoder_config(vocab_size)).eval()


def test_a_new_world_word_keeps_every_learned_token_row():
    from sliderstudio.toy.vocab import build_tokenizer, world_words

    new_tok = build_tokenizer(world_words(2))
    old_tok = build_tokenizer(world_words(1))  # the first world's 17 words: the first model's 105 tokens
    old_vocab, new_vocab = old_tok.get_vocab(), new_tok.get_vocab()
    assert len(old_vocab) == 105 and len(new_vocab) > len(old_vocab)
    old = _encoder(len(old_vocab), seed=0)
    fresh = train_base.match_vocabulary(old, old_vocab, new_vocab, seed=0)
    rows_old, rows_new = old.get_input_embeddings().weight, fresh.get_input_embeddings().weight
    assert rows_new.shape[0] == len(new_vocab)
    for token, i in old_vocab.items():
        assert torch.equal(rows_new[new_vocab[token]], rows_old[i]), token
    assert rows_new[new_vocab["slightly</w>"]].abs().sum() > 0
    text = "a large red circle on a blue background"  # no new word: the same hidden states
    with torch.no_grad():
        a = old(old_tok(text, return_tensors="pt").input_ids)[0]
        b = fresh(new_tok(text, return_tensors="pt").input_ids)[0]
    assert torch.allclose(a, b, atol=1e-6)
    assert train_base.added_words(old_vocab, world_words(2)) == ["slightly"]
    assert train_base.match_vocabulary(old, old_vocab, dict(old_vocab), seed=0) is old


def test_new_words_that_change_the_merges_keep_every_word_row():
    """World 2 → 5 adds "huge" and "tiny", which changes the learned merges: some intermediate pieces
    (e.g. "arg") are no longer tokens, but every word of the old world is still one token and keeps
    its learned row, so an old prompt encodes exactly as before."""
    from sliderstudio.toy.vocab import build_tokenizer, world_words

    old_tok, new_tok = build_tokenizer(world_words(2)), build_tokenizer(world_words(5))
    old_vocab, new_vocab = old_tok.get_vocab(), new_tok.get_vocab()
    assert set(old_vocab) - set(new_vocab)  # the merges did change
    assert train_base.added_words(old_vocab, world_words(5)) == ["huge", "tiny"]
    old = _encoder(len(old_vocab), seed=0)
    fresh = train_base.match_vocabulary(old, old_vocab, new_vocab, seed=0)
    rows_old, rows_new = old.get_input_embeddings().weight, fresh.get_input_embeddings().weight
    for word in world_words(2):
        token = word + "</w>"
        assert torch.equal(rows_new[new_vocab[token]], rows_old[old_vocab[token]]), word
    text = "a slightly large red circle on a blue background"
    with torch.no_grad():
        a = old(old_tok(text, return_tensors="pt").input_ids)[0]
        b = fresh(new_tok(text, return_tensors="pt").input_ids)[0]
    assert torch.allclose(a, b, atol=1e-6)


def test_a_log_from_before_world_versions_replays_world_1():
    old = {"reproduce": "python -m sliderstudio.toy.train_base --out DIR --seed 0 --steps 2", "unet": {},
           "continued": {"seed": 1, "reproduce": "python -m sliderstudio.toy.train_base --out DIR2 --init-from DIR"}}
    log = train_base.with_world(old)
    assert log["world"] == 1 and log["reproduce"].endswith(" --world 1")
    assert log["continued"]["world"] == 1 and log["continued"]["reproduce"].endswith("--init-from DIR --world 1")
    assert train_base.with_world(log) is log  # already versioned: unchanged


def test_quality_reads_the_world_a_model_was_last_trained_on(tmp_path):
    from sliderstudio.toy.quality import model_world
    from sliderstudio.toy.world import WORLD

    assert model_world(tmp_path) == WORLD                      # no log: today's world
    (tmp_path / "training_log.json").write_text(json.dumps({"reproduce": "x"}))
    assert model_world(tmp_path) == 1                          # a log from before world versions
    (tmp_path / "training_log.json").write_text(json.dumps({"world": 1, "reproduce": "x",
                                                            "continued": {"world": 2, "reproduce": "y"}}))
    assert model_world(tmp_path) == 2
    assert model_world(MODEL) == json.loads((MODEL / "training_log.json").read_text())["continued"]["world"]
    # the shipped model knows the captions the demo writes: it was last trained on today's world
    assert model_world(MODEL) == WORLD


def test_matching_a_vocabulary_leaves_the_saved_encoder_as_it_was():
    from sliderstudio.toy.vocab import build_tokenizer, world_words

    old_vocab, new_vocab = build_tokenizer(world_words(1)).get_vocab(), build_tokenizer().get_vocab()
    old = _encoder(len(old_vocab), seed=1)
    train_base.match_vocabulary(old, old_vocab, new_vocab, seed=0)
    assert old.config.vocab_size == len(old_vocab) == old.get_input_embeddings().weight.shape[0]
