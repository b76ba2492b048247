"""A virtual X server (Xvfb) for tests that need a real window on Qt's xcb platform.

The offscreen platform paints into memory and loads none of the X11 libraries, so it cannot catch
a desktop where Qt's xcb plugin fails to load. These helpers start Xvfb, list the top-level windows
the X server knows (xwininfo, from x11-utils), read the screen the X server holds and ask a window
to close the way a window manager does. The screen is read from Xvfb's own framebuffer file
(`-fbdir`, XWD format), not from Qt, so a blank window cannot pass for a painted one.

Needs the Debian packages `xvfb` and `x11-utils` (`make test` installs them when missing).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import select
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCREEN = (1920, 1200)
START_TIMEOUT_S = 15.0
TOOLS = {"Xvfb": "xvfb", "xwininfo": "x11-utils"}


def missing_tools() -> list[str]:
    """Debian packages to install for these helpers (empty when all tools are on PATH)."""
    return sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})


@dataclass
class Window:
    id: int
    name: str
    x: int
    y: int
    width: int
    height: int
    viewable: bool


class VirtualDisplay:
    """`with VirtualDisplay(folder) as xvfb:` a fresh X server on a free display number."""

    def __init__(self, folder: Path, screen: tuple[int, int] = SCREEN) -> None:
        self.folder = folder
        self.screen = screen
        self.display = ""
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "VirtualDisplay":
        self.folder.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        width, height = self.screen
        # -displayfd: Xvfb picks a free display number and writes it once it accepts connections.
        self.proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24",
             "-fbdir", str(self.folder), "-nolisten", "tcp", "-noreset"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=open(self.folder / "xvfb.log", "wb"))
        os.close(write_fd)
        try:
            self.display = ":" + self._read_display_number(read_fd)
        except BaseException:
            self.__exit__()
            raise
        finally:
            os.close(read_fd)
        return self

    def _read_display_number(self, fd: int) -> str:
        """Read up to the newline: Xvfb writes the number and the newline separately, and treats a
        closed pipe at the second write as fatal."""
        deadline = time.monotonic() + START_TIMEOUT_S
        text = b""
        while not text.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 32) if ready else b""
            if not chunk:
                break
            text += chunk
        number = text.decode().strip()
        if not text.endswith(b"\n") or not number.isdigit():
            log = (self.folder / "xvfb.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Xvfb did not start within {START_TIMEOUT_S} s:\n{log}")
        return number

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def windows(self) -> list[Window]:
        """The root window's children that carry a name (the top-level windows without a WM)."""
        tree = self._xwininfo("-root", "-children")
        found = []
        for match in re.finditer(r'^\s+(0x[0-9a-f]+) "(.*)":', tree, re.M):
            info = self._xwininfo("-id", match.group(1))
            if info:
                found.append(_parse_window(int(match.group(1), 16), match.group(2), info))
        return found

    def _xwininfo(self, *args: str) -> str:
        done = subprocess.run(["xwininfo", "-display", self.display, *args], capture_output=True,
                              text=True, timeout=10)
        return done.stdout if done.returncode == 0 else ""

    def screenshot(self) -> np.ndarray:
        """The whole screen as an RGB array, read from Xvfb's framebuffer file."""
        return read_xwd(self.folder / "Xvfb_screen0")

    def close_window(self, window: Window) -> None:
        """Send WM_DELETE_WINDOW, as a window manager does when the user clicks the close button."""
        send_delete_window(self.display, window.id)


def _parse_window(window_id: int, name: str, info: str) -> Window:
    def field(label: str) -> str:
        match = re.search(rf"^\s*{re.escape(label)}:\s*(.+)$", info, re.M)
        return match.group(1).strip() if match else ""

    return Window(window_id, name, int(field("Absolute upper-left X") or 0), int(field("Absolute upper-left Y") or 0),
                  int(field("Width") or 0), int(field("Height") or 0), field("Map State") == "IsViewable")


XWD_HEADER = struct.Struct(">25I")


def read_xwd(path: Path) -> np.ndarray:
    """An XWD file in ZPixmap format at 24/32 bits per pixel (what Xvfb -fbdir writes) → H×W×3 uint8."""
    data = path.read_bytes()
    fields = XWD_HEADER.unpack_from(data)
    header_size, version, pixmap_format, depth, width, height = fields[:6]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    red_mask, green_mask, blue_mask, ncolors = fields[14], fields[15], fields[16], fields[19]
    if version != 7 or pixmap_format != 2 or bits_per_pixel != 32:
        raise ValueError(f"{path}: unsupported XWD (version {version}, format {pixmap_format}, "
                         f"{bits_per_pixel} bits per pixel)")
    start = header_size + 12 * ncolors
    rows = np.frombuffer(data, dtype=np.uint8, count=height * bytes_per_line, offset=start)
    pixels = rows.reshape(height, bytes_per_line)[:, :width * 4].copy().view("<u4" if byte_order == 0 else ">u4")
    return np.stack([_channel(pixels, mask) for mask in (red_mask, green_mask, blue_mask)], axis=-1)


def _channel(pixels: np.ndarray, mask: int) -> np.ndarray:
    shift = (mask & -mask).bit_length() - 1
    return ((pixels & mask) >> shift).astype(np.uint8)


class _ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


CLIENT_MESSAGE = 33


def send_delete_window(display: str, window_id: int) -> None:
    """The ICCCM close request: a WM_PROTOCOLS client message carrying WM_DELETE_WINDOW (libX11 via ctypes)."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long,
                               ctypes.POINTER(_XEvent)]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(display.encode())
    if not dpy:
        raise RuntimeError(f"cannot open X display {display}")
    try:
        event = _XEvent()
        event.xclient.type = CLIENT_MESSAGE
        event.xclient.window = window_id
        event.xclient.message_type = x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
        event.xclient.format = 32
        event.xclient.data[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
        if not x11.XSendEvent(dpy, window_id, 0, 0, ctypes.byref(event)):
            raise RuntimeError("XSendEvent failed")
        x11.XFlush(dpy)
    finally:
        x11.XCloseDisplay(dpy)


def colour_count(pixels: np.ndarray) -> int:
    """Distinct colours after dropping the two low bits per channel (anti-aliasing noise stays in)."""
    packed = (pixels.astype(np.uint32) >> 2) @ np.array([1 << 12, 1 << 6, 1], dtype=np.uint32)
    return len(np.unique(packed))


def crop(screen: np.ndarray, window: Window) -> np.ndarray:
    return screen[window.y:window.y + window.height, window.x:window.x + window.width]


def wait_for(condition, timeout_s: float, poll_s: float = 0.25):
    """Poll `condition()` until it returns something other than None (returned) or the time is up (None)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value is not None:
            return value
        time.sleep(poll_s)
    return None
