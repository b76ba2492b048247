"""Text-pair sliders in the config: `slider_text_pairs`, and their places in the sampler's cycle.

SimpleTuner has no key for prompt-only sliders, so this is our own, clearly named list (SPEC §2.6).
One entry is a positive and a negative prompt plus an optional neutral prompt (what the images are
rendered from and the prediction the target moves) and anchor prompts (kept unchanged). The
objective itself is in `engine.text_slider`; this module is pure data (no torch), so `plan`, the
run checks and the app can use it without the engine.

In the sampler a pair is two entries with the same "stems" (its base renders): `text:<id>+` in the
positive group at +strength and `text:<id>-` in the negative group at −strength, paired, so the
−strength micro-batch reuses the +strength one's render, noise and timestep (the mirrored target on
the same noisy input). Image buckets and text pairs cycle together.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

TEXT_PREFIX = "text:"


class TextPair(BaseModel):
    """One entry of `slider_text_pairs` (descriptions double as the app's tooltips)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str | None = Field(None, min_length=1, description="Name in logs and metrics (default: text-<number>)")
    positive: str = Field(..., min_length=1, description="Prompt of 'more of the concept' (e.g. 'a large red circle')")
    negative: str = Field(..., min_length=1, description="Prompt of 'less of it' (e.g. 'a small red circle')")
    neutral: str = Field("", description="Prompt the training images are rendered from and whose prediction "
                                         "the slider moves (empty: the unconditional prompt)")
    anchors: list[str] = Field(default_factory=list,
                               description="Prompts whose prediction the slider must leave unchanged")
    guidance: float = Field(1.0, gt=0, le=50, description="η: how far strength 1 moves along (positive − negative)")
    negative_guidance: float | None = Field(
        None, gt=0, le=50, description="η of the negative direction (−strength) when it should differ "
                                       "(Concept Sliders sets each direction's own); default: guidance")
    strength: float = Field(1.0, gt=0, le=10, description="Slider strength trained at (±); the target scales "
                                                          "with it, so the dial's 1 still means η")
    anchor_weight: float = Field(1.0, ge=0, le=100, description="Weight of the anchors' preservation loss")
    samples: int = Field(8, ge=1, le=4096, description="Base renders of the neutral prompt to train on")
    probability: float = Field(1.0, ge=0, description="Relative chance within its group, as for a bucket")
    disabled: bool = Field(False, description="Skip this pair")

    def eta(self, strength: float) -> float:
        """The guidance factor of the direction `strength` trains."""
        if strength < 0 and self.negative_guidance is not None:
            return self.negative_guidance
        return self.guidance

    @model_validator(mode="after")
    def _prompts_differ(self) -> "TextPair":
        if self.positive.strip() == self.negative.strip():
            raise ValueError("positive and negative are the same prompt: the slider would learn no direction")
        if any(not a.strip() for a in self.anchors):
            raise ValueError("an anchor prompt is empty")
        return self


def pair_ids(pairs: list[TextPair]) -> list[str]:
    """Each pair's name: its id, or text-<1-based position>."""
    return [p.id or f"text-{i + 1}" for i, p in enumerate(pairs)]


def duplicate_id(pairs: list[TextPair]) -> tuple[int, str] | None:
    """(index, id) of the first pair whose name an earlier pair already has, else None."""
    seen: set[str] = set()
    for index, name in enumerate(pair_ids(pairs)):
        if name in seen:
            return index, name
        seen.add(name)
    return None


def positive_id(name: str) -> str:
    return f"{TEXT_PREFIX}{name}+"


def negative_id(name: str) -> str:
    return f"{TEXT_PREFIX}{name}-"


def active_pairs(pairs: list[TextPair]) -> dict[str, TextPair]:
    """Name → pair, for pairs that take part (not disabled, probability > 0)."""
    return {name: p for name, p in zip(pair_ids(pairs), pairs) if not p.disabled and p.probability > 0}
