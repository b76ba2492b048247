"""Tiny language-model text encoders and word-level tokenizers for tests and `selfcheck`, built offline.

The newer families condition on decoder LLMs (Qwen2.5-VL, Qwen3, Gemma2, Llama) and T5. Their real
tokenizers are BPE / SentencePiece files that cannot be downloaded here, so each tiny pipeline gets a
word-level `tokenizers` model wrapped in `PreTrainedTokenizerFast` (it reloads from tokenizer.json
exactly; the model-specific classes would rebuild their own BPE and lose the vocabulary). Prompt
templates matter: pipelines such as Qwen-Image drop a fixed number of template tokens, so the
pre-tokenizer splits like the real one does on those templates (words, punctuation, newlines).
"""
from __future__ import annotations

import torch

from sliderstudio.families.tiny import WORDS

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|endoftext|>")
VOCAB_SIZE = 64  # > len(SPECIALS) + 1 + len(WORDS); the models' embedding tables use this size


def word_tokenizer(max_length: int = 64, pad: str = "<|endoftext|>", eos: str = "<|im_end|>",
                   bos: str | None = None, append_eos: bool = False, chat: bool = False):
    """A word-level fast tokenizer: every word of `tiny.WORDS` is one token, anything else is <unk>."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    vocab["\n"] = len(vocab)
    for word in WORDS:
        vocab[word] = len(vocab)
    model = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[ \t]+"), "removed"), pre_tokenizers.Split("\n", "isolated"),
        pre_tokenizers.Punctuation("isolated")])
    if append_eos:  # T5 ends every sequence with </s>
        model.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, vocab[eos])])
    tok = PreTrainedTokenizerFast(tokenizer_object=model, unk_token="<unk>", pad_token=pad, eos_token=eos,
                                  bos_token=bos, additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tok.model_max_length = max_length
    tok.padding_side = "right"
    if chat:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def _seeded(seed: int, build):
    """Build under a fixed seed, so the same seed always saves the same tiny weights."""
    torch.manual_seed(seed)
    return build().eval()


def _decoder(hidden: int, layers: int) -> dict:
    """The sizes every tiny decoder LLM shares: two query heads, one key/value head (grouped attention)."""
    return dict(vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024)


def tiny_qwen3(hidden: int = 32, layers: int = 2, seed: int = 0):
    """Z-Image's text encoder family (Qwen3Model: hidden states, no LM head)."""
    from transformers import Qwen3Config, Qwen3Model

    cfg = Qwen3Config(**_decoder(hidden, layers), head_dim=hidden // 2, pad_token_id=SPECIALS.index("<|endoftext|>"))
    return _seeded(seed, lambda: Qwen3Model(cfg))


def tiny_gemma2(hidden: int = 32, layers: int = 2, seed: int = 0):
    """Lumina2's text encoder family (Gemma2Model)."""
    from transformers import Gemma2Config, Gemma2Model

    cfg = Gemma2Config(**_decoder(hidden, layers), head_dim=hidden // 2, sliding_window=64,
                       pad_token_id=SPECIALS.index("<pad>"), bos_token_id=SPECIALS.index("<s>"),
                       eos_token_id=SPECIALS.index("</s>"))
    return _seeded(seed, lambda: Gemma2Model(cfg))


def tiny_llama(hidden: int = 32, layers: int = 2, seed: int = 0):
    """HiDream's Llama 3.1 text encoder family (LlamaForCausalLM; all hidden states are used)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    end = SPECIALS.index("</s>")  # the pipeline pads Llama with its end token
    cfg = LlamaConfig(**_decoder(hidden, layers), pad_token_id=end, bos_token_id=SPECIALS.index("<s>"), eos_token_id=end)
    return _seeded(seed, lambda: LlamaForCausalLM(cfg))


def tiny_t5(d_model: int = 32, seed: int = 0):
    """HiDream's T5 encoder family (encoder only, one block)."""
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=VOCAB_SIZE, d_model=d_model, d_kv=d_model // 2, d_ff=2 * d_model, num_layers=1,
                   num_heads=2, relative_attention_num_buckets=8, pad_token_id=SPECIALS.index("<pad>"),
                   eos_token_id=SPECIALS.index("</s>"), decoder_start_token_id=SPECIALS.index("<pad>"))
    return _seeded(seed, lambda: T5EncoderModel(cfg))


def tiny_qwen25_vl(hidden: int = 32, layers: int = 2, seed: int = 0):
    """Qwen-Image's and Kandinsky 5's text encoder (Qwen2.5-VL; the vision tower is tiny and unused)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = dict(**_decoder(hidden, layers), rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
                pad_token_id=SPECIALS.index("<|endoftext|>"), bos_token_id=SPECIALS.index("<s>"),
                eos_token_id=SPECIALS.index("<|im_end|>"))
    vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=hidden,
                  patch_size=2, spatial_merge_size=1, temporal_patch_size=1, fullatt_block_indexes=[0])
    cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision)
    return _seeded(seed, lambda: Qwen2_5_VLForConditionalGeneration(cfg))


def tiny_clip_long(positions: int, projection: bool = False, hidden: int = 16, seed: int = 0):
    """A one-layer CLIP text encoder with room for `positions` tokens (pipelines pad CLIP to 77, HiDream to 128)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(WORDS) + 3, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=positions,
                         projection_dim=hidden, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return _seeded(seed, lambda: (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg))
