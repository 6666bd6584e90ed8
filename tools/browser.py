"""Browser executor: the `computer_use` actions on a Playwright page (Debian chromium).

Targets arrive in screenshot pixels of the viewport; with device_scale_factor > 1 a screenshot has
more pixels than the page has CSS pixels, and `geometry` maps one to the other. Action semantics
match the desktop executor (tools/base.py, tools/desktop.py): `pixels` counts wheel notches, scroll positive = up,
hscroll positive = right, "\n" in `type` presses Enter, a click without a target clicks where the
pointer last was.

Domain lists are enforced by routing every request of the browser context: a blocked request is
aborted, and a blocked *navigation* makes the action that caused it report `ok=False` with the
reason, so the agent sees why the page did not change.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from agent.actions import Action, ActionOutcome
from tools.base import CLICKS, ScreenGeometry, require_target, run_without_device, type_text, wheel_notches
from tools.keys import parse_chord, playwright_key

def find_chromium() -> str:
    """$QVL_CHROMIUM, else Debian's chromium, else a Chromium that `playwright install chromium` downloaded (Ubuntu
    ships chromium as a snap, which Playwright cannot drive). The Debian path when none is there, for the error."""
    import glob

    if os.environ.get("QVL_CHROMIUM"):
        return os.environ["QVL_CHROMIUM"]
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    cache = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or str(Path.home() / ".cache" / "ms-playwright")
    found = sorted(glob.glob(os.path.join(cache, "chromium-*", "chrome-linux*", "chrome")))
    return found[-1] if found else "/usr/bin/chromium"


CHROMIUM = find_chromium()
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# CSS pixels per wheel notch: what Chromium on X11 scrolls for one notch of a real wheel (deltaY 120),
# so the same `pixels` scrolls the same distance in the browser and on the desktop executor.
WHEEL_NOTCH_PX = 120
# Schemes whose URLs name a host the domain lists apply to; data:, blob:, about: and file: pages have none.
_HOST_SCHEMES = {"http", "https", "ws", "wss", "ftp"}

_FOCUSED_IS_PASSWORD_JS = """() => {
  let el = document.activeElement;
  // descend into open shadow roots and same-origin frames to the element that really has focus
  for (;;) {
    if (el && el.shadowRoot && el.shadowRoot.activeElement) { el = el.shadowRoot.activeElement; continue; }
    if (el && (el.tagName === 'IFRAME' || el.tagName === 'FRAME')) {
      try { const inner = el.contentDocument && el.contentDocument.activeElement;
            if (inner) { el = inner; continue; } } catch (e) {}
    }
    break;
  }
  if (!el || el.tagName !== 'INPUT') return false;
  const type = (el.getAttribute('type') || '').toLowerCase();
  return type === 'password' || (el.autocomplete || '').includes('password');
}"""


class SharedPlaywright:
    """One sync Playwright driver per thread: a second `sync_playwright().start()` in the same thread
    fails ("Sync API inside the asyncio loop"), so executors launched in one thread share it."""

    def __init__(self):
        self._local = threading.local()

    def acquire(self) -> Any:
        from playwright.sync_api import sync_playwright

        local = self._local
        if getattr(local, "users", 0) == 0:
            local.driver = sync_playwright().start()
            local.users = 0
        local.users += 1
        return local.driver

    def release(self) -> None:
        local = self._local
        local.users -= 1
        if local.users == 0:
            driver, local.driver = local.driver, None
            driver.stop()


shared_playwright = SharedPlaywright()


class DomainPolicy:
    """Allow/deny lists of domains; an entry matches the domain and its subdomains."""

    def __init__(self, allow_domains=None, deny_domains=None):
        self.allow = [_clean_domain(d) for d in allow_domains or []]
        self.deny = [_clean_domain(d) for d in deny_domains or []]

    def __bool__(self) -> bool:
        return bool(self.allow or self.deny)

    def blocked_reason(self, url: str) -> str | None:
        """Why `url` may not be loaded, or None when it may."""
        parts = urlsplit(url)
        if parts.scheme not in _HOST_SCHEMES:
            return None
        host = (parts.hostname or "").lower()
        for d in self.deny:
            if _matches(host, d):
                return f"{host} is on the deny list ({d})"
        if self.allow and not any(_matches(host, d) for d in self.allow):
            return f"{host} is not on the allow list ({', '.join(self.allow)})"
        return None


def _is_main_frame(request: Any) -> bool:
    try:
        return request.frame.parent_frame is None
    except Exception:  # service-worker requests have no frame
        return False


def _clean_domain(d: str) -> str:
    d = d.strip().lower()
    if "://" in d:
        d = urlsplit(d).hostname or ""
    d = d.lstrip("*").lstrip(".")
    if not d:
        raise ValueError("empty domain in allow/deny list")
    return d


def _matches(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


class BrowserExecutor:
    """tools.base.Executor on a Playwright page. Pass a page you own, or `launch()` one it owns."""

    def __init__(self, page: Any, *, allow_domains=None, deny_domains=None):
        self.page = page
        self.policy = DomainPolicy(allow_domains, deny_domains)
        self._blocked: list[str] = []  # navigations aborted since the last action started
        self._mouse = (0.0, 0.0)  # CSS px; Playwright does not report the pointer position
        self._owned: list[Any] = []  # things launch() created, closed in reverse order
        self._geometry = self._measure_geometry()
        context = page.context
        if self.policy:
            context.route("**/*", self._route)
        # popups and target=_blank links: keep acting on the page the user would be looking at
        context.on("page", self._on_new_page)

    @classmethod
    def launch(
        cls,
        *,
        headless: bool = True,
        viewport: tuple[int, int] = (1280, 800),
        start_url: str | None = None,
        allow_domains=None,
        deny_domains=None,
        cdp_port: int | None = None,
        user_data_dir: str | Path | None = None,
        device_scale_factor: float = 1.0,
    ) -> "BrowserExecutor":
        """Start Debian chromium and return an executor that owns it (close() stops it)."""
        if not Path(CHROMIUM).exists():
            raise FileNotFoundError(f"{CHROMIUM} is missing: apt-get install chromium (Debian), or "
                                    "python3 -m playwright install --with-deps chromium (Ubuntu and others)")
        args = list(CHROMIUM_ARGS)
        if cdp_port is not None:
            args.append(f"--remote-debugging-port={int(cdp_port)}")
        options = dict(
            viewport={"width": int(viewport[0]), "height": int(viewport[1])},
            device_scale_factor=device_scale_factor,
        )
        if not headless and not os.environ.get("DISPLAY"):
            raise ValueError("a headed browser needs an X display: set DISPLAY or use headless=True")
        # The shared Playwright driver may predate DISPLAY/XAUTHORITY being set; hand chromium ours.
        env = dict(os.environ)
        pw = shared_playwright.acquire()
        browser = context = None
        try:
            if user_data_dir is not None:
                context = pw.chromium.launch_persistent_context(
                    str(user_data_dir), executable_path=CHROMIUM, headless=headless, args=args, env=env,
                    **options,
                )
                browser = None
                page = context.pages[0] if context.pages else context.new_page()
            else:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=headless, args=args, env=env)
                context = browser.new_context(**options)
                page = context.new_page()
            executor = cls(page, allow_domains=allow_domains, deny_domains=deny_domains)
        except Exception:
            for thing in (context, browser):
                if thing is not None:
                    thing.close()
            shared_playwright.release()
            raise
        executor._owned = [shared_playwright, browser, context]
        if start_url:
            try:
                executor.goto(start_url)
            except Exception:
                executor.close()
                raise
        return executor

    # --- Executor -----------------------------------------------------------------------------------
    @property
    def geometry(self) -> ScreenGeometry:
        return self._geometry

    def screenshot(self) -> Image.Image:
        from playwright.sync_api import Error as PlaywrightError

        try:
            png = self.page.screenshot(type="png")
        except PlaywrightError:  # "Unable to capture screenshot" while a navigation commits: capture its page
            self.page.wait_for_load_state("load")
            png = self.page.screenshot(type="png")
        image = Image.open(io.BytesIO(png)).convert("RGB")
        if image.size != (self._geometry.shot_width, self._geometry.shot_height):
            self._geometry = self._measure_geometry(image.size)
        return image

    def execute(self, action: Action, target: tuple[float, float] | None = None) -> ActionOutcome:
        self._blocked.clear()
        try:
            outcome = self._execute(action, target)
        except ValueError as e:
            return ActionOutcome(ok=False, error=str(e))
        if self._blocked:
            return outcome.model_copy(update={"ok": False, "error": "blocked navigation: " + "; ".join(self._blocked)})
        return outcome

    def close(self) -> None:
        owned, self._owned = self._owned, []
        for thing in reversed(owned):
            if thing is None:
                continue
            try:
                thing.release() if thing is shared_playwright else thing.close()
            except Exception:  # already gone (browser crashed or closed by the user)
                pass

    # --- browser-specific ---------------------------------------------------------------------------
    def goto(self, url: str) -> None:
        """Navigate the current page. A bare "example.com" means https://, an existing path its file://
        URL; a URL the domain lists forbid, or one that cannot be loaded, raises ValueError."""
        if not urlsplit(url).scheme:
            url = Path(url).resolve().as_uri() if Path(url).exists() else "https://" + url
        reason = self.policy.blocked_reason(url)
        if reason:
            raise ValueError(f"navigation to {url} blocked: {reason}")
        from playwright.sync_api import Error as PlaywrightError

        try:
            self.page.goto(url, wait_until="load")
        except PlaywrightError as e:
            raise ValueError(f"cannot open {url}: {str(e).splitlines()[0]}") from e

    def focused_is_password(self) -> bool:
        """Whether keyboard input would go into a password field (the loop asks before `type`)."""
        try:
            return bool(self.page.evaluate(_FOCUSED_IS_PASSWORD_JS))
        except Exception:  # page navigating or closed: nothing is focused
            return False

    # --- internals ----------------------------------------------------------------------------------
    def _measure_geometry(self, shot_size: tuple[int, int] | None = None) -> ScreenGeometry:
        size = self.page.viewport_size
        if size is None:  # no fixed viewport (e.g. a headed window): ask the page
            width, height = self.page.evaluate("() => [window.innerWidth, window.innerHeight]")
        else:
            width, height = size["width"], size["height"]
        if shot_size is None:
            ratio = float(self.page.evaluate("() => window.devicePixelRatio") or 1.0)
            shot_size = (round(width * ratio), round(height * ratio))
        return ScreenGeometry(shot_width=shot_size[0], shot_height=shot_size[1], input_width=width, input_height=height)

    def _route(self, route: Any) -> None:
        request = route.request
        reason = self.policy.blocked_reason(request.url)
        if reason is None:
            route.continue_()
            return
        if request.is_navigation_request() and _is_main_frame(request):
            self._blocked.append(f"{request.url} ({reason})")
            # 204 No Content keeps the current document instead of showing chrome's error page
            route.fulfill(status=204, body="")
        else:  # sub-resources and iframes: fail quietly, the page the agent sees stays usable
            route.abort("blockedbyclient")

    def _on_new_page(self, page: Any) -> None:
        self.page = page
        page.on("close", self._on_page_closed)
        try:
            page.wait_for_load_state("domcontentloaded", timeout=5000)
        except Exception:
            pass

    def _on_page_closed(self, page: Any) -> None:
        if page is self.page:
            remaining = [p for p in page.context.pages if not p.is_closed()]
            if remaining:
                self.page = remaining[-1]

    def _execute(self, action: Action, target: tuple[float, float] | None) -> ActionOutcome:
        outcome = run_without_device(action)
        if outcome is not None:
            return outcome
        mouse = self.page.mouse
        name = action.action
        point = self._geometry.to_input(*target) if target is not None else None

        if name in CLICKS:
            button, clicks = CLICKS[name]
            x, y = point if point is not None else self._mouse
            # click_count makes the n-th press carry detail=n, so the page sees a real double/triple
            mouse.click(x, y, button=button, click_count=clicks)
            return self._pointer_outcome(x, y)
        if name == "mouse_move":
            x, y = require_target(point, name)
            mouse.move(x, y)
            return self._pointer_outcome(x, y)
        if name == "left_click_drag":
            x, y = require_target(point, name)
            mouse.down(button="left")
            try:
                mouse.move(x, y, steps=12)
            finally:
                mouse.up(button="left")
            return self._pointer_outcome(x, y)
        if name in ("scroll", "hscroll"):
            if point is not None:
                mouse.move(*point)
                self._mouse = point
            delta = wheel_notches(action.pixels) * WHEEL_NOTCH_PX
            if name == "scroll":
                mouse.wheel(0, -delta)  # positive pixels = up = negative deltaY
            else:
                mouse.wheel(delta, 0)
            self._settle()
            return self._pointer_outcome(*self._mouse)
        if name == "key":
            self._press_chord(parse_chord(action.keys or []))
            self._settle()
            return ActionOutcome()
        if name == "type":
            type_text(action.text or "", self._type_line, lambda: self.page.keyboard.press("Enter"))
            return ActionOutcome()
        raise ValueError(f"unsupported action {name!r}")

    def _pointer_outcome(self, x: float, y: float) -> ActionOutcome:
        self._mouse = (x, y)
        self._settle()
        return ActionOutcome(input_point=(int(round(x)), int(round(y))))

    def _settle(self) -> None:
        """Let a navigation the action started reach the router, so a blocked one is seen by this action."""
        try:
            if self.policy:
                self.page.wait_for_timeout(100)  # route handlers run only while Playwright is waiting
            self.page.wait_for_load_state("domcontentloaded", timeout=3000)
        except Exception:
            pass

    def _press_chord(self, canonical: list[str]) -> None:
        keyboard = self.page.keyboard
        names = [playwright_key(k) for k in canonical]
        if "shift" in canonical:  # a real keyboard reports key "K" for shift+k; Playwright would say "k"
            names = [k.upper() if len(k) == 1 else k for k in names]
        pressed: list[str] = []
        try:
            for k in names:
                try:
                    keyboard.down(k)
                except Exception as e:  # Playwright: 'Unknown key: "..."'
                    raise ValueError(f"the browser keyboard has no key {k!r}") from e
                pressed.append(k)
        finally:
            for k in reversed(pressed):
                keyboard.up(k)

    def _type_line(self, line: str) -> None:
        if line.isascii():
            self.page.keyboard.type(line)  # real key events, like a person typing
        else:
            self.page.keyboard.insert_text(line)  # one input event; key events cannot carry "é" or "✓"

