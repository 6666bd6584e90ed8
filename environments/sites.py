"""The bundled local web apps (flight booking, forms, settings) and the small HTTP server behind them.

Everything is offline and deterministic: flight schedules are a pure function of (origin, destination,
date), pages use no external resources, and what a user submits (a booking, a form, saved settings) is
written to one JSON state file that evaluators read like any other file (`vm_file` + `check_json`).

    with serve_bundled_sites() as base_url:        # http://127.0.0.1:<free port>
        ...                                          # base_url + "/flights/", "/forms/", "/settings/"
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import mimetypes
import os
import re
import secrets
import tempfile
import threading
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

SITES_DIR = Path(__file__).parent / "sites"
STATE_FILE_NAME = "sites_state.json"
# The sites live in a fixed "today" so that "12 March" always means the same day and tasks stay reproducible.
SITE_TODAY = dt.date(2026, 3, 1)

AIRPORTS: dict[str, str] = {
    "AMS": "Amsterdam", "ATH": "Athens", "BCN": "Barcelona", "BER": "Berlin", "CPH": "Copenhagen",
    "DUB": "Dublin", "LHR": "London", "LIS": "Lisbon", "MAD": "Madrid", "MUC": "Munich", "CDG": "Paris",
    "PRG": "Prague", "FCO": "Rome", "VIE": "Vienna", "WAW": "Warsaw", "ZRH": "Zurich",
}
AIRLINES = ("SkyLocal", "Aurora Air", "Baltic Wings", "Iberian Blue")
FLIGHTS_PER_DAY = 4
MAX_PASSENGERS = 4

MONTHS = {m.lower(): i for i, m in enumerate(
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
     "November", "December"], start=1)}


DEFAULT_SETTINGS = {"display_name": "", "language": "en", "theme": "light", "email_notifications": True}


def empty_state() -> dict:
    # `submitted` counts what each endpoint stored, so a task's check_json can require exactly one
    # booking with an `eq` rule (OSWorld's check_json crashes on a list index past the end).
    return {"bookings": [], "forms": {}, "settings": dict(DEFAULT_SETTINGS), "submitted": {}}


def record(state: dict, kind: str, entries: list, entry: dict) -> None:
    entries.append(entry)
    state.setdefault("submitted", {})[kind] = len(entries)


# ---------------------------------------------------------------------------------------------------
# Flight data


def find_airport(text: str) -> str:
    """IATA code for a city name or code typed by a user ("Berlin", "ber", "Lisbon (LIS)")."""
    query = re.sub(r"\(.*?\)", "", text).strip().lower()
    code = re.search(r"\(([A-Za-z]{3})\)", text)
    if code and code.group(1).upper() in AIRPORTS:
        return code.group(1).upper()
    if not query:
        raise ValueError("enter a city")
    if query.upper() in AIRPORTS:
        return query.upper()
    matches = [c for c, city in AIRPORTS.items() if city.lower() == query]
    matches = matches or [c for c, city in AIRPORTS.items() if city.lower().startswith(query)]
    if len(matches) != 1:
        raise ValueError(f"no airport matches '{text.strip()}'" if not matches else f"'{text.strip()}' is ambiguous")
    return matches[0]


def parse_date(text: str) -> dt.date:
    """A travel date as people type it: 2026-03-12, 12 March, March 12, 12 Mar 2026, 12/03/2026, 12.03."""
    s = text.strip().lower().replace(",", " ")
    if not s:
        raise ValueError("enter a date")
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", s)
    if m:
        y, mo, d = map(int, m.groups())
        return _date(y, mo, d, text)
    m = re.fullmatch(r"(\d{1,2})[./](\d{1,2})(?:[./](\d{2,4}))?", s)
    if m:  # European day-first order
        d, mo = int(m.group(1)), int(m.group(2))
        y = int(m.group(3)) if m.group(3) else SITE_TODAY.year
        return _date(y + 2000 if y < 100 else y, mo, d, text)
    day = year = month = None
    for word in s.split():
        number = re.fullmatch(r"(\d+)(?:st|nd|rd|th)?\.?", word)
        if number and len(number.group(1)) == 4:
            year = int(number.group(1))
        elif number:
            day = int(number.group(1))
        else:
            word = word.rstrip(".")
            month = next((n for name, n in MONTHS.items() if len(word) >= 3 and name.startswith(word)), month)
    if day is None or month is None:
        raise ValueError(f"cannot read the date '{text.strip()}' (try 12 March or 2026-03-12)")
    return _date(year or SITE_TODAY.year, month, day, text)


def _date(y: int, mo: int, d: int, text: str) -> dt.date:
    try:
        return dt.date(y, mo, d)
    except ValueError:
        raise ValueError(f"'{text.strip()}' is not a calendar date") from None


def flights_for(origin: str, destination: str, date: dt.date) -> list[dict]:
    """The day's schedule between two airports, sorted by departure; same inputs, same flights."""
    seed = hashlib.sha256(f"{origin}-{destination}-{date.isoformat()}".encode()).digest()
    flights = []
    for i in range(FLIGHTS_PER_DAY):
        b = seed[i * 6:(i + 1) * 6]
        depart = 6 * 60 + i * 4 * 60 + b[0] % 180  # spread over the day, one per 4-hour block
        duration = 75 + b[1] % 150
        flights.append({
            "flight": f"QV{100 + (b[2] * 256 + b[3]) % 900}",
            "airline": AIRLINES[b[4] % len(AIRLINES)],
            "depart": _hhmm(depart),
            "arrive": _hhmm(depart + duration),
            "duration_min": duration,
            "price_eur": 49 + (b[5] * 7 + b[1]) % 400,
        })
    return flights


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def search(params: dict[str, str]) -> dict:
    origin = find_airport(params.get("origin", ""))
    destination = find_airport(params.get("destination", ""))
    if origin == destination:
        raise ValueError("origin and destination are the same")
    date = parse_date(params.get("date", ""))
    if date < SITE_TODAY:
        raise ValueError(f"{date:%d %B %Y} is in the past")
    return {
        "origin": {"code": origin, "city": AIRPORTS[origin]},
        "destination": {"code": destination, "city": AIRPORTS[destination]},
        "date": date.isoformat(),
        "date_label": f"{date:%a %d %b %Y}",
        "flights": flights_for(origin, destination, date),
    }


