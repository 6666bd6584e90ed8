"""`qvl-agent doctor`: prove, per monitor, that a point the model names is the point that gets clicked.

For each monitor it walks the agent's real coordinate chain with the real executor:

    relative 0..1000 ──agent.coords──▶ screenshot px ──ScreenGeometry──▶ input px ──pyautogui──▶ cursor

and checks both ends against the screen itself: fiducial squares are drawn at the input points (an
override-redirect X window, so no window manager moves or decorates it), captured with mss and located
in the screenshot; then the cursor is moved through the executor and read back. A wrong HiDPI scale, a
monitor offset or a capture/input mismatch shows up as markers found away from where the relative
coordinates say, or as a cursor that is not where the input mapping sent it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from agent.actions import Action
from agent.coords import to_pixels

# Relative points (model grid) where markers go; off the edges so a marker is never clipped.
FIDUCIALS: tuple[tuple[int, int], ...] = ((100, 100), (900, 100), (500, 500), (100, 900), (900, 880))
# One pure colour per marker: detection cannot confuse two markers, whatever the scale.
COLORS: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
MARKER_HALF = 8  # input px; a marker covers [p - 8, p + 8)
COLOR_TOLERANCE = 40


@dataclass
class MarkerCheck:
    relative: tuple[float, float]
    expected_shot: tuple[float, float]  # where the relative point lands in the screenshot
    input_point: tuple[int, int]  # where ScreenGeometry sends it
    found_shot: tuple[float, float] | None  # centre of the marker drawn at input_point, as captured
    shot_error_px: float | None
    relative_error: float | None  # the same error in grid units (0..1000)
    cursor: tuple[int, int]  # where the pointer is after the executor moved it
    cursor_error_px: float


@dataclass
class MonitorReport:
    index: int
    monitor: dict
    screenshot_size: tuple[int, int]
    input_size: tuple[int, int]
    input_offset: tuple[int, int]
    scale: float  # screenshot px per input px
    markers: list[MarkerCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return not self.problems


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check that screenshot, relative and input coordinates agree on every monitor",
        description="Draws fiducial markers on each monitor, finds them in the screenshot and moves the cursor "
        "through the agent's coordinate chain (relative 0..1000 -> screenshot px -> input px -> pyautogui); "
        "exit code 0 when screenshot, relative and input coordinates agree everywhere, 1 otherwise.",
    )
    p.add_argument("--display", help="X display to check (default: $DISPLAY)")
    p.add_argument("--monitor", type=int, help="check only this monitor (1-based, as mss numbers them)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    # python-xlib prints its xauth warnings to stdout; keep stdout for the report (--json parses it)
    with contextlib.redirect_stdout(sys.stderr):
        reports = run_doctor(args.display, args.monitor)
    ok = all(r.agree for r in reports)
    display = args.display or os.environ.get("DISPLAY")
    if args.json:
        print(json.dumps({
            "display": display,
            "agree": ok,
            "monitors": [{**asdict(r), "agree": r.agree} for r in reports],
        }, indent=2))
    else:
        for r in reports:
            print(_summary_line(r))
            for problem in r.problems:
                print(f"  - {problem}")
        print("all coordinates agree" if ok else "coordinate mismatch: clicks would land in the wrong place")
    return 0 if ok else 1


def run_doctor(display: str | None = None, only_monitor: int | None = None) -> list[MonitorReport]:
    """Check every monitor (or one) of `display`; raises ValueError when there is no usable display."""
    if sys.platform != "linux":
        raise ValueError("qvl-agent doctor draws its markers with X11 and runs on Linux only")
    display = display or os.environ.get("DISPLAY")
    if not display:
        raise ValueError("no X display: set DISPLAY (e.g. DISPLAY=:0) or pass --display")
    from tools.desktop import DesktopExecutor
    from tools.screenshots import monitors, open_mss

    sct = open_mss(display)
    try:
        count = len(monitors(sct)) - 1
    finally:
        sct.close()
    indices = range(1, count + 1)
    if only_monitor is not None:
        if not 1 <= only_monitor <= count:
            raise ValueError(f"--monitor {only_monitor}: display {display} has monitors 1..{count}")
        indices = [only_monitor]
    reports = []
    for index in indices:
        executor = DesktopExecutor(display=display, monitor=index)
        try:
            reports.append(check_monitor(executor, display))
        finally:
            executor.close()
    return reports


def check_monitor(executor, display: str) -> MonitorReport:
    """Run the marker and cursor checks on the executor's monitor."""
    executor.screenshot()  # measure the capture size the agent will see
    g = executor.geometry
    shot_size = (g.shot_width, g.shot_height)
    report = MonitorReport(
        index=executor.monitor_index, monitor=dict(executor.monitor), screenshot_size=shot_size,
        input_size=(g.input_width, g.input_height), input_offset=(g.left, g.top), scale=round(g.scale, 4),
    )
    expected = [to_pixels(rel, shot_size) for rel in FIDUCIALS]
    inputs = [g.to_input(*p) for p in expected]

    # The window covers the monitor's rectangle in X coordinates (= input coordinates on X11).
    mon = executor.monitor
    with _MarkerWindow(display, (mon["left"], mon["top"], mon["width"], mon["height"])) as window:
        window.draw([(x - mon["left"], y - mon["top"]) for x, y in inputs], COLORS)
        found = _find_markers(executor, len(FIDUCIALS))
        # Move through the executor (the agent's path) while the window is up: nothing under the
        # pointer reacts to it.
        cursors = []
        for rel, shot_point in zip(FIDUCIALS, expected):
            executor.execute(Action(action="mouse_move", coordinate=rel), shot_point)
            cursors.append(executor.cursor_position())

    # Rounding to whole input pixels moves a point by up to half an input pixel, i.e. scale/2 shot px.
    tolerance = 1.0 + 0.5 * g.scale
    for rel, exp, inp, got, cur in zip(FIDUCIALS, expected, inputs, found, cursors):
        cursor_error = float(np.hypot(cur[0] - inp[0], cur[1] - inp[1]))
        check = MarkerCheck(relative=rel, expected_shot=(round(exp[0], 2), round(exp[1], 2)), input_point=inp,
                            found_shot=None, shot_error_px=None, relative_error=None, cursor=cur,
                            cursor_error_px=round(cursor_error, 2))
        if got is None:
            report.problems.append(f"marker for relative {rel} not visible in the screenshot "
                                   "(another window on top, or capture shows a different area)")
        else:
            err = float(np.hypot(got[0] - exp[0], got[1] - exp[1]))
            rel_err = float(np.hypot((got[0] - exp[0]) / shot_size[0], (got[1] - exp[1]) / shot_size[1])) * 1000
            check.found_shot = (round(got[0], 2), round(got[1], 2))
            check.shot_error_px, check.relative_error = round(err, 2), round(rel_err, 3)
            if err > tolerance:
                report.problems.append(
                    f"relative {rel} should be at screenshot ({exp[0]:.1f}, {exp[1]:.1f}) but input {inp} "
                    f"shows up at ({got[0]:.1f}, {got[1]:.1f}): {err:.1f} px off")
        if cursor_error > 1.0:
            report.problems.append(f"cursor sent to input {inp} is at {cur}")
        report.markers.append(check)
    return report


