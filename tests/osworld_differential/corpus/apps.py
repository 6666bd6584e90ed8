"""Cases for OSWorld's vscode.py, thunderbird.py, libreoffice.py and the registry-file metrics of
slides.py/docs.py (files an app writes: settings JSON, prefs.js, msgFilterRules.dat, .xcu)."""

from __future__ import annotations

import io
import json
import zipfile

from osworld_differential.corpus.general import text_paths

XCU_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n<oor:items xmlns:oor="http://openoffice.org/2001/registry">\n'


def xcu(*items: str) -> str:
    return XCU_HEAD + "\n".join(items) + "\n</oor:items>\n"


def item(path: str, prop: str, value: str) -> str:
    return (f'<item oor:path="{path}"><prop oor:name="{prop}" oor:op="fuse"><value>{value}</value></prop></item>')


def add_cases(c) -> None:
    _vscode(c)
    _thunderbird(c)
    _registry(c)


def _vscode(c) -> None:
    settings = [("value", c.json("settings.json", {"editor.fontSize": 14, "x": 1})),
                ("value", c.json("settings.json", {"editor.fontSize": 12})), ("value", c.json("settings.json", {})),
                ("wrong_type", c.json("settings.json", ["editor.fontSize"])),
                ("corrupt", c.text("settings.json", "// comment\n{}")), ("missing", c.missing), ("none", None)]
    c.cross("check_json_settings", settings, [{"expected": {"editor.fontSize": 14}}, {"expected": {}},
                                              {"expected": {"x": 1, "editor.fontSize": 14}},
                                              *c.task_rules("check_json_settings")])
    binding = {"key": "ctrl+j", "command": "workbench.action.togglePanel"}
    keys = [("value", c.text("keybindings.json", "// header\n" + json.dumps([binding]))),
            ("value", c.json("keybindings.json", [binding, {"key": "x"}])), ("value", c.json("keybindings.json", {"a": 1})),
            ("value", c.text("keybindings.json", "// header\n// two\n[]")), ("corrupt", c.text("keybindings.json", "[")),
            ("missing", c.missing), ("none", None)]
    c.cross("check_json_keybindings", keys, [{"expected": binding}, {"expected": {"key": "ctrl+k"}},
                                             *c.task_rules("check_json_keybindings")])
    texts = text_paths(c, ["Hello\n\tWorld  \n", "hello world", "a\nb", "", "ünï\r\nx"], name="t.txt")
    golds = [c.text("g.txt", t) for t in ("hello world", "Hello\n\tWorld  \n", "a b", "")]
    c.cross("compare_text_file", texts, golds, options=[{}, {"ignore_blanks": True}, {"ignore_case": True},
                                                        {"ignore_blanks": True, "ignore_case": True}])
    c.cross("compare_config", texts, [{"expected": "hello world"}, {"expected": "Hello\n\tWorld  \n"}, {"expected": ""},
                                      *c.task_rules("compare_config")])
    for kind, answer in [("value", "42"), ("value", ""), ("none", None), ("value", "4 2"), ("wrong_type", 42)]:
        for rules in ({"expected": "42"}, {"expected": 42}, {"expected": ""}):
            c.add("compare_answer", answer, rules, kind=kind)
    out = "ms-python.python\nesbenp.prettier-vscode\n"
    for kind, value in [("value", out), ("value", ""), ("none", None)]:
        for rules in ({"type": "contain", "expected": "ms-python.python"},
                      {"type": "not_contain", "expected": "ms-python.python"},
                      {"type": "contain", "expected": "x"}, *c.task_rules("is_extension_installed")):
            c.add("is_extension_installed", value, rules, kind=kind)
    numbers = [("value", c.text("r.txt", t)) for t in ("42\n", "The answer is 42.0", "41.99999", "abc", " abc ", "")]
    numbers += [("missing", c.missing), ("none", None)]
    c.cross("compare_result_files", numbers, [c.text("g.txt", t) for t in ("42", "42.00001", "abc", "")])
    _zips(c)
    _test_suites(c)


