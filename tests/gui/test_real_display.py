"""The real app on a real X server: Qt's xcb platform loads, a window maps and paints, closing it ends the app.

Every other GUI test runs on the offscreen platform, which needs none of the X11 libraries; a desktop
missing `libxcb-icccm4` or `libxcb-cursor0` would pass them all and still open no window. Here
`sliderstudio gui` runs as a user starts it (its own process, the demo project), on Xvfb with
QT_QPA_PLATFORM=xcb; the window is found through the X server and its pixels read from Xvfb's
framebuffer, then it is closed the way a window manager closes it (tests/gui/window_check.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .window_check import APP_TITLE, check_real_window, xcb_env
from .x11_display import VirtualDisplay, colour_count, missing_tools

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="X11 (xcb) is the Linux desktop platform")

GUI = [sys.executable, "-m", "sliderstudio.cli", "gui"]


@pytest.fixture
def xvfb(tmp_path: Path):
    missing = missing_tools()
    if missing:
        pytest.fail(f"missing the Debian packages {' '.join(missing)}; `make test` installs them")
    with VirtualDisplay(tmp_path / "xvfb") as display:
        yield display


def test_a_bare_screen_reads_as_blank(xvfb):
    """The paint check can fail: Xvfb's empty root window is one flat colour and no window is mapped."""
    screen = xvfb.screenshot()
    assert screen.shape == (1200, 1920, 3)
    assert colour_count(screen) == 1
    assert not [w for w in xvfb.windows() if w.viewable]


def test_the_app_opens_a_real_window_that_paints_and_closes(xvfb, tmp_path):
    result = check_real_window(xvfb, GUI, xcb_env(xvfb, dict(os.environ), tmp_path), tmp_path)
    assert APP_TITLE in result.window.name and "demo" in result.window.name  # the demo project is open
    assert result.screenshot.stat().st_size > 30_000
    assert (tmp_path / "user-config").is_dir(), "closing did not store the window settings"
    print(f"\nwindow after {result.seconds_to_window:.1f} s, idle after {result.seconds_to_idle:.1f} s")


def test_without_an_x_server_the_app_fails_fast_and_names_xcb(tmp_path):
    """No X server behind DISPLAY: Qt's message and a non-zero exit, not a hang."""
    env = xcb_env(VirtualDisplay(tmp_path / "unused"), dict(os.environ), tmp_path)
    env["DISPLAY"] = ":65000"
    done = subprocess.run(GUI, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert 'platform plugin "xcb"' in done.stderr and ":65000" in done.stderr, done.stderr[-3000:]
