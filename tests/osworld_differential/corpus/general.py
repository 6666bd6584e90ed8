"""Cases for OSWorld's general.py and basic_os.py metrics (strings, text/CSV/JSON files, SQLite, a11y trees)."""

from __future__ import annotations

import datetime
import sqlite3

STRINGS = [
    ("value", ""), ("value", "total 54\n"), ("value", "true\n"), ("value", "true"), ("value", "File exists.\n"),
    ("value", "ERROR: no such file"), ("value", "Successfully installed numpy-1.26\n"), ("value", "  54  "),
    ("value", "ünïcödé ✓ 中文\n"), ("value", "a\r\nb\r\n"), ("value", "1"), ("value", "01"), ("value", "False\n"),
    ("value", "/home/user/Desktop\n"), ("value", "vlc.desktop\n"), ("value", "\t\n "),
    ("none", None), ("wrong_type", 54), ("wrong_type", 1.0), ("wrong_type", ["54", "true\n"]),
    ("wrong_type", {"a": 1}), ("wrong_type", True),
]
TEXT_FILES = [
    "1\n2\n3\n4\n", "1\n2\n3\n5\n", "", "\n\n", "alpha 1\nbeta 2\n", "a\r\nb\r\nc", "ünïcödé\nzwei\n",
    "12:00:01 start\n23:59:60 leap\n24:00:00 bad\nno time\n", "line without newline", "x = 1\n\tprint(x)\n",
    "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\nx = 1\n\n    print(x)   \n", "a\x0bb\x0cc\u2028d\n",
]


def text_paths(c, texts=TEXT_FILES, name="f.txt"):
    out = [("value", c.text(name, t)) for t in texts]
    out += [("none", None), ("missing", c.missing), ("corrupt", c.bytes(name, b"\xff\xfe\x00bad\x80utf8"))]
    return out


def add_cases(c) -> None:
    _strings(c)
    _text_files(c)
    _records(c)
    _json(c)
    _sqlite(c)
    _a11y(c)
    _basic_os(c)
    _relative_time(c)


def _relative_time(c) -> None:
    """The rule_relativeTime getter (dates from "now" in a given timezone; OSWorld geolocates when none)."""
    formats = ["{DoW}, {Month} {DayD}, {Year}", "{Year}-{Month0D}-{Day0D}", "{month}-weather", "{MonthFull} {DayD}",
               "{MonthD}/{DayD} {DoW} {DoW}"]
    zones = ["Europe/Zurich", "America/New_York", "UTC", "Asia/Tokyo", "Not/AZone"]
    alone = ["tomorrow", "5th next month", "10th next month", "this month", "next Monday",
             "first monday four months later", "first monday eight months later", "this Saturday", "someday"]
    pairs = [("tomorrow", "tomorrow"), ("this Saturday", "this Sunday"), ("10th next month", "11th next month"),
             ("next Monday", "next Friday"), ("next Friday", "next Sunday"), ("next Saturday", "next Sunday"),
             ("next week Friday", "next week Sunday"), ("next week Saturday", "next week Sunday"),
             ("next Monday split", "next Friday split"), ("next Friday", "next Friday"), ("tomorrow", "next week Sunday"),
             ("this month", "next Sunday")]
    for zone in zones:
        for phrase in alone:
            for fmt in formats:
                c.add_getter("rule_relativeTime", {"rules": {"relativeTime": {"from": phrase}, "expected": {"time": fmt},
                                                             "timezone": zone}})
        for start, end in pairs:
            expected = ({"puDay": "{DayD}", "puMonth": "{Month}", "puYear": "{Year}", "doDay": "{Day0D}",
                         "doMonth": "{MonthD}", "doYear": "{Year}"} if "split" in start
                        else {"from": formats[0], "to": formats[1]})
            c.add_getter("rule_relativeTime", {"rules": {"relativeTime": {"from": start, "to": end}, "expected": expected,
                                                         "timezone": zone}})


