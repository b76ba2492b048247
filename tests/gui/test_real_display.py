"""The real app on a real X server: Qt's xcb platform loads, a window maps and paints, closing it ends the app.

Every other GUI test runs on the offscreen platform, which needs none of the X11 libraries; a desktop
missing `libxcb-icccm4` or `libxcb-cursor0` would pass them all and still open no window. Here
`sliderstudio gui` runs as a user starts it (its own process, the demo project), on Xvfb with
QT_QPA_PLATFORM=xcb; the window is found through the X server and its pixels read from Xvfb's
framebuffer, then it is closed the way a window manager closes it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .x11_display import VirtualDisplay, Window, missing_tools, wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="X11 (xcb) is the Linux desktop platform")

APP_TITLE = "Slider Studio"
WINDOW_TIMEOUT_S = 180.0     # the app imports torch and the engine first; a loaded 2-core CI box is slow
PAINT_TIMEOUT_S = 120.0
IDLE_TIMEOUT_S = 300.0
IDLE_CPU_S = 0.2             # CPU seconds per IDLE_WINDOW_S below which the app counts as idle
IDLE_WINDOW_S = 3.0
CLOSE_TIMEOUT_S = 60.0
MIN_COLOURS = 50             # the offscreen bundle check's bar for "not a flat picture"


@pytest.fixture
def xvfb(tmp_path: Path):
    missing = missing_tools()
    if missing:
        pytest.fail(f"missing the Debian packages {' '.join(missing)}; `make test` installs them")
    with VirtualDisplay(tmp_path / "xvfb") as display:
        yield display


def xcb_env(display: VirtualDisplay, tmp_path: Path) -> dict[str, str]:
    """The test environment minus any Qt platform choice, pointed at the virtual display and temp folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_") and k != "WAYLAND_DISPLAY"}
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(DISPLAY=display.display, QT_QPA_PLATFORM="xcb", XDG_RUNTIME_DIR=str(runtime),
               SLIDERSTUDIO_CONFIG_DIR=str(tmp_path / "user-config"),
               SLIDERSTUDIO_DATA_DIR=str(tmp_path / "user-data"))
    return env


def colour_count(pixels: np.ndarray) -> int:
    """Distinct colours after dropping the two low bits per channel (anti-aliasing noise stays in)."""
    packed = (pixels.astype(np.uint32) >> 2) @ np.array([1 << 12, 1 << 6, 1], dtype=np.uint32)
    return len(np.unique(packed))


def crop(screen: np.ndarray, window: Window) -> np.ndarray:
    return screen[window.y:window.y + window.height, window.x:window.x + window.width]


def start_gui(env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "sliderstudio.cli", "gui"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def app_window(display: VirtualDisplay, proc: subprocess.Popen, log: Path) -> Window | None:
    """The app's top-level window once it is mapped; fails at once if the app died."""
    if proc.poll() is not None:
        pytest.fail(f"the app exited with {proc.returncode} before a window appeared:\n"
                    f"{log.read_text(errors='replace')[-4000:]}")
    found = [w for w in display.windows() if APP_TITLE in w.name and w.viewable]
    return max(found, key=lambda w: w.width * w.height) if found else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(proc: subprocess.Popen) -> bool:
    """True once the app has spent less than IDLE_CPU_S in IDLE_WINDOW_S: the engine import, the target
    resolution and the first preview (all on worker threads) are done. Closing earlier is fine for a
    user, but then the close would wait on a half-imported torch, which a loaded machine makes slow."""
    def idle() -> bool | None:
        if proc.poll() is not None:
            return False
        start = cpu_seconds(proc.pid)
        time.sleep(IDLE_WINDOW_S)
        return True if proc.poll() is None and cpu_seconds(proc.pid) - start < IDLE_CPU_S else None

    return wait_for(idle, IDLE_TIMEOUT_S, poll_s=0) is True


def test_a_bare_screen_reads_as_blank(xvfb):
    """The blank check can fail: Xvfb's empty root window is one flat colour."""
    screen = xvfb.screenshot()
    assert screen.shape == (1200, 1920, 3)
    assert colour_count(screen) == 1
    assert not [w for w in xvfb.windows() if w.viewable]


def test_the_app_opens_a_real_window_that_paints_and_closes(xvfb, tmp_path):
    log = tmp_path / "app.log"
    proc = start_gui(xcb_env(xvfb, tmp_path), log)
    try:
        window = wait_for(lambda: app_window(xvfb, proc, log), WINDOW_TIMEOUT_S, poll_s=0.5)
        assert window is not None, f"no '{APP_TITLE}' window within {WINDOW_TIMEOUT_S} s:\n{log.read_text()[-4000:]}"
        assert window.width >= 800 and window.height >= 600, window

        def painted() -> np.ndarray | None:
            picture = crop(xvfb.screenshot(), window)
            return picture if colour_count(picture) > MIN_COLOURS else None

        picture = wait_for(painted, PAINT_TIMEOUT_S, poll_s=0.5)
        first = crop(xvfb.screenshot(), window)
        Image.fromarray(first).save(tmp_path / "window-first.png")
        assert picture is not None, f"the window stayed (nearly) flat: {colour_count(first)} colours"
        assert picture.std() > 10, "the window has colours but no contrast"

        assert wait_until_idle(proc), f"the app never went idle:\n{log.read_text(errors='replace')[-4000:]}"
        screen = xvfb.screenshot()
        settled = crop(screen, window)
        Image.fromarray(settled).save(tmp_path / "window.png")
        assert colour_count(settled) > MIN_COLOURS, "the settled window is (nearly) flat"
        outside = np.delete(screen, np.s_[window.y:window.y + window.height], axis=0)
        assert outside.size == 0 or colour_count(outside) == 1, "paint outside the app's window"

        xvfb.close_window(window)
        assert proc.wait(timeout=CLOSE_TIMEOUT_S) == 0, log.read_text()[-4000:]
        assert not [w for w in xvfb.windows() if APP_TITLE in w.name and w.viewable]
        assert (tmp_path / "user-config").is_dir(), "closing did not store the window settings"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_without_an_x_server_the_app_fails_fast_and_names_xcb(tmp_path):
    """No display behind DISPLAY: a clear Qt message and a non-zero exit, not a hang."""
    env = xcb_env(VirtualDisplay(tmp_path / "unused"), tmp_path)
    env["DISPLAY"] = ":65000"
    done = subprocess.run([sys.executable, "-m", "sliderstudio.cli", "gui"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert 'platform plugin "xcb"' in done.stderr and ":65000" in done.stderr, done.stderr[-3000:]
