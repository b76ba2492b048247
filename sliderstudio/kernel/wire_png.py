"""How a picture travels on the training process's wire: as a base64 PNG under the key `png`.

Declared as an annotated type so that the event that carries a picture (`events.Image`) says so
itself and the wire codec, derived from the event declarations, needs no case of its own for it.
"""
from __future__ import annotations

import base64
import io
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer


def png_base64(image: Any) -> str:
    """A PIL image as base64 PNG text (lossless, so a validation image arrives as rendered)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_image(text: Any) -> Any:
    """The PIL image that base64 PNG text holds; ValueError for anything else (the wire names it)."""
    from PIL import Image as PILImage

    if not isinstance(text, str):
        raise ValueError("Image event without a readable PNG")
    try:
        image = PILImage.open(io.BytesIO(base64.b64decode(text, validate=True)))
        image.load()
    except Exception:  # noqa: BLE001 - PIL raises many kinds (SyntaxError for a torn chunk): all mean unreadable
        raise ValueError("Image event without a readable PNG") from None
    return image


WirePng = Annotated[Any, Field(alias="png"), PlainSerializer(png_base64, return_type=str), BeforeValidator(png_image)]