def _strings(c) -> None:
    includes = [{"include": ["54\n"], "exclude": ["error"]}, {"include": ["installed"]},
                {"exclude": ["No such file", "ERROR"]}, {}, {"include": [], "exclude": []},
                {"include": ["ünï", "中"]}, {"include": ["true\n"], "exclude": ["False"]},
                *c.task_rules("check_include_exclude")]
    c.cross("check_include_exclude", STRINGS, includes)
    expecteds = [{"expected": v} for v in ("true\n", "true", "File exists.\n", "1", "", None, 1, ["54", "true\n"],
                                           "ünïcödé ✓ 中文\n")] + c.task_rules("exact_match")
    c.cross("exact_match", STRINGS, expecteds)
    lists = [{"expected": ["true\n", "1", "54"]}, {"expected": []}, {"expected": "total 54\n"},
             {"expected": ["File exists.\n", None]}, *c.task_rules("match_in_list")]
    c.cross("match_in_list", STRINGS, lists)
    c.cross("is_in_list", STRINGS, [{"expected": "54"}, {"expected": "true\n"}, {"expected": ""},
                                    *c.task_rules("is_in_list")])
    pairs = [("value", "A"), ("value", "a"), ("value", 1), ("value", "1"), ("value", ["1", "x"]), ("value", [1, "X"]),
             ("none", None), ("value", ["Yann LeCun", "345074"])]
    for kind, result in pairs:
        for _, expected in pairs:
            for opts in ({}, {"type": "str"}, {"type": "list"}, {"type": "list", "ignore_case": True},
                         {"ignore_case": True}):
                c.add("literal_match", result, expected, kind=kind, **opts)
    c.cross("fuzzy_match", STRINGS[:17], [{"expected": "total 54"}, {"expected": ""}, {"expected": "ünïcödé"},
                                          {"expected": "true\n"}])


def _text_files(c) -> None:
    paths = text_paths(c)
    golds = [c.text("gold.txt", t) for t in TEXT_FILES[:6]]
    c.cross("diff_text_file", paths, golds)
    c.cross("compare_terminal_and_txt", paths, ["1\n2\n3\n4\n", "", None, "alpha 1\nbeta 2\n", "a\nb\nc"])
    c.cross("file_contains", paths, [{"expected": ["start", "leap"]}, {"expected": []}, {"expected": ["ünïcödé"]},
                                     {"expected": ["\r"]}, {"nope": 1}])
    c.cross("check_line_number", paths, [{"expected": "2"}, {"expected": 3}, {"expected": 0}, {"expected": "x"}])
    c.cross("compare_python_pure_text", paths, [c.text("g.py", "x = 1\n    print(x)\n"), c.text("g.py", ""),
                                               c.missing])
    c.cross("check_list", paths, [{"expect": [r"alpha \d"], "unexpect": ["gamma"]}, {"expect": [r"\d\n$"]},
                                  {"expect": [], "unexpect": ["beta"]}, {}, {"expect": ["^$"]},
                                  {"unexpect": [r"\r"]}, *c.task_rules("check_list")])


def _records(c) -> None:
    csvs = ["name,age\nann,30\nbob,40\n", "name,age\n", "", "name;age\nann;30\n", "name,age\nann,30,extra\n",
            "\ufeffname,age\nann,30\n", "a\n\"x,y\"\n", "name,age\r\nann,30\r\n"]
    paths = [("value", c.text("r.csv", t)) for t in csvs] + [
        ("none", None), ("missing", c.missing), ("corrupt", c.bytes("r.csv", b"name\n\xff\xfe\n"))]
    rules = [{"expect": [{"name": "ann", "age": "30"}], "unexpect": [{"name": "carl"}]},
             {"expect": [{"name": "ann", "age": "31"}]}, {"expect": [], "unexpect": [{"name": "bob"}]}, {},
             {"expect": [{"a": "x,y"}]}, *c.task_rules("check_csv")]
    c.cross("check_csv", paths, rules)
    now = datetime.datetime.now()
    speed = []
    for minutes in (0, 25, -25, 200, -200):
        t = (now + datetime.timedelta(minutes=minutes)).strftime("%H:%M")
        speed.append(("value", c.text("s.csv", f"Date,Time\nx,2024-01-01 {t}\n")))
        speed.append(("value", c.text("s.csv", f"Date,Time\nx,2024-01-01 {t},more\n")))
    speed += [("value", c.text("s.csv", "only one line\n")), ("none", None), ("missing", c.missing)]
    c.cross("compare_time_in_speedtest_results", speed, ["60", 60, "5", "x"])
    golds = [c.json("g.json", {"a": 1, "b": "x"}), c.json("g.json", {}), c.json("g.json", {"ü": [1, 2]})]
    results = [("value", c.json("r.json", {"a": 1, "b": "x", "c": 2})), ("value", c.json("r.json", {"a": 2})),
               ("value", c.json("r.json", {"ü": [1, 2]})), ("wrong_type", c.json("r.json", [1])),
               ("corrupt", c.text("r.json", "{bad")), ("missing", c.missing), ("none", None)]
    for gold in golds:
        for kind, result in results:
            c.add("is_included_all_json_objects", gold, result, kind=kind)


