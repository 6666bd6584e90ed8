"""Writes the bundled task suite: OSWorld-format task files, the meta file, and one oracle per task.

    python environments/tasks/generate.py     # rewrites environments/tasks/<domain>/* + test_all.json

(a script, not a module: `environments.tasks` is the task loader, environments/tasks.py).

Run it after changing a bundled site's layout or a task below, then run the oracle test
(tests/suite/test_suite_oracle.py), which replays every oracle through the real executors.

An oracle is what a perfect model would answer, turn by turn: raw `computer_use` tool calls
(`<id>.oracle.jsonl`, one JSON string per line) with coordinates on Qwen's 0..1000 grid. Pointer targets
are the centres of the sites' controls at the fixed 1280x800 viewport (measured once with the page
open; the sites use fixed widths and one bundled font, so they do not move). Expected answers
(which flight is the cheapest, ...) are computed from the same schedule function the site serves.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.actions import Action
from environments.sites import find_airport, flights_for, parse_date

TASKS_DIR = Path(__file__).parent
VIEWPORT = (1280, 800)
STATE_GETTER = {"type": "vm_file", "path": "{SITE_STATE}", "dest": "sites_state.json"}


# -- raw model turns ---------------------------------------------------------------------------------

def _point(x_px: float, y_px: float) -> tuple[int, int]:
    return round(x_px * 1000 / VIEWPORT[0]), round(y_px * 1000 / VIEWPORT[1])


def click(x_px: float, y_px: float) -> str:
    return Action(action="left_click", coordinate=_point(x_px, y_px)).tool_call_text()


def type_(text: str) -> str:
    return Action(action="type", text=text).tool_call_text()


def key(*keys: str) -> str:
    return Action(action="key", keys=list(keys)).tool_call_text()


def wait(seconds: float) -> str:
    return Action(action="wait", time=seconds).tool_call_text()


DONE = Action(action="terminate", status="success").tool_call_text()
FAIL = Action(action="terminate", status="failure").tool_call_text()


def fill(x_px: float, y_px: float, text: str) -> list[str]:
    return [click(x_px, y_px), type_(text)]


# -- task files --------------------------------------------------------------------------------------

def task(task_id: str, instruction: str, *, snapshot: str, apps: list[str], config: list[dict],
         evaluator: dict) -> dict:
    return {
        "id": task_id,
        "snapshot": snapshot,
        "instruction": instruction,
        "source": "qvl-agent bundled suite",
        "config": config,
        "trajectory": "trajectories/",
        "related_apps": apps,
        "evaluator": evaluator,
        "proxy": False,
        "fixed_ip": False,
        "possibility_of_env_change": "low",
    }


def open_site(path: str) -> list[dict]:
    return [{"type": "chrome_open_tabs", "parameters": {"urls_to_open": ["{SITE}" + path]}}]


def state_rules(expect: list[tuple[list, str, object]]) -> dict:
    """check_json on the sites' state file: each `expect` (key path, method, ref) must hold."""
    def rules(triples):
        return [{"key": path, "method": method, "ref": ref} for path, method, ref in triples]

    return {
        "func": "check_json",
        "result": STATE_GETTER,
        "expected": {"type": "rule", "rules": {"expect": rules(expect)}},
    }


def only_one(kind: str) -> tuple[list, str, object]:
    """Exactly one entry was submitted to `kind` (the sites count each endpoint's entries)."""
    return (["submitted", kind], "eq", 1)


INFEASIBLE = {"func": "infeasible"}


# -- flights -------------------------------------------------------------------------------------------

# Centres (CSS px) of the flight app's controls at 1280x800.
ORIGIN, DESTINATION, DATE = (635, 186), (635, 250), (635, 314)
PAX_PLUS, SEARCH = (548, 378), (505, 446)
CONFIRM = (404, 383)


def select_button(row: int) -> tuple[int, int]:  # row 0..3 of the results list
    return 959, 200 + 96 * row


def passenger_fields(i: int) -> tuple[tuple[int, int], tuple[int, int]]:  # i 0-based
    y = 186 + 64 * i
    return (512, y), (758, y)


