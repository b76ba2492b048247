"""The live loss plot: raw loss per step and a smoothed line, redrawn at most a few times a second.

Redrawing on every step would spend the UI thread's time on plotting while training is fast;
the timer coalesces any number of new points into one redraw.
"""
from __future__ import annotations

import os

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

REDRAW_MS = 250


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (so the first points are not pulled to 0)."""
    out, avg = [], 0.0
    for i, value in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * value
        out.append(avg / (1 - weight ** i))
    return out


class LossPlot(pg.PlotWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="w")
        self.setLabel("bottom", "step")
        self.setLabel("left", "loss")
        self.showGrid(x=True, y=True, alpha=0.2)
        # Raw losses as dots: positive, negative and neutral micro-batches alternate and have
        # very different losses, so a line through them is a zig-zag that hides the trend.
        self.raw = self.plot([], [], pen=None, symbol="o", symbolSize=4, symbolPen=None,
                             symbolBrush=pg.mkBrush("#9bb7d4"))
        self.avg = self.plot([], [], pen=pg.mkPen("#1f5fa8", width=2))
        self.setMenuEnabled(False)
        self._steps: list[int] = []
        self._losses: list[float] = []
        self._dirty = False
        self._timer = QTimer(self, interval=REDRAW_MS)
        self._timer.timeout.connect(self._redraw)
        self._timer.start()

    def set_series(self, steps: list[int], losses: list[float]) -> None:
        """Share the view-model's lists; only a flag is set here, the timer draws."""
        self._steps, self._losses = steps, losses
        self._dirty = True

    def mark_dirty(self) -> None:
        self._dirty = True

    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        n = min(len(self._steps), len(self._losses))
        steps, losses = list(self._steps[:n]), list(self._losses[:n])
        self.raw.setData(steps, losses)
        self.avg.setData(steps, smooth(losses))
