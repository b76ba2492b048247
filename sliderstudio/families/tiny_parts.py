"""Tiny parts for the transformer families' test models: T5/UMT5, Qwen3 and Mistral-3 text encoders
with offline tokenizers, and VAEs with the latent shift (SD3, Flux) or latent batch-norm (Flux2).

`tiny.py` covers the CLIP side for the UNet families; the flow-matching transformer families need
these as well. Everything is random and small (a selfcheck must take seconds), and no tokenizer
needs SentencePiece or a download: T5's is a Unigram model over the toy word list, Qwen's a
byte-level BPE without merges (one token per character) plus a minimal chat template, Mistral's a
word-level model with a chat template that reads Flux.2's list-of-parts messages.
"""
from __future__ import annotations

import torch

from sliderstudio.families.tiny import WORDS

QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def t5_tokenizer():
    """A T5 tokenizer whose vocabulary is the toy words (pad 0, eos 1, unk 2, as in T5)."""
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -1.0) for w in WORDS]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def t5_encoder(d_model: int = 32, seed: int = 0, umt5: bool = False):
    """A 2-layer T5 (or UMT5, AuraFlow's encoder) with `d_model` output features."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    config = config_cls(vocab_size=len(WORDS) + 3, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2,
                        num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                        decoder_start_token_id=0)
    torch.manual_seed(seed)
    return model_cls(config).eval()


def qwen_tokenizer():
    """A character-level Qwen2 tokenizer with the chat template Flux2 Klein applies to prompts."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2TokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(char, len(vocab))
    tok = Qwen2TokenizerFast(vocab=vocab, merges=[], chat_template=QWEN_CHAT_TEMPLATE)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tok


def qwen3_encoder(hidden: int = 16, layers: int = 28, seed: int = 0):
    """Qwen3 with enough layers for Flux2 Klein's hidden-state taps (layers 9, 18 and 27)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=259, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    return Qwen3ForCausalLM(config).eval()


MISTRAL_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[INST]", "[/INST]")
MISTRAL_CHAT_TEMPLATE = (
    "{% for m in messages %}{% set tag = 'SYSTEM_PROMPT' if m['role'] == 'system' else 'INST' %}[{{ tag }}]"
    "{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "[/{{ tag }}]{% endfor %}"
)


def mistral_tokenizer():
    """Word-level stand-in for Flux.2 dev's Pixtral processor: only its chat-template call is used.

    (The real processor needs torchvision for its image half, which text-to-image never uses.)
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(MISTRAL_SPECIALS)}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    model = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=model, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", chat_template=MISTRAL_CHAT_TEMPLATE)
    tok.add_special_tokens({"additional_special_tokens": list(MISTRAL_SPECIALS[4:])})
    return tok


def mistral3_encoder(hidden: int = 16, layers: int = 30, seed: int = 0):
    """Mistral-3 with enough layers for Flux.2 dev's hidden-state taps (10, 20, 30); a 1-layer vision tower."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig, PixtralVisionConfig

    vision = PixtralVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 head_dim=8, image_size=32, patch_size=16)
    text = MistralConfig(vocab_size=64, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024)
    torch.manual_seed(seed)
    return Mistral3ForConditionalGeneration(Mistral3Config(vision_config=vision, text_config=text,
                                                           image_token_index=63)).eval()


def _vae_blocks() -> dict:
    """Four blocks (8× downsampling, as the real VAEs), few channels."""
    return dict(block_out_channels=(16, 32, 32, 32), in_channels=3, out_channels=3, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)


def flow_vae(latent_channels: int = 4, scaling_factor: float = 1.5, shift_factor: float | None = 0.1,
             seed: int = 0):
    """AutoencoderKL with the scaling and shift the SD3/Flux VAEs apply to latents."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(latent_channels=latent_channels, sample_size=64, scaling_factor=scaling_factor,
                         shift_factor=shift_factor, use_quant_conv=False, use_post_quant_conv=False,
                         **_vae_blocks())


def flux2_vae(latent_channels: int = 4, seed: int = 0):
    """AutoencoderKLFlux2: latents are 2×2-patchified and normalised by its batch-norm statistics."""
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(seed)
    vae = AutoencoderKLFlux2(latent_channels=latent_channels, sample_size=64, **_vae_blocks())
    with torch.no_grad():  # non-trivial statistics, so a wrong normalisation would show in tests
        vae.bn.running_mean.uniform_(-0.2, 0.2)
        vae.bn.running_var.uniform_(0.5, 2.0)
    return vae