def _find_markers(executor, count: int, timeout: float = 3.0) -> list[tuple[float, float] | None]:
    """Centroid (screenshot px) of each marker colour; retried until all show up or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        pixels = np.asarray(executor.screenshot(), dtype=np.int16)  # [H, W, 3]
        found = []
        for color in COLORS[:count]:
            mask = (np.abs(pixels - np.array(color, dtype=np.int16)) <= COLOR_TOLERANCE).all(axis=-1)
            ys, xs = np.nonzero(mask)
            # pixel (i, j) covers [j, j+1): its centre is j + 0.5
            found.append((float(xs.mean()) + 0.5, float(ys.mean()) + 0.5) if len(xs) >= 4 else None)
        if all(f is not None for f in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


class _MarkerWindow:
    """A borderless, always-on-top black X window with coloured squares; closed on exit."""

    def __init__(self, display: str, rect: tuple[int, int, int, int]):
        from Xlib import X
        from Xlib import display as xdisplay

        self._X = X
        self.d = xdisplay.Display(display)
        screen = self.d.screen()
        self.screen = screen
        x, y, w, h = rect
        self.window = screen.root.create_window(
            x, y, w, h, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
            background_pixel=screen.black_pixel, override_redirect=True, event_mask=X.ExposureMask,
        )

    def __enter__(self) -> "_MarkerWindow":
        X = self._X
        self.window.map()
        self.window.configure(stack_mode=X.Above)
        self.d.sync()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # draw only once the server shows the window
            if self.d.pending_events() and self.d.next_event().type == X.Expose:
                break
            time.sleep(0.01)
        return self

    def draw(self, points: list[tuple[int, int]], colors) -> None:
        colormap = self.screen.default_colormap
        for (x, y), (r, g, b) in zip(points, colors):
            pixel = colormap.alloc_color(r * 257, g * 257, b * 257).pixel
            gc = self.window.create_gc(foreground=pixel)
            self.window.fill_rectangle(gc, x - MARKER_HALF, y - MARKER_HALF, 2 * MARKER_HALF, 2 * MARKER_HALF)
            gc.free()
        self.d.sync()

    def __exit__(self, *exc) -> None:
        self.window.destroy()
        self.d.sync()
        self.d.close()


def _summary_line(r: MonitorReport) -> str:
    m = r.monitor
    errors = [c.shot_error_px for c in r.markers if c.shot_error_px is not None]
    cursor = max((c.cursor_error_px for c in r.markers), default=0.0)
    verdict = "OK" if r.agree else "MISMATCH"
    marker = f"markers within {max(errors):.1f} px" if errors else "markers not found"
    return (f"monitor {r.index}: {m['width']}x{m['height']}{m['left']:+d}{m['top']:+d}  "
            f"screenshot {r.screenshot_size[0]}x{r.screenshot_size[1]}  input {r.input_size[0]}x{r.input_size[1]}"
            f"{r.input_offset[0]:+d}{r.input_offset[1]:+d}  scale {r.scale:g}  {verdict} "
            f"({marker}, cursor within {cursor:.1f} px)")