def email_field(n_passengers: int) -> tuple[int, int]:
    return 635, 186 + 64 * n_passengers


def continue_button(n_passengers: int) -> tuple[int, int]:
    return 609, 254 + 64 * n_passengers


def booking_oracle(origin: str, destination: str, date: str, row: int, passengers: list[tuple[str, str]],
                   email: str) -> list[str]:
    turns = [*fill(*ORIGIN, origin), *fill(*DESTINATION, destination), *fill(*DATE, date)]
    turns += [click(*PAX_PLUS)] * (len(passengers) - 1)
    turns += [click(*SEARCH), wait(0.5), click(*select_button(row))]
    for i, (first, last) in enumerate(passengers):
        first_xy, last_xy = passenger_fields(i)
        turns += [*fill(*first_xy, first), *fill(*last_xy, last)]
    turns += [*fill(*email_field(len(passengers)), email), click(*continue_button(len(passengers)))]
    turns += [click(*CONFIRM), wait(0.5), DONE]
    return turns


def flight_task(task_id: str, instruction: str, *, origin: str, destination: str, date: str,
                passengers: list[tuple[str, str]], email: str, pick: str | None) -> tuple[dict, list[str]]:
    """A booking task; `pick` chooses the flight: None (any), cheapest, earliest, latest, after HH:MM, or QV###."""
    o, d, day = find_airport(origin), find_airport(destination), parse_date(date)
    flights = flights_for(o, d, day)
    if pick in (None, "earliest"):
        row = 0
    elif pick == "cheapest":
        row = min(range(len(flights)), key=lambda i: flights[i]["price_eur"])
    elif pick == "latest":
        row = len(flights) - 1
    elif pick.startswith("after "):
        row = next(i for i, f in enumerate(flights) if f["depart"] > pick.removeprefix("after "))
    else:
        row = next(i for i, f in enumerate(flights) if f["flight"] == pick)
    expect: list[tuple[list, str, object]] = [
        (["bookings", 0, "origin"], "eq", o),
        (["bookings", 0, "destination"], "eq", d),
        (["bookings", 0, "date"], "eq", day.isoformat()),
        (["bookings", 0, "email"], "eq", email),
    ]
    if pick is not None:
        expect.append((["bookings", 0, "flight"], "eq", flights[row]["flight"]))
    expect.append((["bookings", 0, "passengers"], "eq",
                   [{"first_name": first, "last_name": last} for first, last in passengers]))
    spec = task(task_id, instruction, snapshot="browser", apps=["browser", "flights"],
                config=open_site("/flights/"), evaluator=state_rules([*expect, only_one("bookings")]))
    return spec, booking_oracle(origin, destination, date, row, passengers, email)


def flights() -> list[tuple[dict, list[str]]]:
    return [
        flight_task(
            "flights-berlin-lisbon",
            "Book a flight from Berlin to Lisbon on 12 March for Ada Lovelace, email ada@example.com.",
            origin="Berlin", destination="Lisbon", date="12 March", passengers=[("Ada", "Lovelace")],
            email="ada@example.com", pick=None),
        flight_task(
            "flights-madrid-paris-cheapest",
            "Book the cheapest flight from Madrid to Paris on 20 March for Grace Hopper (grace@example.com).",
            origin="Madrid", destination="Paris", date="20 March", passengers=[("Grace", "Hopper")],
            email="grace@example.com", pick="cheapest"),
        flight_task(
            "flights-london-rome-two-passengers",
            "Book the earliest flight from London to Rome on 3 April for two passengers, Alan Turing and "
            "Joan Clarke. Use the email alan@example.com.",
            origin="London", destination="Rome", date="3 April", passengers=[("Alan", "Turing"), ("Joan", "Clarke")],
            email="alan@example.com", pick="earliest"),
        flight_task(
            "flights-amsterdam-vienna-latest",
            "I need the last flight of the day from Amsterdam to Vienna on 15 March. Passenger: Edsger "
            "Dijkstra, email edsger@example.com. Please book it.",
            origin="Amsterdam", destination="Vienna", date="15 March", passengers=[("Edsger", "Dijkstra")],
            email="edsger@example.com", pick="latest"),
        flight_task(
            "flights-prague-dublin-three-passengers",
            "Book the first flight leaving after 12:00 from Prague to Dublin on 28 March for Ken Thompson, "
            "Dennis Ritchie and Brian Kernighan; contact email ken@example.com.",
            origin="Prague", destination="Dublin", date="28 March",
            passengers=[("Ken", "Thompson"), ("Dennis", "Ritchie"), ("Brian", "Kernighan")],
            email="ken@example.com", pick="after 12:00"),
        flight_task(
            "flights-copenhagen-athens-by-number",
            "Book flight QV348 from Copenhagen to Athens on 2026-04-10 for Barbara Liskov, "
            "barbara@example.com.",
            origin="Copenhagen", destination="Athens", date="2026-04-10", passengers=[("Barbara", "Liskov")],
            email="barbara@example.com", pick="QV348"),
    ]


