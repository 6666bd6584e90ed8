"""`qvl-agent run "book a flight from Berlin to Lisbon on 12 March"` against the bundled sites: the run starts
on the portal, which links to the flight app, and the booking lands in the run's sites state file."""

from __future__ import annotations

import json

from agent.actions import Action
from agent.cli import main
from environments.suite import load_oracle, load_tasks

PORTAL_FLIGHTS_LINK = (500, 226)  # centre of the portal's "SkyLocal Flights" link on the 0..1000 grid


def test_run_books_a_flight_from_the_portal(tmp_path):
    task = next(t for t in load_tasks() if t.id == "flights-berlin-lisbon")
    script = [Action(action="left_click", coordinate=PORTAL_FLIGHTS_LINK).tool_call_text(),
              Action(action="wait", time=0.5).tool_call_text(), *load_oracle(task)]
    script_file = tmp_path / "script.json"
    script_file.write_text(json.dumps(script))
    out = tmp_path / "run"
    assert main(["run", "book a flight from Berlin to Lisbon on 12 March", "--script", str(script_file),
                 "--max-steps", str(len(script)), "--out", str(out)]) == 0
    header = json.loads((out / "run.json").read_text())
    assert header["env_kind"] == "browser" and header["start_url"] == header["bundled_sites_base"] + "/"
    assert json.loads((out / "result.json").read_text())["status"] == "success"
    [booking] = json.loads((out / "sites" / "sites_state.json").read_text())["bookings"]
    assert (booking["origin"], booking["destination"], booking["date"]) == ("BER", "LIS", "2026-03-12")
    assert booking["passengers"] == [{"first_name": "Ada", "last_name": "Lovelace"}]
