"""Captions of different lengths in one batch.

LLM text encoders (Qwen, Gemma, Llama) are used with their padding removed or masked, so a cached
caption keeps only its real tokens. Training batches mix captions, so they are padded per batch and
their lengths (or a mask) travel with them; the family's `predict` turns that back into what the
transformer expects.
"""
from __future__ import annotations

import torch

from sliderstudio.families.base import Conditioning


def pad_captions(conds: list[Conditioning], key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (1, L_i, D) captions into (B, max L, D), zeros after each caption, plus the lengths (B,)."""
    feats = [c.kwargs[key][0] for c in conds]
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths


def length_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) mask: True on each caption's real tokens."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