def flights_infeasible() -> list[tuple[dict, list[str]]]:
    no_city = task(
        "flights-berlin-new-york-infeasible",
        "Book a flight from Berlin to New York on 12 March for Ada Lovelace, email ada@example.com.",
        snapshot="browser", apps=["browser", "flights"], config=open_site("/flights/"), evaluator=INFEASIBLE)
    no_class = task(
        "flights-business-class-infeasible",
        "Book a business-class seat with extra legroom on the first flight from Berlin to Lisbon on 12 March.",
        snapshot="browser", apps=["browser", "flights"], config=open_site("/flights/"), evaluator=INFEASIBLE)
    # The oracle checks before giving up, as a careful agent would: New York is not served.
    return [
        (no_city, [*fill(*ORIGIN, "Berlin"), *fill(*DESTINATION, "New York"), *fill(*DATE, "12 March"),
                   click(*SEARCH), wait(0.5), FAIL]),
        (no_class, [FAIL]),
    ]


# -- forms and settings ------------------------------------------------------------------------------

NAME, EMAIL, PHONE = (635, 186), (635, 250), (635, 314)
TOPIC = {"support": (453, 378), "sales": (568, 378), "feedback": (691, 378)}
MESSAGE, NEWSLETTER, SEND = (635, 474), (409, 566), (505, 630)
PORTAL_FORMS = (640, 293)


def contact_task(task_id: str, instruction: str, *, name: str, email: str, topic: str, message: str,
                 phone: str = "", newsletter: bool = False, from_portal: bool = False) -> tuple[dict, list[str]]:
    expect = [
        (["forms", "contact", 0, "name"], "eq", name),
        (["forms", "contact", 0, "email"], "eq", email),
        (["forms", "contact", 0, "topic"], "eq", topic),
        (["forms", "contact", 0, "message"], "eq", message),
        (["forms", "contact", 0, "newsletter"], "eq", newsletter),
    ]
    if phone:
        expect.append((["forms", "contact", 0, "phone"], "eq", phone))
    turns = [click(*PORTAL_FORMS), wait(0.5)] if from_portal else []
    turns += [*fill(*NAME, name), *fill(*EMAIL, email)]
    if phone:
        turns += fill(*PHONE, phone)
    turns += [click(*TOPIC[topic]), *fill(*MESSAGE, message)]
    if newsletter:
        turns.append(click(*NEWSLETTER))
    turns += [click(*SEND), wait(0.5), DONE]
    spec = task(task_id, instruction, snapshot="browser", apps=["browser", "forms"],
                config=open_site("/" if from_portal else "/forms/"),
                evaluator=state_rules([*expect, only_one("contact")]))
    return spec, turns


