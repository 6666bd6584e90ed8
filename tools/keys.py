"""Key names: what the model writes in `keys` → one canonical name → pyautogui / Playwright names.

Qwen3-VL writes xdotool-ish, pyautogui-ish or browser-ish names ("ctrl", "Control_L", "cmd", "Return",
"ArrowUp", "page_down", "F5", "A") and sometimes a whole chord in one string ("ctrl+shift+k"). Both
executors go through `parse_chord`, so the same model output presses the same keys on the desktop and
in the browser, and an unknown name is an error instead of a silently dropped key (pyautogui ignores
names it does not know).
"""

from __future__ import annotations

import re

# canonical name -> aliases (compared after lowercasing and dropping "-", "_" and spaces)
_ALIASES: dict[str, tuple[str, ...]] = {
    "ctrl": ("ctrl", "control", "ctl", "controll", "ctrll", "lctrl", "controlleft", "ctrlleft"),
    "ctrlright": ("ctrlr", "controlr", "rctrl", "controlright", "ctrlright"),
    "shift": ("shift", "shiftl", "lshift", "shiftleft"),
    "shiftright": ("shiftr", "rshift", "shiftright"),
    "alt": ("alt", "altl", "lalt", "altleft", "option", "opt", "menualt"),
    "altright": ("altr", "ralt", "altright", "altgr", "isolevel3shift"),
    "super": ("super", "superl", "cmd", "command", "win", "windows", "winleft", "meta", "metal",
              "metaleft", "hyper", "os", "start"),
    "superright": ("superr", "winright", "metar", "metaright", "cmdright"),
    "enter": ("enter", "return", "ret", "kpenter", "numpadenter", "newline", "linefeed"),
    "escape": ("esc", "escape"),
    "tab": ("tab",),
    "space": ("space", "spacebar", "spc"),
    "backspace": ("backspace", "bksp", "bs"),
    "delete": ("delete", "del", "kpdelete", "forwarddelete"),
    "insert": ("insert", "ins"),
    "home": ("home",),
    "end": ("end",),
    "pageup": ("pageup", "pgup", "prior"),
    "pagedown": ("pagedown", "pgdn", "pgdown", "next"),
    "up": ("up", "arrowup", "uparrow", "kpup"),
    "down": ("down", "arrowdown", "downarrow", "kpdown"),
    "left": ("left", "arrowleft", "leftarrow", "kpleft"),
    "right": ("right", "arrowright", "rightarrow", "kpright"),
    "capslock": ("capslock", "caps"),
    "numlock": ("numlock",),
    "scrolllock": ("scrolllock",),
    "printscreen": ("printscreen", "print", "prtsc", "prtscr", "prntscrn", "sysrq"),
    "pause": ("pause", "break"),
    "menu": ("menu", "apps", "contextmenu", "application"),
}
_ALIAS_TO_CANONICAL = {alias: canon for canon, aliases in _ALIASES.items() for alias in (canon, *aliases)}
_FUNCTION_KEY = re.compile(r"^f([1-9]|1[0-9]|2[0-4])$")

_PYAUTOGUI = {
    "ctrl": "ctrl", "ctrlright": "ctrlright", "shift": "shift", "shiftright": "shiftright",
    "alt": "alt", "altright": "altright", "super": "win", "superright": "winright",
    "enter": "enter", "escape": "esc", "tab": "tab", "space": "space", "backspace": "backspace",
    "delete": "delete", "insert": "insert", "home": "home", "end": "end", "pageup": "pageup",
    "pagedown": "pagedown", "up": "up", "down": "down", "left": "left", "right": "right",
    "capslock": "capslock", "numlock": "numlock", "scrolllock": "scrolllock",
    "printscreen": "printscreen", "pause": "pause", "menu": "apps",
}
# Playwright's names are DOM `key` / `code` values.
_PLAYWRIGHT = {
    "ctrl": "Control", "ctrlright": "ControlRight", "shift": "Shift", "shiftright": "ShiftRight",
    "alt": "Alt", "altright": "AltRight", "super": "Meta", "superright": "MetaRight",
    "enter": "Enter", "escape": "Escape", "tab": "Tab", "space": "Space", "backspace": "Backspace",
    "delete": "Delete", "insert": "Insert", "home": "Home", "end": "End", "pageup": "PageUp",
    "pagedown": "PageDown", "up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft",
    "right": "ArrowRight", "capslock": "CapsLock", "numlock": "NumLock", "scrolllock": "ScrollLock",
    "printscreen": "PrintScreen", "pause": "Pause", "menu": "ContextMenu",
}


def canonical_key(name: str) -> str:
    """One key name → its canonical name ("Control_L" → "ctrl", "A" → "a", "F5" → "f5")."""
    raw = name.strip() if name.strip() else name  # " " is the space key, not empty
    if raw == "":
        raise ValueError("empty key name")
    if len(raw) == 1:
        if raw == " ":
            return "space"
        if raw == "\n":
            return "enter"
        if raw == "\t":
            return "tab"
        if not raw.isprintable():
            raise ValueError(f"unknown key {name!r}")
        # A chord names keys, not characters: "A" in ctrl+A means the A key, without shift.
        return raw.lower()
    folded = re.sub(r"[\s_\-]", "", raw.lower())
    if folded in _ALIAS_TO_CANONICAL:
        return _ALIAS_TO_CANONICAL[folded]
    if _FUNCTION_KEY.match(folded):
        return folded
    raise ValueError(f"unknown key {name!r}")


def parse_chord(keys: list[str]) -> list[str]:
    """The `keys` of a key action → canonical names in press order.

    Entries like "ctrl+c" are split on "+" (a lone "+" or a trailing "++" stays the plus key)."""
    if not keys:
        raise ValueError("action=key needs at least one key")
    names: list[str] = []
    for entry in keys:
        if not isinstance(entry, str):
            raise ValueError(f"key names must be strings, got {entry!r}")
        if len(entry) > 1 and "+" in entry:
            parts = entry.split("+")
            # "ctrl++" → ["ctrl", "", ""]: the empty pieces stand for the plus key itself
            if entry.endswith("++"):
                parts = parts[:-2] + ["+"]
            if any(p.strip() == "" for p in parts):
                raise ValueError(f"malformed key chord {entry!r}")
            names.extend(canonical_key(p) for p in parts)
        else:
            names.append(canonical_key(entry))
    return names


def pyautogui_key(canonical: str) -> str:
    """Canonical name → the name pyautogui's X11 keyboard mapping knows."""
    return _PYAUTOGUI.get(canonical, canonical)


def playwright_key(canonical: str) -> str:
    """Canonical name → Playwright's `keyboard.down/up` name."""
    if canonical in _PLAYWRIGHT:
        return _PLAYWRIGHT[canonical]
    if _FUNCTION_KEY.match(canonical):
        return canonical.upper()
    return canonical
