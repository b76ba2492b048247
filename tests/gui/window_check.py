"""The real-window check shared by the checkout's test and the installer bundle's: start the app on a
virtual X server with Qt's xcb platform, wait for its window to map and paint, let it go idle, close it
the way a window manager does, and require a clean exit.

Every other GUI test runs on the offscreen platform, which loads none of the X11 libraries, so only a
check like this one notices a desktop where the xcb plugin cannot load (no window, exit by SIGABRT).
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .x11_display import VirtualDisplay, Window, colour_count, crop, wait_for

APP_TITLE = "Slider Studio"
WINDOW_TIMEOUT_S = 180.0     # the app imports torch and the engine first; a loaded 2-core CI box is slow
PAINT_TIMEOUT_S = 120.0
IDLE_TIMEOUT_S = 300.0
IDLE_CPU_S = 0.2             # CPU seconds per IDLE_WINDOW_S below which the app counts as idle
IDLE_WINDOW_S = 3.0
CLOSE_TIMEOUT_S = 60.0
MIN_COLOURS = 50             # the offscreen bundle check's bar for "not a flat picture"


class WindowCheckFailed(AssertionError):
    """The app did not open, paint or close its window; the message carries the app's log tail."""


@dataclass
class WindowCheck:
    window: Window
    seconds_to_window: float
    seconds_to_idle: float
    screenshot: Path


def xcb_env(display: VirtualDisplay, base: dict[str, str], folder: Path) -> dict[str, str]:
    """`base` minus any Qt platform choice, pointed at the virtual display and at temp app folders."""
    env = {k: v for k, v in base.items() if not k.startswith("QT_") and k != "WAYLAND_DISPLAY"}
    runtime = folder / "xdg-runtime"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(DISPLAY=display.display, QT_QPA_PLATFORM="xcb", XDG_RUNTIME_DIR=str(runtime),
               SLIDERSTUDIO_CONFIG_DIR=str(folder / "user-config"),
               SLIDERSTUDIO_DATA_DIR=str(folder / "user-data"))
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(proc: subprocess.Popen) -> bool:
    """True once the app spends less than IDLE_CPU_S in IDLE_WINDOW_S: the engine import, the target
    resolution and the first preview (worker threads) are done. A user may close the window earlier;
    the check waits so that its close does not race a torch import that a loaded machine makes slow."""
    def idle() -> bool | None:
        if proc.poll() is not None:
            return False
        start = cpu_seconds(proc.pid)
        time.sleep(IDLE_WINDOW_S)
        return True if proc.poll() is None and cpu_seconds(proc.pid) - start < IDLE_CPU_S else None

    return wait_for(idle, IDLE_TIMEOUT_S, poll_s=0) is True


class _App:
    """The app's process and log, with failures that quote the log."""

    def __init__(self, argv: list[str], env: dict[str, str], folder: Path, cwd: Path) -> None:
        self.log = folder / "app.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)

    def fail(self, what: str) -> WindowCheckFailed:
        return WindowCheckFailed(f"{what}\n--- app log ---\n{self.log.read_text(errors='replace')[-4000:]}")

    def window(self, display: VirtualDisplay) -> Window | None:
        if self.proc.poll() is not None:
            raise self.fail(f"the app exited with {self.proc.returncode} before a window appeared")
        found = [w for w in display.windows() if APP_TITLE in w.name and w.viewable]
        return max(found, key=lambda w: w.width * w.height) if found else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def check_real_window(display: VirtualDisplay, argv: list[str], env: dict[str, str], folder: Path) -> WindowCheck:
    """Run `argv` (the app's `gui` command) on `display`; raise WindowCheckFailed on any failure."""
    started = time.monotonic()
    app = _App(argv, env, folder, cwd=folder)
    try:
        window = wait_for(lambda: app.window(display), WINDOW_TIMEOUT_S, poll_s=0.5)
        if window is None:
            raise app.fail(f"no '{APP_TITLE}' window mapped within {WINDOW_TIMEOUT_S} s")
        to_window = time.monotonic() - started
        if window.width < 800 or window.height < 600:
            raise app.fail(f"the window is too small: {window}")
        painted = wait_for(lambda: True if colour_count(crop(display.screenshot(), window)) > MIN_COLOURS else None,
                           PAINT_TIMEOUT_S, poll_s=0.5)
        if painted is None:
            raise app.fail(f"the window stayed (nearly) flat for {PAINT_TIMEOUT_S} s")
        if not wait_until_idle(app.proc):
            raise app.fail(f"the app did not go idle within {IDLE_TIMEOUT_S} s")
        to_idle = time.monotonic() - started
        shot = _check_settled_picture(display, window, folder, app)
        display.close_window(window)
        try:
            code = app.proc.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise app.fail(f"the app did not exit within {CLOSE_TIMEOUT_S} s of closing its window") from None
        if code != 0:
            raise app.fail(f"closing the window ended the app with status {code}")
        if [w for w in display.windows() if APP_TITLE in w.name and w.viewable]:
            raise app.fail("the window is still mapped after the app exited")
        return WindowCheck(window, to_window, to_idle, shot)
    finally:
        app.stop()


def _check_settled_picture(display: VirtualDisplay, window: Window, folder: Path, app: _App) -> Path:
    """The idle window has content and contrast; the screen outside it is still the bare root colour."""
    screen = display.screenshot()
    picture = crop(screen, window)
    shot = folder / "window.png"
    Image.fromarray(picture).save(shot)
    if colour_count(picture) <= MIN_COLOURS or picture.std() <= 10:
        raise app.fail(f"the idle window is (nearly) flat: {colour_count(picture)} colours, see {shot}")
    outside = np.delete(screen, np.s_[window.y:window.y + window.height], axis=0)
    if outside.size and colour_count(outside) != 1:
        raise app.fail("something painted outside the app's window")
    return shot