def make_booking(req: dict) -> dict:
    """Validate a booking request against the schedule; the server, not the page, decides the price."""
    found = search(req)
    flight = next((f for f in found["flights"] if f["flight"] == req.get("flight")), None)
    if flight is None:
        raise ValueError("unknown flight")
    passengers = req.get("passengers") or []
    if not 1 <= len(passengers) <= MAX_PASSENGERS:
        raise ValueError(f"1 to {MAX_PASSENGERS} passengers")
    clean = []
    for i, p in enumerate(passengers, 1):
        first, last = str(p.get("first_name", "")).strip(), str(p.get("last_name", "")).strip()
        if not first or not last:
            raise ValueError(f"passenger {i}: first and last name are required")
        clean.append({"first_name": first, "last_name": last})
    email = str(req.get("email", "")).strip()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise ValueError("enter a valid email address")
    return {
        "code": secrets.token_hex(3).upper(),
        "origin": found["origin"]["code"],
        "destination": found["destination"]["code"],
        "date": found["date"],
        "flight": flight["flight"],
        "depart": flight["depart"],
        "price_eur": flight["price_eur"],
        "total_eur": flight["price_eur"] * len(clean),
        "passengers": clean,
        "email": email,
    }


# ---------------------------------------------------------------------------------------------------
# Server


