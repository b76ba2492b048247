"""The toy world's vocabulary and a word-level CLIP tokenizer built offline.

Why a real `CLIPTokenizer`: the bundled model must load through exactly the code path of any
Stable Diffusion 1.x folder (`StableDiffusionPipeline.from_pretrained`), so its tokenizer has to
be a CLIP BPE tokenizer. We want one token per word (the world has ~20 words), so the BPE merges
are learned here from the word list itself until every word is a single symbol.

transformers 5.23 notes: merges must be given as tuples, and `CLIPTokenizer(vocab_file=...,
merges_file=...)` silently ignores the files, so the tokenizer is built from in-memory dicts.
"""

from __future__ import annotations

from collections import Counter

from transformers import CLIPTokenizer

from sliderstudio.toy.world import BACKGROUND_COLOURS, KINDS, SHAPE_COLOURS, WORLD, WORLDS

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END = "</w>"
#: Token sequence length (BOS + up to 14 words + EOS/padding). The longest caption has 9 words.
MAX_LENGTH = 16


def world_words(world: int = WORLD) -> list[str]:
    """Every word a caption of `world` can contain, sorted for a stable vocabulary (a world's own
    list, so a model of an earlier world rebuilds its tokenizer exactly)."""
    size_words = {w for word, _ in WORLDS[world].classes if word for w in word.split()}
    words = {"a", "on", "background", *size_words, *KINDS, *SHAPE_COLOURS, *BACKGROUND_COLOURS}
    return sorted(words)


def _symbols(word: str) -> tuple[str, ...]:
    """A word as CLIP's BPE sees it before merging: characters, the last one marked end-of-word."""
    return tuple(word[:-1]) + (word[-1] + END,)


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Greedy BPE on the word list until every word is one symbol (ties broken alphabetically).

    Applying the merges in rank order replays this training, so each word ends as one token.
    """
    seqs = [_symbols(w) for w in words]
    merges: list[tuple[str, str]] = []
    while any(len(s) > 1 for s in seqs):
        counts = Counter(p for s in seqs for p in zip(s, s[1:]))
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        seqs = [_merge(s, pair) for s in seqs]
    return merges


def build_vocab(words: list[str], merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id: the specials, every single character (both forms), every merge result."""
    tokens: list[str] = []
    chars = sorted({c for w in words for c in w})
    tokens += chars + [c + END for c in chars]
    tokens += [a + b for a, b in merges]
    vocab: dict[str, int] = {}
    for tok in [BOS, EOS, *tokens]:
        vocab.setdefault(tok, len(vocab))
    return vocab


def build_tokenizer(words: list[str] | None = None) -> CLIPTokenizer:
    """The world's word-level CLIP tokenizer (pads with EOS, length `MAX_LENGTH`)."""
    words = words or world_words()
    merges = learn_merges(words)
    vocab = build_vocab(words, merges)
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=MAX_LENGTH,
    )
