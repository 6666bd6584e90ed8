"""Key names the model writes → canonical → pyautogui / Playwright names."""

from __future__ import annotations

import pytest

from tools.keys import canonical_key, parse_chord, playwright_key, pyautogui_key


@pytest.mark.parametrize(
    "names, canonical",
    [
        (["ctrl", "Control", "CONTROL_L", "ctrl_left", "Ctl"], "ctrl"),
        (["cmd", "Command", "super", "Super_L", "win", "Windows", "meta"], "super"),
        (["alt", "Alt_L", "option"], "alt"),
        (["shift", "Shift_L", "SHIFT"], "shift"),
        (["enter", "Return", "KP_Enter", "\n"], "enter"),
        (["esc", "Escape", "ESC"], "escape"),
        (["page_up", "PageUp", "pgup", "Prior", "Page-Up"], "pageup"),
        (["pagedown", "page_down", "Next", "PgDn"], "pagedown"),
        (["up", "ArrowUp", "Up", "up_arrow"], "up"),
        (["Left", "arrowleft"], "left"),
        (["BackSpace", "backspace"], "backspace"),
        (["space", " ", "Space"], "space"),
        (["F1", "f1"], "f1"),
        (["F12"], "f12"),
        (["A", "a"], "a"),
        (["+"], "+"),
        (["/"], "/"),
    ],
)
def test_aliases(names, canonical):
    assert [canonical_key(n) for n in names] == [canonical] * len(names)


def test_chords_written_as_one_string_are_split():
    assert parse_chord(["ctrl+shift+K"]) == ["ctrl", "shift", "k"]
    assert parse_chord(["Control_L", "c"]) == ["ctrl", "c"]
    assert parse_chord(["ctrl++"]) == ["ctrl", "+"]
    assert parse_chord(["+"]) == ["+"]
    assert parse_chord(["alt", "F4"]) == ["alt", "f4"]


@pytest.mark.parametrize("bad", [["hyperdrive"], ["ctrl", "f99"], [""], ["ctrl+"], [], ["é\x00"]])
def test_unknown_or_malformed_keys_are_errors(bad):
    with pytest.raises(ValueError):
        parse_chord(bad)


def test_backend_names():
    chord = parse_chord(["cmd", "alt", "shift", "Return", "pgdn", "ArrowLeft", "F5", "k", "Escape", " "])
    assert [pyautogui_key(k) for k in chord] == [
        "win", "alt", "shift", "enter", "pagedown", "left", "f5", "k", "esc", "space"]
    assert [playwright_key(k) for k in chord] == [
        "Meta", "Alt", "Shift", "Enter", "PageDown", "ArrowLeft", "F5", "k", "Escape", "Space"]


@pytest.mark.display
def test_every_canonical_name_is_known_to_pyautogui(x_display):
    """pyautogui silently ignores names it does not know: every name we produce must be one it knows."""
    from tools.desktop import DesktopExecutor
    from tools.keys import _ALIASES

    pg = DesktopExecutor(display=x_display)._pg  # imports pyautogui bound to the test display
    names = list(_ALIASES) + [f"f{i}" for i in range(1, 25)] + [chr(c).lower() for c in range(0x21, 0x7F)]
    unknown = [n for n in names if not pg.isValidKey(pyautogui_key(canonical_key(n)))]
    assert unknown == []