def forms() -> list[tuple[dict, list[str]]]:
    return [
        contact_task(
            "forms-contact-support",
            "Send a support request through the contact form as Margaret Hamilton "
            "(margaret@example.com) with the message: My booking code does not arrive.",
            name="Margaret Hamilton", email="margaret@example.com", topic="support",
            message="My booking code does not arrive."),
        contact_task(
            "forms-contact-sales-newsletter",
            "Use the contact form to ask sales for group discounts. Name: Linus Torvalds, email "
            "linus@example.com, message: Do you offer group discounts? Also subscribe to the newsletter.",
            name="Linus Torvalds", email="linus@example.com", topic="sales",
            message="Do you offer group discounts?", newsletter=True),
        contact_task(
            "forms-portal-feedback-phone",
            "From the Local Apps portal, open the contact form and send feedback as Radia Perlman, "
            "radia@example.com, phone +44 20 7946 0958, saying: Great app!",
            name="Radia Perlman", email="radia@example.com", topic="feedback", message="Great app!",
            phone="+44 20 7946 0958", from_portal=True),
    ]


DISPLAY_NAME = (635, 186)
LANGUAGE = {"en": (450, 250), "de": (575, 250), "pt": (713, 250), "es": (850, 250)}
THEME = {"light": (439, 314), "dark": (539, 314)}
NOTIFICATIONS, SAVE = (409, 374), (505, 438)


def settings() -> list[tuple[dict, list[str]]]:
    german_dark = task(
        "settings-german-dark-theme",
        "In the account settings, switch the language to German and the theme to dark, then save.",
        snapshot="browser", apps=["browser", "settings"], config=open_site("/settings/"),
        evaluator=state_rules([(["settings", "language"], "eq", "de"), (["settings", "theme"], "eq", "dark")]))
    name_quiet = task(
        "settings-display-name-no-emails",
        "Set my display name to 'Captain Grace' and turn off email notifications in the account settings.",
        snapshot="browser", apps=["browser", "settings"], config=open_site("/settings/"),
        evaluator=state_rules([(["settings", "display_name"], "eq", "Captain Grace"),
                               (["settings", "email_notifications"], "eq", False)]))
    two_factor = task(
        "settings-two-factor-infeasible",
        "Turn on two-factor authentication with an authenticator app in the account settings.",
        snapshot="browser", apps=["browser", "settings"], config=open_site("/settings/"), evaluator=INFEASIBLE)
    return [
        (german_dark, [click(*LANGUAGE["de"]), click(*THEME["dark"]), click(*SAVE), wait(0.5), DONE]),
        (name_quiet, [*fill(*DISPLAY_NAME, "Captain Grace"), click(*NOTIFICATIONS), click(*SAVE), wait(0.5), DONE]),
        (two_factor, [FAIL]),
    ]


# -- desktop: terminal files and text editing ---------------------------------------------------------

# xterm takes a moment to map its window; keys typed before that are lost, so a careful user waits.
OPEN_TERMINAL = [key("ctrl", "alt", "t"), wait(2.5)]


def shell_setup(script: str) -> list[dict]:
    return [{"type": "execute", "parameters": {"command": ["bash", "-c", script]}}]


def command_output_is(command: str, expected: str) -> dict:
    return {
        "func": "exact_match",
        "result": {"type": "vm_command_line", "command": ["bash", "-c", command]},
        "expected": {"type": "rule", "rules": {"expected": expected}},
    }


def terminal_task(task_id: str, domain: str, instruction: str, commands: list[str | list[str]], evaluator: dict,
                  setup: str | None = None) -> tuple[dict, list[str]]:
    """Solved in a terminal: each command is typed and entered (a list is a run of raw turns instead)."""
    turns = list(OPEN_TERMINAL)
    for command in commands:
        turns += command if isinstance(command, list) else [type_(command + "\n")]
    turns += [wait(0.5), DONE]
    spec = task(task_id, instruction, snapshot=domain, apps=["os", "terminal"],
                config=shell_setup(setup) if setup else [], evaluator=evaluator)
    return spec, turns