def _json(c) -> None:
    docs = [{"editor": {"fontSize": 14, "theme": "dark"}, "list": [1, 2]}, {"editor": None}, [1, 2], "text",
            None, {"a": {"b": {"c": "x"}}, "n": 1.5}]
    paths = [("value", c.json("s.json", d)) for d in docs]
    paths += [("corrupt", c.text("s.json", "{nope")), ("missing", c.missing), ("none", None),
              ("empty", c.text("s.json", ""))]
    rules = [
        {"expect": [{"key": ["editor", "fontSize"], "method": "eq", "ref": 14}],
         "unexpect": [{"key": ["editor", "wordWrap"], "method": "eq", "ref": "on"}]},
        {"expect": [{"key": ["editor", "missing"], "method": "eq", "ref": 1}]},
        {"unexpect": [{"key": ["editor", "theme"], "method": "eq", "ref": "dark"}]},
        {"expect": [{"key": ["list", 5], "method": "eq", "ref": 1}]},
        {"unexpect": [{"key": ["list", 5], "method": "eq", "ref": 1}]},
        {"unexpect": [{"key": ["nope"], "method": "re", "ref": "x"}]},
        {"expect": [{"key": ["a", "b", "c"], "method": "re", "ref": "^x$"}]},
        {"expect": [{"key": ["n"], "method": "approx:0.1", "ref": 1.5}]},
        {"expect": [{"key": ["n"], "method": "magic", "ref": 1}]},
        {"expect": [{"key": ["editor", "theme"], "method": "str_set_eq", "ref": ["dark"]}]},
        {},
        *c.task_rules("check_json"),
    ]
    c.cross("check_json", paths, rules, options=[{}, {"is_yaml": True}])
    yaml = [("value", c.text("c.yaml", "a:\n  b:\n    c: x\nn: 1.5\n")), ("corrupt", c.text("c.yaml", "a: [\n")),
            ("empty", c.text("c.yaml", ""))]
    c.cross("check_json", yaml, rules[6:9], options=[{"is_yaml": True}])

    objects = [("value", {"a": 1, "b": "x", "c": 2}), ("value", "{'a': 1, 'b': 'x'}\n"), ("value", {"a": 2, "b": "x"}),
               ("value", {"l": [1, 2]}), ("value", {"city": "Lyon", "name": "Ann Lee"}), ("value", {"city": ["Lyon"]}),
               ("value", '{"time": "january-weather"}'), ("corrupt", "not json"), ("corrupt", "{'a': 'it's'}"),
               ("none", None), ("value", "null"), ("wrong_type", [1, 2]), ("wrong_type", "[1, 2]"),
               ("wrong_type", 5), ("value", {"name": None}), ("value", {})]
    rules = [{"expected": {"a": 1, "b": "x"}}, {"expected": {"a": "__EVALUATION_FAILED__"}},
             {"expected": {"l": [2, 1], "ignore_list_order": True}}, {"expected": {"l": [2, 1]}},
             {"expected": {"city": ["Paris", "Lyon"], "name": "Ann"}, "expect_in_result": True},
             {"expected": {"name": 3}, "expect_in_result": True}, {"expected": {}}, {"expected": []}, {},
             {"expected": {"time": "january-weather"}}, {"expected": {"name": "Ann"}, "expect_in_result": True},
             *c.task_rules("check_direct_json_object")]
    c.cross("check_direct_json_object", objects, rules)


def _sqlite(c) -> None:
    db = c.path("d.sqlite")
    con = sqlite3.connect(db)
    con.execute("create table t(x, s)")
    con.executemany("insert into t values (?, ?)", [(3, "a"), (None, "b"), (2.5, "c")])
    con.commit()
    con.close()
    paths = [("value", db), ("missing", c.missing), ("none", None), ("corrupt", c.text("bad.sqlite", "not a db"))]
    sqls = ["select count(*) from t where x = 3", "select count(*) from t where x = 4", "select x from t where s='b'",
            "select 2.5", "select 0", "select s from t where x = 3"]
    c.cross("run_sqlite3", paths, [{"sql": s} for s in sqls])
    c.add("run_sqlite3", db, {"sql": "select x from t where s = 'z'"}, kind="no_row")
    c.add("run_sqlite3", db, {"sql": "select * from nope"}, kind="no_table")


