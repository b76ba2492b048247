"""PIL → QImage on the worker thread (QImage, unlike QPixmap, may be built off the UI thread)."""
from __future__ import annotations

from typing import Any

from PySide6.QtGui import QImage


def pil_to_qimage(image: Any) -> QImage:
    """A deep copy, so the QImage owns its pixels after the PIL image is gone."""
    rgba = image.convert("RGBA")
    data = rgba.tobytes("raw", "RGBA")
    qimage = QImage(data, rgba.width, rgba.height, rgba.width * 4, QImage.Format.Format_RGBA8888)
    return qimage.copy()