def _zip(c, members: dict[str, bytes]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return c.bytes("a.zip", buf.getvalue())


def _zips(c) -> None:
    plain = {"a.txt": b"one", "dir/b.txt": b"two"}
    results = [("value", _zip(c, plain)), ("value", _zip(c, {"a.txt": b"one"})),
               ("value", _zip(c, {"a.txt": b"one", "dir/b.txt": b"TWO"})), ("corrupt", c.text("a.zip", "not a zip")),
               ("missing", c.missing), ("none", None)]
    c.cross("compare_zip_files", results, [_zip(c, plain), _zip(c, {})])


def _test_suites(c) -> None:
    bodies = ["def test():\n    return True\n", "def test():\n    return 0.4\n", "def test():\n    return 7\n",
              "def test():\n    raise ValueError('no')\n", "def check():\n    return True\n", "x = (\n",
              "def test():\n    return 'yes'\n", "import os\ndef test():\n    return os.path.exists('helper.txt')\n",
              "test = 5\n"]
    for body in bodies:
        path = c.text("suite.py", body)
        open(path.replace("suite.py", "helper.txt"), "w").close()
        for opts in ({}, {"test_function_name": "check"}):
            c.add("check_python_file_by_test_suite", ["anything.py"], path, **opts)
    c.add("check_python_file_by_test_suite", None, c.missing, kind="missing")
    c.add("check_python_file_by_test_suite", None, None, kind="none")


PREFS = ('// Mozilla User Preferences\n'
         'user_pref("mail.spam.manualMark", true);\n'
         'user_pref("mail.spam.manualMarkMode", 1);\n'
         'user_pref("mail.identity.id1.fullName", "Ann \\"A\\" Lee");\n'
         'user_pref("a.b", "x");\n'
         'user_pref("a.b", "y");\n'
         'user_pref("mailnews.default_sort_type",  18);\n')
FILTERS = ('version="9"\nlogging="no"\nname="Spam to Junk"\nenabled="yes"\ntype="17"\naction="Move to folder"\n'
           'actionValue="mailbox://nobody@Local%20Folders/Junk"\ncondition="AND (subject,contains,spam) OR (from,is,a@b.c)"\n'
           'name="All"\nenabled="no"\ntype="1"\naction="Mark read"\ncondition="ALL"\n')


def _thunderbird(c) -> None:
    prefs = [("value", c.text("prefs.js", PREFS)), ("value", c.text("prefs.js", "")),
             ("corrupt", c.text("prefs.js", 'user_pref("bad", nonjson);\n')), ("missing", c.missing), ("none", None)]
    rules = [{"expect": {"mail.spam.manualMark": {"method": "eq", "ref": True}},
              "unexpect": {"a.b": {"method": "eq", "ref": "z"}}},
             {"expect": {"a.b": {"method": "eq", "ref": "x"}}}, {"expect": {"missing.key": {"method": "eq", "ref": 1}}},
             {"expect": {"mail.identity.id1.fullName": {"method": "re", "ref": "Ann"}}},
             {"unexpect": {"mail.spam.manualMarkMode": {"method": "eq", "ref": 1}}}, {},
             {"expect": {"mailnews.default_sort_type": {"method": "eq", "ref": 18}}},
             *c.task_rules("check_thunderbird_prefs")]
    c.cross("check_thunderbird_prefs", prefs, rules)
    filters = [("value", c.text("msgFilterRules.dat", FILTERS)), ("value", c.text("msgFilterRules.dat", "version=\"9\"\n")),
               ("missing", c.missing), ("none", None)]
    rules = [{"expect": [{"name": "Spam to Junk", "enabled": "yes", "action": "Move to folder"}]},
             {"expect": [{"name": "Spam to Junk", "condition": ["AND (subject,contains,spam)", "OR (from,is,a@b.c)"]}]},
             {"unexpect": [{"name": "All"}]}, {"expect": [{"name": "nope"}]}, {},
             *c.task_rules("check_thunderbird_filter")]
    c.cross("check_thunderbird_filter", filters, rules)
    mbox = "FROM - Mon\nX-Mozilla-Status: 0001\nSubject: a\n\nbody\nFROM - Tue\nX-Mozilla-Status: 0009\nSubject: b\n"
    folders = [("value", c.text("Inbox", mbox)), ("value", c.text("Inbox", "")), ("missing", c.missing), ("none", None)]
    golds = [c.text("gold", mbox), c.text("gold", "FROM - other\n")]
    c.cross("check_thunderbird_folder", folders, golds, options=[{}, {"remove_deleted": False, "remove_duplicate": False}])


def _registry(c) -> None:
    files = [
        ("value", xcu(item("/org.openoffice.Office.Common/Save/Document", "AutoSaveTimeIntervall", "3"))),
        ("value", xcu(item("/org.openoffice.Office.Common/Save/Document", "AutoSaveTimeIntervall", "10"),
                      item("/org.openoffice.Office.Common/Save/Document", "AutoSaveTimeIntervall", "3"))),
        ("value", xcu(item("/org.openoffice.Office.Common/Save/Document", "AutoSaveTimeIntervall", "3"),
                      item("/org.openoffice.Office.Common/Save/Document", "AutoSaveTimeIntervall", "10"))),
        ("value", xcu(item("/org.openoffice.Setup/L10N", "ooSetupSystemLocale", "en-GB"),
                      item("/org.openoffice.Setup/L10N", "ooLocale", "de-DE"))),
        ("value", xcu(item("/org.openoffice.Setup/L10N", "ooLocale", "de-DE"))),
        ("value", xcu(item("/org.openoffice.Office.Writer/DefaultFont", "Standard", "Times New Roman"))),
        ("value", xcu(item("/org.openoffice.Office.Impress/Misc/Start", "EnablePresenterScreen", "false"))),
        ("value", xcu(item("/org.openoffice.Office.Impress/Misc/Start", "EnablePresenterScreen", "true"))),
        ("value", xcu()),
    ]
    paths = [(kind, c.text("registrymodifications.xcu", text)) for kind, text in files]
    paths += [("corrupt", c.text("registrymodifications.xcu", "<oor:items>")), ("missing", c.missing), ("none", None)]
    c.cross("check_auto_saving_time", paths, [{"minutes": 3}, {"minutes": 10}, *c.task_rules("check_auto_saving_time")])
    locales = [(kind if kind != "value" or "L10N" in text else "no_setting", p)
               for (kind, p), text in zip(paths, [t for _, t in files] + ["", "", ""])]
    c.cross("check_libre_locale", locales, [{"locale_set": ["en-GB", "en-US"]}, {"locale_set": ["de-*"]},
                                            *c.task_rules("check_libre_locale")])
    c.cross("find_default_font", paths, [{"font_name": "Times New Roman"}, {"font_name": "Arial"},
                                         *c.task_rules("find_default_font")])
    for kind, path in paths:
        c.add("check_presenter_console_disable", path, kind=kind)