def os_tasks() -> list[tuple[dict, list[str]]]:
    return [
        terminal_task(
            "os-make-project-folder", "os",
            "Create the folder projects/demo inside my home directory (including the projects folder).",
            ["mkdir -p ~/projects/demo"],
            command_output_is("test -d ~/projects/demo && echo yes || echo no", "yes\n")),
        terminal_task(
            "os-write-hello-file", "os",
            "Create a file notes/hello.txt in my home folder containing the single line: hello world",
            ["mkdir -p ~/notes && echo 'hello world' > ~/notes/hello.txt"],
            command_output_is("cat ~/notes/hello.txt", "hello world\n")),
        terminal_task(
            "os-move-report", "os",
            "Move report.txt from my Downloads folder into my Documents folder.",
            ["mv ~/Downloads/report.txt ~/Documents/"],
            command_output_is("test ! -e ~/Downloads/report.txt && cat ~/Documents/report.txt", "quarterly numbers\n"),
            setup="mkdir -p ~/Downloads ~/Documents && echo 'quarterly numbers' > ~/Downloads/report.txt"),
        terminal_task(
            "os-count-log-files", "os",
            "Count the .log files in the logs folder of my home directory and write just that number to "
            "log_count.txt in my home directory.",
            ["ls ~/logs/*.log | wc -l > ~/log_count.txt"],
            command_output_is("cat ~/log_count.txt", "3\n"),
            setup="mkdir -p ~/logs && touch ~/logs/app.log ~/logs/db.log ~/logs/web.log ~/logs/notes.txt"),
        terminal_task(
            "os-list-photos", "os",
            "Write the names of the .jpg files in ~/photos, one per line in alphabetical order, to ~/photos.txt.",
            ["ls ~/photos | grep '\\.jpg$' | sort > ~/photos.txt"],
            {"func": "check_list",
             "result": {"type": "vm_file", "path": "/home/user/photos.txt", "dest": "photos.txt"},
             "expected": {"type": "rule", "rules": {"expect": ["^beach\\.jpg$", "^city\\.jpg$", "^forest\\.jpg$"],
                                                    "unexpect": ["readme", "\\.png$"]}}},
            setup="mkdir -p ~/photos && touch ~/photos/forest.jpg ~/photos/beach.jpg ~/photos/city.jpg "
                  "~/photos/logo.png ~/photos/readme.md"),
        (task("os-screen-brightness-infeasible",
              "Set the laptop's screen brightness to 40 percent.",
              snapshot="os", apps=["os"], config=[], evaluator=INFEASIBLE), [FAIL]),
    ]


def text_editing_tasks() -> list[tuple[dict, list[str]]]:
    return [
        terminal_task(
            "text-replace-draft", "text_editing",
            "In ~/todo.txt, replace every occurrence of the word 'draft' with 'final'.",
            ["sed -i 's/draft/final/g' ~/todo.txt"],
            {"func": "check_include_exclude",
             "result": {"type": "vm_command_line", "command": ["bash", "-c", "cat ~/todo.txt"]},
             "expected": {"type": "rule", "rules": {"include": ["write final report", "send final to Bob"],
                                                    "exclude": ["draft"]}}},
            setup="printf 'write draft report\\nsend draft to Bob\\nbook room\\n' > ~/todo.txt"),
        terminal_task(
            "text-vim-append-line", "text_editing",
            "Open ~/shopping.txt in vim and add a last line with the word milk, then save and quit.",
            ["vim ~/shopping.txt", [wait(1), type_("Gomilk"), key("escape"), type_(":wq\n")]],
            command_output_is("cat ~/shopping.txt", "bread\neggs\nmilk\n"),
            setup="printf 'bread\\neggs\\n' > ~/shopping.txt"),
        terminal_task(
            "text-delete-second-line", "text_editing",
            "Delete the second line of ~/guests.txt and keep the rest unchanged.",
            ["sed -i '2d' ~/guests.txt"],
            command_output_is("cat ~/guests.txt", "Alice\nCarol\nDave\n"),
            setup="printf 'Alice\\nBob\\nCarol\\nDave\\n' > ~/guests.txt"),
    ]


# -- desktop: chromium behind the google-chrome shim ---------------------------------------------------

CHROME_BOOKMARKS = "~/.config/google-chrome/Default/Bookmarks"
CHROME_PREFERENCES = "/home/user/.config/google-chrome/Default/Preferences"


def launch_chrome(url: str) -> list[dict]:
    """OSWorld's way of starting the browser, on a bundled-site page."""
    return [{"type": "launch", "parameters": {"command": ["google-chrome", "--remote-debugging-port=1337",
                                                         "--start-maximized", url]}},
            {"type": "sleep", "parameters": {"seconds": 5}}]


