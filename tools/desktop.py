"""Desktop executor: mss screenshots + pyautogui input on an X display (Linux), one monitor at a time.

Targets arrive in screenshot pixels of the chosen monitor and are mapped to the input space through a
`ScreenGeometry` built from mss's monitor rectangle, the size of the captured image and the input size
pyautogui reports — so HiDPI captures (physical pixels) and monitors with negative offsets land where
the model pointed.

Semantics the schema leaves open (shared with the browser executor through tools/base.py):
- `scroll` / `hscroll`: `pixels` counts wheel notches, like OSWorld's `pyautogui.scroll(pixels)`;
  scroll positive = up, hscroll positive = right (pyautogui's convention). With a target the pointer
  moves there first, so the wheel reaches the element under it.
- `type`: "\n" presses Enter; plain ASCII is typed key by key through XTest, each key held and released
  with a pause (`type_interval`) between keystrokes: with none, LibreOffice takes a release and the
  next press of the same key for auto-repeat and drops letters ("Sheet2" → "Shet2"), which is what
  pyautogui.write does; and the keycode of each character comes from the server's keymap, where
  pyautogui's own table types "<" as ">". Other text is pasted (xclip/xsel + ctrl+v), or typed by
  `xdotool type` when no clipboard tool is installed.
- a click without a target clicks where the pointer is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from PIL import Image

from agent.actions import Action, ActionOutcome
from tools.base import CLICKS, ScreenGeometry, require_target, run_without_device, type_text, wheel_notches
from tools.keys import parse_chord, pyautogui_key
from tools.screenshots import grab, monitors, open_mss

# Characters typed key by key; their X keysyms are their code points, Tab's is XK_Tab.
_KEY_TYPEABLE = frozenset(chr(c) for c in range(0x20, 0x7F)) | {"\t"}
TYPE_INTERVAL_S = 0.02  # per keystroke: LibreOffice loses repeated letters at 0 (12 of 12 test lines)


def geometry_for_monitor(
    monitor: dict, shot_size: tuple[int, int], input_per_monitor_unit: float = 1.0
) -> ScreenGeometry:
    """Screenshot pixels ↔ input coordinates for one mss monitor.

    monitor: mss rectangle (left/top/width/height, screen units, offsets may be negative).
    shot_size: (W, H) of the image mss returned for it — physical pixels on HiDPI.
    input_per_monitor_unit: input units per mss unit (pyautogui size / mss bounding box; 1 on X11).
    """
    s = input_per_monitor_unit
    return ScreenGeometry(
        shot_width=int(shot_size[0]),
        shot_height=int(shot_size[1]),
        input_width=round(monitor["width"] * s),
        input_height=round(monitor["height"] * s),
        left=round(monitor["left"] * s),
        top=round(monitor["top"] * s),
    )


def _normalize_display(name: str) -> str:
    """":1", ":1.0", "localhost:1" and "unix:1" are one display."""
    host, _, rest = name.rpartition(":")
    number = rest.split(".")[0]
    host = "" if host in ("", "unix", "localhost") else host
    return f"{host}:{number}"


def _load_pyautogui(display: str | None) -> Any:
    """Import pyautogui bound to `display`. It connects to $DISPLAY at import time and cannot rebind,
    so a second, different display in the same process is refused."""
    requested = display or os.environ.get("DISPLAY")
    if not requested:
        raise ValueError("no X display: set DISPLAY (e.g. DISPLAY=:0) or pass display=...")
    if sys.platform != "linux":
        if display:
            raise ValueError("display=... is only meaningful on Linux/X11")
        import pyautogui
    elif "pyautogui" in sys.modules:
        import pyautogui
    else:
        check_display(requested)
        previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = requested
        try:
            # python-xlib prints xauth warnings to stdout, where they would mix into command output
            with contextlib.redirect_stdout(sys.stderr):
                import pyautogui
        finally:
            # subprocesses get the display explicitly; leave the caller's environment as it was
            if previous is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = previous
    if sys.platform == "linux":
        bound = pyautogui._pyautogui_x11._display.get_display_name()
        if _normalize_display(bound) != _normalize_display(requested):
            raise ValueError(
                f"pyautogui in this process is already bound to display {bound}; cannot drive {requested} "
                "too (run one process per display)"
            )
    # The corner fail-safe aborts automation whenever a target is a screen corner, and the default
    # 0.1 s pause after every call makes a 20-character type take 2 s.
    pyautogui.FAILSAFE = False
    pyautogui.PAUSE = 0.01
    return pyautogui


def check_display(display: str) -> None:
    """ValueError naming the display when no X server answers there."""
    from Xlib import display as xdisplay
    from Xlib import error as xerror

    try:
        with contextlib.redirect_stdout(sys.stderr):
            xdisplay.Display(display).close()
    except (xerror.DisplayError, xerror.ConnectionClosedError, OSError) as e:
        raise ValueError(f"cannot open X display {display}: {e}") from e


class DesktopExecutor:
    """tools.base.Executor on one monitor of an X display (mss capture, pyautogui input)."""

    def __init__(
        self,
        display: str | None = None,
        monitor: int = 1,
        type_interval: float = TYPE_INTERVAL_S,
        drag_duration: float = 0.4,
    ):
        self._pg = _load_pyautogui(display)
        self.display = display or os.environ.get("DISPLAY")
        self.type_interval = type_interval
        self.drag_duration = drag_duration
        self._sct = open_mss(self.display)
        all_monitors = monitors(self._sct)
        if not 1 <= monitor < len(all_monitors):
            listing = ", ".join(
                f"{i}: {m['width']}x{m['height']}{m['left']:+d}{m['top']:+d}"
                for i, m in enumerate(all_monitors) if i > 0
            )
            self.close()
            raise ValueError(f"monitor {monitor} does not exist on {self.display}; monitors are {listing}")
        self.monitor_index = monitor
        self.monitor = all_monitors[monitor]
        bounding = all_monitors[0]
        self.input_per_monitor_unit = self._pg.size()[0] / bounding["width"]
        shot_size = grab(self._sct, self.monitor).size  # physical pixels on HiDPI, unlike the monitor dict
        self._geometry = geometry_for_monitor(self.monitor, shot_size, self.input_per_monitor_unit)

    # --- Executor -----------------------------------------------------------------------------------
    @property
    def geometry(self) -> ScreenGeometry:
        return self._geometry

    def screenshot(self) -> Image.Image:
        image = grab(self._sct, self.monitor)
        if image.size != (self._geometry.shot_width, self._geometry.shot_height):
            self._geometry = geometry_for_monitor(self.monitor, image.size, self.input_per_monitor_unit)
        return image

    def execute(self, action: Action, target: tuple[float, float] | None = None) -> ActionOutcome:
        try:
            return self._execute(action, target)
        except ValueError as e:  # a bad action (unknown key, missing target): report, don't crash the loop
            return ActionOutcome(ok=False, error=str(e))

    def close(self) -> None:
        sct, self._sct = self._sct, None
        if sct is not None:
            sct.close()

    # --- helpers used by `qvl-agent doctor` ----------------------------------------------------------
    def cursor_position(self) -> tuple[int, int]:
        """Pointer position in input coordinates (whole screen, not monitor-relative)."""
        x, y = self._pg.position()
        return int(x), int(y)

    # --- actions ------------------------------------------------------------------------------------
    def _execute(self, action: Action, target: tuple[float, float] | None) -> ActionOutcome:
        outcome = run_without_device(action)
        if outcome is not None:
            return outcome
        pg = self._pg
        name = action.action
        point = self._geometry.to_input(*target) if target is not None else None

        if name in CLICKS:
            button, clicks = CLICKS[name]
            x, y = point if point is not None else self.cursor_position()
            pg.click(x, y, clicks=clicks, interval=0.05 if clicks > 1 else 0.0, button=button)
            return ActionOutcome(input_point=(x, y))
        if name == "mouse_move":
            x, y = require_target(point, name)
            pg.moveTo(x, y)
            return ActionOutcome(input_point=(x, y))
        if name == "left_click_drag":
            x, y = require_target(point, name)
            pg.mouseDown(button="left")
            try:
                # intermediate motion events: sliders and DnD targets ignore a teleporting pointer
                pg.moveTo(x, y, duration=self.drag_duration)
            finally:
                pg.mouseUp(button="left")
            return ActionOutcome(input_point=(x, y))
        if name in ("scroll", "hscroll"):
            if point is not None:
                pg.moveTo(*point)
            notches = wheel_notches(action.pixels)
            (pg.scroll if name == "scroll" else pg.hscroll)(notches)
            return ActionOutcome(input_point=point or self.cursor_position())
        if name == "key":
            self._press_chord(parse_chord(action.keys or []))
            return ActionOutcome()
        if name == "type":
            type_text(action.text or "", self._type_line, lambda: self._press_chord(["enter"]))
            return ActionOutcome()
        raise ValueError(f"unsupported action {name!r}")

    def _press_chord(self, canonical: list[str]) -> None:
        pg = self._pg
        names = [pyautogui_key(k) for k in canonical]
        unknown = [k for k in names if not pg.isValidKey(k)]
        if unknown:
            raise ValueError(f"the desktop keyboard has no key {unknown[0]!r}")
        pressed: list[str] = []
        try:
            for k in names:
                pg.keyDown(k)
                pressed.append(k)
        finally:
            for k in reversed(pressed):  # never leave a modifier stuck down
                pg.keyUp(k)

    def _type_line(self, line: str) -> None:
        strokes = self._keystrokes(line) if set(line) <= _KEY_TYPEABLE else None
        if strokes is None:
            self._paste(line)
        elif sys.platform != "linux":
            self._pg.write(line, interval=self.type_interval)
        else:
            self._type_keys(strokes)

    def _keystrokes(self, line: str) -> list[tuple[int, bool]] | None:
        """(keycode, with shift) per character from the server's keymap; None if one has no key."""
        if sys.platform != "linux":
            return []
        from Xlib import XK

        display = self._pg._pyautogui_x11._display
        strokes = []
        for ch in line:
            keysym = XK.XK_Tab if ch == "\t" else ord(ch)
            # (keycode, index): index 0 is the key's plain symbol, 1 its shifted one
            options = sorted((i, code) for code, i in display.keysym_to_keycodes(keysym) if i in (0, 1))
            if not options:
                return None
            strokes.append((options[0][1], options[0][0] == 1))
        return strokes

    def _type_keys(self, strokes: list[tuple[int, bool]]) -> None:
        from Xlib import X, XK
        from Xlib.ext.xtest import fake_input

        display = self._pg._pyautogui_x11._display
        shift = display.keysym_to_keycode(XK.XK_Shift_L)
        half = self.type_interval / 2
        for keycode, shifted in strokes:
            if shifted:
                fake_input(display, X.KeyPress, shift)
            fake_input(display, X.KeyPress, keycode)
            display.sync()
            time.sleep(half)
            fake_input(display, X.KeyRelease, keycode)
            if shifted:
                fake_input(display, X.KeyRelease, shift)
            display.sync()
            time.sleep(half)

    def _paste(self, text: str) -> None:
        env = {**os.environ, "DISPLAY": self.display or os.environ.get("DISPLAY", "")}
        clipboard = _clipboard_command()
        if clipboard is not None:
            # xclip/xsel fork a child that serves the selection until someone else takes it; without
            # DEVNULL stdout/stderr that child keeps our pipes open and run() never returns
            subprocess.run(clipboard, input=text.encode("utf-8"), env=env, check=True, timeout=10,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._press_chord(["ctrl", "v"])
            time.sleep(0.05)  # the target app fetches the selection asynchronously
            return
        if shutil.which("xdotool"):
            subprocess.run(["xdotool", "type", "--delay", "12", "--", text], env=env, check=True, timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
        raise ValueError("typing non-ASCII text needs xclip, xsel or xdotool (apt-get install xclip)")


def _clipboard_command() -> list[str] | None:
    if shutil.which("xclip"):
        return ["xclip", "-selection", "clipboard", "-in"]
    if shutil.which("xsel"):
        return ["xsel", "--clipboard", "--input"]
    return None