class SiteServer:
    """The bundled sites on 127.0.0.1, serving static files and a small JSON API, in a daemon thread."""

    def __init__(self, state_dir: str | os.PathLike | None = None, port: int = 0):
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="qvl-sites-")
        self.state_dir = Path(state_dir or self._tmp.name)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.state_dir / STATE_FILE_NAME
        self._lock = threading.Lock()
        self.reset_state()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="qvl-sites", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def reset_state(self) -> None:
        with self._lock:
            self._write(empty_state())

    def read_state(self) -> dict:
        with self._lock:
            return json.loads(self.state_file.read_text())

    def update_state(self, change) -> dict:
        """Apply `change(state)` and persist atomically, so an evaluator never reads half a file."""
        with self._lock:
            state = json.loads(self.state_file.read_text())
            change(state)
            self._write(state)
            return state

    def _write(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False))
        os.replace(tmp, self.state_file)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "SiteServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def serve_bundled_sites(state_dir: str | os.PathLike | None = None, port: int = 0) -> Iterator[str]:
    """Serve the bundled web apps on a free 127.0.0.1 port and yield the base URL (no trailing slash).

    Submitted bookings/forms/settings go to `<state_dir>/sites_state.json` (a temp dir if not given).
    """
    with SiteServer(state_dir, port) as server:
        yield server.url


def _handler_for(server: SiteServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test and eval output clean
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/api/flights":
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                return self._api(lambda: search(params))
            if url.path == "/api/airports":
                return self._json(HTTPStatus.OK, [{"code": c, "city": n} for c, n in AIRPORTS.items()])
            if url.path == "/api/state":
                return self._json(HTTPStatus.OK, server.read_state())
            self._static(url.path)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except json.JSONDecodeError:
                return self._json(HTTPStatus.BAD_REQUEST, {"error": "request body is not JSON"})
            if url.path == "/api/bookings":
                return self._api(lambda: self._store_booking(body))
            m = re.fullmatch(r"/api/forms/([a-z_]+)", url.path)
            if m:
                return self._api(lambda: self._store_form(m.group(1), body))
            if url.path == "/api/settings":
                return self._api(lambda: self._store_settings(body))
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {url.path}"})

        def _store_booking(self, body: dict) -> dict:
            booking = make_booking(body)
            server.update_state(lambda s: record(s, "bookings", s["bookings"], booking))
            return booking

        def _store_form(self, name: str, body: dict) -> dict:
            entry = {k: v for k, v in body.items() if isinstance(v, (str, bool, int, float, list))}
            server.update_state(lambda s: record(s, name, s["forms"].setdefault(name, []), entry))
            return {"ok": True}

        def _store_settings(self, body: dict) -> dict:
            def change(s):
                unknown = sorted(set(body) - set(DEFAULT_SETTINGS))
                if unknown:
                    raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
                s["settings"].update(body)
            return server.update_state(change)["settings"]

        def _api(self, produce) -> None:
            try:
                self._json(HTTPStatus.OK, produce())
            except ValueError as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})

        def _json(self, status: HTTPStatus, payload) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _static(self, path: str) -> None:
            rel = path.lstrip("/")
            target = (SITES_DIR / rel).resolve()
            if target.is_dir():
                if not path.endswith("/"):  # so relative links in index.html resolve inside the app
                    self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                    self.send_header("Location", path + "/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                target = target / "index.html"
            if not target.is_relative_to(SITES_DIR.resolve()) or not target.is_file():
                return self._json(HTTPStatus.NOT_FOUND, {"error": f"not found: {path}"})
            data = target.read_bytes()
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"{ctype}; charset=utf-8" if ctype.startswith("text/") or
                             ctype.endswith("javascript") else ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

    return Handler


# ---------------------------------------------------------------------------------------------------
# Task placeholders

SITE_PLACEHOLDER = "{SITE}"  # base URL of the running sites server, e.g. "{SITE}/flights/"
SITE_STATE_PLACEHOLDER = "{SITE_STATE}"  # absolute path of its state file, for vm_file getters


def uses_sites(task_json) -> bool:
    text = json.dumps(task_json)
    return SITE_PLACEHOLDER in text or SITE_STATE_PLACEHOLDER in text


def fill_site_placeholders(task_json, server: SiteServer):
    """JSON data (a task, an oracle's replies) with {SITE} and {SITE_STATE} replaced by this server's URL
    and state file, in every string."""
    text = json.dumps(task_json, ensure_ascii=False)
    text = text.replace(SITE_PLACEHOLDER, server.url)
    text = text.replace(SITE_STATE_PLACEHOLDER, json.dumps(str(server.state_file))[1:-1])
    return json.loads(text)