def chrome_tasks() -> list[tuple[dict, list[str]]]:
    bookmark = task(
        "chrome-bookmark-named",
        "Bookmark the SkyLocal Flights page that is open in Chromium under the name 'Cheap flights'.",
        snapshot="chrome", apps=["chrome"], config=launch_chrome("{SITE}/flights/"),
        evaluator={
            "func": "check_include_exclude",
            "result": {"type": "vm_command_line", "command": ["bash", "-c", f"cat {CHROME_BOOKMARKS}"]},
            "expected": {"type": "rule", "rules": {"include": ['"name": "Cheap flights"', '"url": "{SITE}/flights/"'],
                                                   "exclude": []}},
            # Chromium writes the Bookmarks file a moment after the change.
            "postconfig": [{"type": "sleep", "parameters": {"seconds": 3}}],
        })
    second_tab = task(
        "chrome-open-contact-tab",
        "Keep the flights page open and open the contact form, {SITE}/forms/, in a new tab.",
        snapshot="chrome", apps=["chrome"], config=launch_chrome("{SITE}/flights/"),
        evaluator={
            "func": "is_expected_tabs",
            "result": {"type": "open_tabs_info"},
            "expected": {"type": "rule", "rules": {"type": "url", "urls": ["{SITE}/flights/", "{SITE}/forms/"]}},
        })
    bookmarks_bar = task(
        "chrome-show-bookmarks-bar",
        "Make Chromium always show the bookmarks bar.",
        snapshot="chrome", apps=["chrome"], config=launch_chrome("{SITE}/"),
        evaluator={
            "func": "check_json",
            "result": {"type": "vm_file", "path": CHROME_PREFERENCES, "dest": "Preferences"},
            "expected": {"type": "rule", "rules": {"expect": [
                {"key": ["bookmark_bar", "show_on_all_tabs"], "method": "eq", "ref": True}]}},
            # As OSWorld does for settings tasks: quit the browser so it writes Preferences, then read them.
            "postconfig": [{"type": "execute", "parameters": {"command": ["pkill", "chromium"]}},
                           {"type": "sleep", "parameters": {"seconds": 2}}],
        })
    return [
        (bookmark, [key("ctrl", "d"), wait(1), type_("Cheap flights"), key("enter"), DONE]),
        (bookmarks_bar, [key("ctrl", "shift", "b"), wait(1), DONE]),
        # The oracle types the URL from the instruction; {SITE} is filled in its replies like in the task.
        (second_tab, [key("ctrl", "t"), wait(1), key("ctrl", "l"), type_("{SITE}/forms/\n"), wait(1), DONE]),
    ]


def all_tasks() -> dict[str, list[tuple[dict, list[str]]]]:
    from generate_apps import app_tasks  # the LibreOffice, GIMP and VLC tasks (it imports this script's helpers)

    return {
        "flights": flights() + flights_infeasible(),
        "forms": forms(),
        "settings": settings(),
        "os": os_tasks(),
        "text_editing": text_editing_tasks(),
        "chrome": chrome_tasks(),
        **app_tasks(),
    }


def write_all(root: Path = TASKS_DIR) -> dict[str, list[str]]:
    meta: dict[str, list[str]] = {}
    for domain, entries in all_tasks().items():
        folder = root / domain
        folder.mkdir(parents=True, exist_ok=True)
        for old in list(folder.glob("*.json")) + list(folder.glob("*.oracle.jsonl")):
            old.unlink()
        for spec, oracle in entries:
            (folder / f"{spec['id']}.json").write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
            (folder / f"{spec['id']}.oracle.jsonl").write_text(
                "".join(json.dumps(turn, ensure_ascii=False) + "\n" for turn in oracle))
            meta.setdefault(domain, []).append(spec["id"])
    (root / "test_all.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


if __name__ == "__main__":
    written = write_all()
    print(f"wrote {sum(map(len, written.values()))} tasks in {len(written)} domains to {TASKS_DIR}")