A11Y = """<desktop-frame xmlns:st="https://accessibility.ubuntu.example.org/ns/state"
 xmlns:attr="https://accessibility.ubuntu.example.org/ns/attributes">
 <application name="Thunderbird">
  <page-tab-list attr:id="tabmail-tabs"><page-tab name="About Profiles" st:selected="true"/><page-tab name="Inbox"/></page-tab-list>
  <tool-bar attr:id="MsgHeadersToolbar"><label name="To"/><section attr:class="address-pill"><label attr:class="pill-label" name="fox@someuniversity.edu">fox</label></section></tool-bar>
 </application>
 <application name="Google Chrome"><entry name="Address and search bar">example.com/path</entry></application>
 <document-frame name="Slides View"/>
</desktop-frame>"""


def _a11y(c) -> None:
    trees = [("value", A11Y), ("value", "<desktop-frame/>"), ("corrupt", "<not xml"), ("none", None)]
    rules = [
        [{"selectors": ['application[name=Thunderbird] page-tab-list[attr|id="tabmail-tabs"]>page-tab[name="About Profiles"]']}],
        [{"selectors": ['tool-bar[attr|id=MsgHeadersToolbar] label[name=To]~[attr|class="address-pill"]>label[attr|class="pill-label"][name*="fox@someuniversity.edu"]']}],
        [{"selectors": ["page-tab[name=Nope]"]}],
        [{"xpath": "//page-tab[@st:selected='true']", "text": None, "exact": True}],
        [{"xpath": "//label[@name='fox@someuniversity.edu']", "text": "fox", "exact": True}],
        [{"xpath": "//label[@name='fox@someuniversity.edu']", "text": "fix", "exact": False}],
        [{"selectors": ["entry"], "text": "example.com/path", "exact": False}],
        [], [{"selectors": ["page-tab"]}, {"selectors": ["document-frame"]}],
    ]
    c.cross("check_accessibility_tree", trees, rules)
    for kind, tree in trees:  # slides.py's check_left_panel reads the same tree
        c.add("check_left_panel", tree, kind=kind)


def _basic_os(c) -> None:
    favorites = [("value", "['thunderbird.desktop', 'google-chrome.desktop']\n"), ("value", "['thunderbird.desktop']\n"),
                 ("value", "[]"), ("corrupt", "@as []\n"), ("corrupt", ""), ("none", None), ("value", "'ab'")]
    c.cross("check_gnome_favorite_apps", favorites, [{"expected": ["google-chrome.desktop", "thunderbird.desktop"]},
                                                    {"expected": []}, {"expected": ["a", "b"]}])
    out = ("               Local time: Mon 2024-01-01 10:00:00 UTC\n           Universal time: Mon 2024-01-01 10:00:00 UTC\n"
           "                 RTC time: n/a\n                Time zone: Etc/UTC (UTC, +0000)\n")
    for kind, v in [("value", out), ("value", out.replace("+0000", "+0100")), ("value", out.replace("+0000)", "+0000) ")),
                    ("short", "a\nb\n"), ("short", ""), ("none", None)]:
        c.add("is_utc_0", v, kind=kind)
    for kind, v in [("value", "1.25\n"), ("value", "1.0\n"), ("value", "0.5"), ("corrupt", "abc"), ("none", None),
                    ("value", " 2 ")]:
        c.add("check_text_enlarged", v, kind=kind)
    tree = {"type": "directory", "name": "cpjpg", "children": [
        {"type": "file", "name": "a.jpg"}, {"type": "directory", "name": "sub", "children": [{"type": "file", "name": "b.jpg"}]}]}
    trees = [("value", tree), ("value", {"type": "directory", "name": "e", "children": []}), ("none", None)]
    c.cross("check_moved_jpgs", trees, [{"expected": ["a.jpg", "sub"]}, {"expected": ["a.jpg", "b.jpg"]}, {"expected": []}])
    for kind, out in [("value", "xxabcdxx"), ("value", ""), ("none", None), ("value", "ünï\n")]:
        for config in ({"expected": ["ab", "cd"]}, {"expected": "zz"}, {"expected": "ünï"}, {"expected": []}):
            c.add("is_in_vm_clickboard", config, out, kind=kind)
