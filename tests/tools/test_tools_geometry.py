"""What executors share, without a display: screenshot px → input px for HiDPI and multi-monitor layouts,
wheel notches, line breaks in `type`, and the actions no input device takes part in."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.actions import Action, ActionOutcome
from tools.base import require_target, run_without_device, type_text, wheel_notches
from tools.desktop import geometry_for_monitor


def test_retina_2x_capture_maps_to_logical_points():
    # macOS-style: mss monitor in points, the grabbed image in physical pixels
    g = geometry_for_monitor({"left": 0, "top": 0, "width": 1440, "height": 900}, (2880, 1800))
    assert g.scale == 2.0
    assert g.to_input(1440, 900) == (720, 450)
    assert g.to_input(2879, 1799) == (1439, 899)
    assert g.to_input(1, 1) == (0, 0)  # 0.5 rounds to even


def test_monitor_left_of_and_above_the_primary():
    g = geometry_for_monitor({"left": -1920, "top": -200, "width": 1920, "height": 1080}, (1920, 1080))
    assert g.to_input(0, 0) == (-1920, -200)
    assert g.to_input(960, 540) == (-960, 340)
    assert g.to_input(1919, 1079) == (-1, 879)


def test_hidpi_secondary_monitor_with_negative_offset():
    g = geometry_for_monitor({"left": -1512, "top": 0, "width": 1512, "height": 982}, (3024, 1964))
    assert g.to_input(3024 / 2, 1964 / 2) == (-756, 491)
    assert g.to_input(3023, 1963) == (-1, 981)


def test_capture_and_input_in_different_units():
    # Windows without DPI awareness: mss sees 3840 physical px, pyautogui 1920 scaled px
    g = geometry_for_monitor({"left": 3840, "top": 0, "width": 3840, "height": 2160}, (3840, 2160),
                             input_per_monitor_unit=0.5)
    assert (g.input_width, g.input_height, g.left) == (1920, 1080, 1920)
    assert g.to_input(3840 / 2, 2160 / 2) == (1920 + 960, 540)


def test_targets_outside_the_screenshot_are_clamped_into_the_monitor():
    g = geometry_for_monitor({"left": -1920, "top": 0, "width": 1920, "height": 1080}, (3840, 2160))
    assert g.to_input(-50, 99999) == (-1920, 1079)
    assert g.to_input(99999, -5) == (-1, 0)


@given(
    left=st.integers(-5000, 5000), top=st.integers(-3000, 3000),
    width=st.integers(1, 4000), height=st.integers(1, 3000), scale=st.sampled_from([1, 1.25, 1.5, 2, 3]),
    fx=st.floats(-0.5, 1.5), fy=st.floats(-0.5, 1.5),
)
def test_every_target_lands_on_the_monitor(left, top, width, height, scale, fx, fy):
    shot = (max(1, round(width * scale)), max(1, round(height * scale)))
    g = geometry_for_monitor({"left": left, "top": top, "width": width, "height": height}, shot)
    x, y = g.to_input(fx * shot[0], fy * shot[1])
    assert left <= x < left + width and top <= y < top + height
    if 0 <= fx < 1 and 0 <= fy < 1:  # inside the image: off by at most one input pixel
        assert abs(x - (left + fx * width)) <= 1 and abs(y - (top + fy * height)) <= 1


def test_wheel_notches():
    assert [wheel_notches(p) for p in (-5, 3.4, 0.2, -0.2, 0)] == [-5, 3, 1, -1, 0]


def test_type_text_presses_enter_at_every_kind_of_line_break():
    events: list[str] = []
    type_text("ab\r\nc\rd\n\ne\n", events.append, lambda: events.append("<enter>"))
    assert events == ["ab", "<enter>", "c", "<enter>", "d", "<enter>", "<enter>", "e", "<enter>"]
    events.clear()
    type_text("", events.append, lambda: events.append("<enter>"))
    assert events == []


def test_wait_answer_terminate_need_no_device():
    t0 = time.monotonic()
    assert run_without_device(Action(action="wait", time=0.2)) == ActionOutcome()
    assert time.monotonic() - t0 >= 0.2
    assert run_without_device(Action(action="answer", text="Lisbon")) == ActionOutcome(answer="Lisbon", done=True)
    assert run_without_device(Action(action="terminate", status="success")) == ActionOutcome(done=True, success=True)
    assert run_without_device(Action(action="terminate", status="failure")) == ActionOutcome(done=True, success=False)
    for device_action in (Action(action="left_click"), Action(action="type", text="x"),
                          Action(action="key", keys=["enter"]), Action(action="scroll", pixels=1)):
        assert run_without_device(device_action) is None


def test_require_target_names_the_action():
    assert require_target((3, 4), "mouse_move") == (3, 4)
    with pytest.raises(ValueError, match="action=left_click_drag needs a target point"):
        require_target(None, "left_click_drag")
