"""The bundled sites: schedule data, date/city parsing, the JSON API and its state file, static files."""

from __future__ import annotations

import datetime as dt
import json
import re

import httpx
import pytest

from environments.sites import (FLIGHTS_PER_DAY, SITES_DIR, SiteServer, fill_site_placeholders,
                                find_airport, flights_for, parse_date, serve_bundled_sites, uses_sites)


@pytest.mark.parametrize("text", ["12 March", "March 12", "12 Mar 2026", "2026-03-12", "12/03/2026", "12.03",
                                  "March 12th, 2026", " 12 march "])
def test_parse_date_reads_what_people_type(text):
    assert parse_date(text) == dt.date(2026, 3, 12)


@pytest.mark.parametrize("text", ["", "tomorrow", "31 February", "2026-13-01"])
def test_parse_date_rejects_with_a_message(text):
    with pytest.raises(ValueError, match=r"\S"):
        parse_date(text)


def test_find_airport_by_city_code_and_prefix():
    assert find_airport("Berlin") == "BER"
    assert find_airport("lis") == "LIS"
    assert find_airport("Lisbon (LIS)") == "LIS"
    assert find_airport("ams") == "AMS"
    assert find_airport("Vien") == "VIE"
    with pytest.raises(ValueError, match="no airport matches 'New York'"):
        find_airport("New York")


def test_schedule_is_deterministic_and_sorted():
    day = dt.date(2026, 3, 12)
    a = flights_for("BER", "LIS", day)
    assert a == flights_for("BER", "LIS", day)
    assert a != flights_for("LIS", "BER", day)
    assert len(a) == FLIGHTS_PER_DAY
    assert [f["depart"] for f in a] == sorted(f["depart"] for f in a)
    assert all(re.fullmatch(r"QV\d{3}", f["flight"]) and f["price_eur"] > 0 for f in a)


def test_api_search_booking_and_state_file(tmp_path):
    with SiteServer(tmp_path) as server, httpx.Client(base_url=server.url) as http:
        r = http.get("/api/flights", params={"origin": "Berlin", "destination": "Lisbon", "date": "12 March"})
        assert r.status_code == 200
        found = r.json()
        assert (found["origin"]["code"], found["destination"]["code"], found["date"]) == ("BER", "LIS", "2026-03-12")
        flight = found["flights"][1]

        bad = http.get("/api/flights", params={"origin": "Berlin", "destination": "Berlin", "date": "12 March"})
        assert bad.status_code == 400 and "same" in bad.json()["error"]
        past = http.get("/api/flights", params={"origin": "Berlin", "destination": "Lisbon", "date": "1 January"})
        assert past.status_code == 400 and "past" in past.json()["error"]

        request = {"origin": "Berlin", "destination": "Lisbon", "date": "12 March", "flight": flight["flight"],
                   "passengers": [{"first_name": "Ada", "last_name": "Lovelace"},
                                  {"first_name": "Alan", "last_name": "Turing"}],
                   "email": "ada@example.com"}
        assert http.post("/api/bookings", json={**request, "email": "nope"}).status_code == 400
        assert http.post("/api/bookings", json={**request, "flight": "QV000"}).status_code == 400
        assert json.loads(server.state_file.read_text())["bookings"] == []  # rejected requests store nothing
        booking = http.post("/api/bookings", json=request).json()
        assert booking["total_eur"] == 2 * flight["price_eur"]  # priced by the server, not the page

        state = json.loads((tmp_path / "sites_state.json").read_text())
        assert state["bookings"] == [booking]
        assert http.get("/api/state").json() == state

        assert http.post("/api/forms/contact", json={"name": "Ada", "newsletter": True}).status_code == 200
        assert http.post("/api/settings", json={"language": "de"}).json()["language"] == "de"
        assert http.post("/api/settings", json={"colour": "red"}).status_code == 400
        state = server.read_state()
        assert state["forms"] == {"contact": [{"name": "Ada", "newsletter": True}]}
        assert state["settings"]["language"] == "de" and state["settings"]["theme"] == "light"

        server.reset_state()
        assert server.read_state()["bookings"] == [] and server.read_state()["settings"]["language"] == "en"


def test_static_files_portal_and_no_escape():
    with serve_bundled_sites() as url, httpx.Client(base_url=url) as http:
        portal = http.get("/").text
        for app in ("/flights/", "/forms/", "/settings/"):
            assert f'href="{app}"' in portal
            r = http.get(app)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert http.get("/flights").status_code == 301  # so relative links resolve inside the app
        assert http.get("/flights/flights.js").headers["content-type"].startswith("text/javascript")
        assert http.get("/../sites.py").status_code == 404
        assert http.get("/%2e%2e/sites.py").status_code == 404
        assert http.post("/api/nothing", json={}).status_code == 404


def test_pages_use_no_external_resources():
    for page in SITES_DIR.rglob("*"):
        if page.suffix in (".html", ".css", ".js"):
            text = page.read_text()
            assert not re.search(r"(src|href)=\"(https?:)?//", text), page
            assert "url(http" not in text, page


def test_serve_bundled_sites_temp_state_is_removed():
    with serve_bundled_sites() as url:
        state = httpx.get(url + "/api/state").json()
        assert state["bookings"] == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/api/state", timeout=2)


def test_placeholders_filled_everywhere(tmp_path):
    task = {"config": [{"type": "chrome_open_tabs", "parameters": {"urls_to_open": ["{SITE}/flights/"]}}],
            "evaluator": {"func": "check_json", "result": {"type": "vm_file", "path": "{SITE_STATE}"}}}
    assert uses_sites(task) and not uses_sites({"config": []})
    with SiteServer(tmp_path / "weird \"dir\"") as server:
        filled = fill_site_placeholders(task, server)
    assert filled["config"][0]["parameters"]["urls_to_open"] == [server.url + "/flights/"]
    assert filled["evaluator"]["result"]["path"] == str(server.state_file)
