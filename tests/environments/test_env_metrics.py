"""OSWorld metrics against OSWorld's semantics (desktop-env 1.0.2's code; docs/osworld.md §3.3).

The differential test (tests/environments/differential) checks them against OSWorld's own code on
thousands of generated cases; these pin the behaviours a reader would not guess.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from environments import metrics as M


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ---- rule helpers ----------------------------------------------------------------------------
@pytest.mark.parametrize("value,rule,ok", [
    ("Hello World", {"method": "re", "ref": "World$"}, True),
    ("hello", {"method": "re.IGNORECASE", "ref": "HELLO"}, True),
    ("hello", {"method": "re", "ref": "HELLO"}, False),
    (3, {"method": "eq", "ref": 3}, True),
    (3, {"method": "ne", "ref": 3}, False),
    (2, {"method": "lt", "ref": 3}, True),
    (3, {"method": "ge", "ref": 4}, False),
    ("1.05", {"method": "approx:0.1", "ref": 1}, True),
    ("abc", {"method": "approx:0.1", "ref": 1}, False),
    (5, {"method": "range.te", "ref": [4, 5]}, True),   # 4 < 5 <= 5
    (4, {"method": "range.te", "ref": [4, 5]}, False),
    (4, {"method": "range.et", "ref": [4, 5]}, True),   # 4 <= 4 < 5
    ('"a,b"', {"method": "str_list_eq", "ref": ["a", "b"]}, True),
    ("b,a", {"method": "str_list_eq", "ref": ["a", "b"]}, False),
    ("b,a", {"method": "str_set_eq", "ref": ["a", "b"]}, True),
])
def test_match_value_to_rule(value, rule, ok):
    assert M.match_value_to_rule(value, rule) is ok


def test_match_value_to_rule_unknown_method_is_unsupported():
    with pytest.raises(M.Unsupported):
        M.match_value_to_rule(1, {"method": "spreadsheet_magic", "ref": 1})


@pytest.mark.parametrize("a,b,same", [
    ("http://www.airbnb.com", "airbnb.com", True),  # http:// added, www dropped
    ("https://www.airbnb.com", "airbnb.com", False),  # the scheme still counts
    ("https://www.airbnb.com.sg/", "https://airbnb.com", True),
    ("https://www.lonelyplanet.com", "https://www.tripadvisor.com", False),
    ("https://a.example.com/x", "https://example.com/x", False),  # a real subdomain counts
    ("https://example.com/x?q=1", "https://example.com/x?q=2", False),
    (None, None, True),
    (None, "https://example.com", False),
])
def test_compare_urls(a, b, same):
    assert M.compare_urls(a, b) is same


def test_compare_urls_not_full_ignores_query():
    assert M.compare_urls("https://example.com/x?q=1", "https://example.com/x?q=2", full=False)


# ---- general ---------------------------------------------------------------------------------
def test_check_include_exclude():
    rules = {"include": ["54\n"], "exclude": ["error"]}
    assert M.METRICS["check_include_exclude"]("total 54\n", rules) == 1.0
    assert M.METRICS["check_include_exclude"]("total 54\nerror", rules) == 0.0
    assert M.METRICS["check_include_exclude"]("total 53\n", rules) == 0.0
    assert M.METRICS["check_include_exclude"](None, rules) == 0.0


def test_exact_match_keeps_trailing_newline():
    assert M.METRICS["exact_match"]("File exists.\n", {"expected": "File exists.\n"}) == 1.0
    assert M.METRICS["exact_match"]("File exists.", {"expected": "File exists.\n"}) == 0.0


def test_match_in_list_and_is_in_list():
    assert M.METRICS["match_in_list"]("b", {"expected": ["a", "b"]}) == 1.0
    assert M.METRICS["match_in_list"]("c", {"expected": ["a", "b"]}) == 0.0
    assert M.METRICS["is_in_list"](["a", "b"], {"expected": "b"}) == 1.0
    assert M.METRICS["is_in_list"]("xbx", {"expected": "b"}) == 1.0
    assert M.METRICS["is_in_list"](["a"], {"expected": "b"}) == 0.0


def test_literal_match():
    assert M.METRICS["literal_match"](1, "1") == 1.0
    assert M.METRICS["literal_match"]("A", "a") == 0.0
    assert M.METRICS["literal_match"]("A", "a", ignore_case=True) == 1.0
    assert M.METRICS["literal_match"]([1, "x"], ["1", "x"], type="list") == 1.0
    assert M.METRICS["literal_match"]([1], ["1", "x"], type="list") == 0.0


def test_fuzzy_match_is_ratio():
    assert M.METRICS["fuzzy_match"]("abcd", {"expected": "abcd"}) == 1.0
    assert M.METRICS["fuzzy_match"]("abcd", {"expected": "abce"}) == pytest.approx(0.75)
    assert M.METRICS["fuzzy_match"](None, {"expected": "x"}) == 0.0


def test_diff_text_file(tmp_path):
    a = write(tmp_path, "a", "1\n2\n3\n4\n")
    b = write(tmp_path, "b", "1\n2\n3\n5\n")
    assert M.METRICS["diff_text_file"](a, a) == 1.0
    assert M.METRICS["diff_text_file"](a, b) == pytest.approx(0.75)
    assert M.METRICS["diff_text_file"](None, b) == 0.0


def test_check_list(tmp_path):
    p = write(tmp_path, "l", "alpha 1\nbeta 2\n")
    assert M.METRICS["check_list"](p, {"expect": [r"alpha \d"], "unexpect": ["gamma"]}) == 1.0
    assert M.METRICS["check_list"](p, {"expect": [r"alpha \d", "delta"]}) == 0.0
    assert M.METRICS["check_list"](p, {"expect": [], "unexpect": ["beta"]}) == 0.0
    assert M.METRICS["check_list"](str(tmp_path / "missing"), {"expect": []}) == 0.0


def test_check_csv(tmp_path):
    p = write(tmp_path, "c.csv", "name,age\nann,30\nbob,40\n")
    assert M.METRICS["check_csv"](p, {"expect": [{"name": "ann", "age": "30"}], "unexpect": [{"name": "carl"}]}) == 1.0
    assert M.METRICS["check_csv"](p, {"expect": [{"name": "ann", "age": "31"}]}) == 0.0
    assert M.METRICS["check_csv"](p, {"expect": [], "unexpect": [{"name": "bob"}]}) == 0.0


def test_check_json(tmp_path):
    p = write(tmp_path, "s.json", json.dumps({"editor": {"fontSize": 14, "theme": "dark"}}))
    rules = {"expect": [{"key": ["editor", "fontSize"], "method": "eq", "ref": 14}],
             "unexpect": [{"key": ["editor", "wordWrap"], "method": "eq", "ref": "on"}]}
    assert M.METRICS["check_json"](p, rules) == 1.0
    assert M.METRICS["check_json"](p, {"expect": [{"key": ["editor", "missing"], "method": "eq", "ref": 1}]}) == 0.0
    assert M.METRICS["check_json"](p, {"unexpect": [{"key": ["editor", "theme"], "method": "eq", "ref": "dark"}]}) == 0.0
    assert M.METRICS["check_json"](write(tmp_path, "bad.json", "{nope"), rules) == 0.0


def test_check_direct_json_object():
    rules = {"expected": {"a": 1, "b": "x"}}
    assert M.METRICS["check_direct_json_object"]({"a": 1, "b": "x", "c": 2}, rules) == 1.0
    assert M.METRICS["check_direct_json_object"]("{'a': 1, 'b': 'x'}\n", rules) == 1.0  # quotes fixed, stripped
    assert M.METRICS["check_direct_json_object"]({"a": 2, "b": "x"}, rules) == 0.0
    assert M.METRICS["check_direct_json_object"]({"a": 1}, {"expected": {"a": "__EVALUATION_FAILED__"}}) == 0.0
    # OSWorld sorts every expected value when ignore_list_order is set, the flag itself too: always 0
    order = {"expected": {"l": [2, 1], "ignore_list_order": True}}
    assert M.METRICS["check_direct_json_object"]({"l": [1, 2]}, order) == 0.0
    assert M.METRICS["check_direct_json_object"]("not json", rules) == 0.0  # OSWorld raises
    inres = {"expected": {"city": ["Paris", "Lyon"], "name": "Ann"}, "expect_in_result": True}
    assert M.METRICS["check_direct_json_object"]({"city": "Lyon", "name": "Ann Lee"}, inres) == 1.0
    assert M.METRICS["check_direct_json_object"]({"city": "Nice", "name": "Ann Lee"}, inres) == 0.0


def test_run_sqlite3(tmp_path):
    db = tmp_path / "d.sqlite"
    con = sqlite3.connect(db)
    con.execute("create table t(x)")
    con.execute("insert into t values (3)")
    con.commit()
    con.close()
    assert M.METRICS["run_sqlite3"](str(db), {"sql": "select count(*) from t where x = 3"}) == 1.0
    assert M.METRICS["run_sqlite3"](str(db), {"sql": "select count(*) from t where x = 4"}) == 0.0


def test_file_contains_and_check_line_number(tmp_path):
    p = write(tmp_path, "log", "12:00:01 start\n23:59:60 leap\n24:00:00 bad\nno time\n")
    assert M.METRICS["file_contains"](p, {"expected": ["start", "leap"]}) == 1.0
    assert M.METRICS["file_contains"](p, {"expected": ["start", "stop"]}) == 0.0
    assert M.METRICS["check_line_number"](p, {"expected": "2"}) == 1.0
    assert M.METRICS["check_line_number"](p, {"expected": 3}) == 0.0
    assert M.METRICS["file_contains"](None, {"expected": []}) == 0.0


def test_compare_python_pure_text(tmp_path):
    a = write(tmp_path, "a.py", "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\nx = 1\n\n\tprint(x)   \n")
    b = write(tmp_path, "b.py", "x = 1\n    print(x)\n")
    c = write(tmp_path, "c.py", "x = 2\n    print(x)\n")
    assert M.METRICS["compare_python_pure_text"](a, b) == 1.0
    assert M.METRICS["compare_python_pure_text"](a, c) == 0.0


# ---- basic_os --------------------------------------------------------------------------------
def test_check_gnome_favorite_apps():
    rules = {"expected": ["google-chrome.desktop", "thunderbird.desktop"]}
    assert M.METRICS["check_gnome_favorite_apps"]("['thunderbird.desktop', 'google-chrome.desktop']\n", rules) == 1.0
    assert M.METRICS["check_gnome_favorite_apps"]("['thunderbird.desktop']\n", rules) == 0.0
    assert M.METRICS["check_gnome_favorite_apps"]("__import__('os')", rules) == 0.0  # never eval()


def test_is_utc_0_reads_line_4():
    out = ("               Local time: Mon 2024-01-01 10:00:00 UTC\n"
           "           Universal time: Mon 2024-01-01 10:00:00 UTC\n"
           "                 RTC time: n/a\n"
           "                Time zone: Etc/UTC (UTC, +0000)\n")
    assert M.METRICS["is_utc_0"](out) == 1.0
    assert M.METRICS["is_utc_0"](out.replace("+0000", "+0100")) == 0.0
    assert M.METRICS["is_utc_0"]("") == 0.0


def test_check_text_enlarged():
    assert M.METRICS["check_text_enlarged"]("1.25\n") == 1.0
    assert M.METRICS["check_text_enlarged"]("1.0\n") == 0.0


def test_check_moved_jpgs_uses_immediate_children():
    tree = {"type": "directory", "name": "cpjpg", "children": [
        {"type": "file", "name": "a.jpg"}, {"type": "directory", "name": "sub", "children": [
            {"type": "file", "name": "b.jpg"}]}]}
    assert M.METRICS["check_moved_jpgs"](tree, {"expected": ["a.jpg", "sub"]}) == 1.0
    assert M.METRICS["check_moved_jpgs"](tree, {"expected": ["a.jpg", "b.jpg"]}) == 0.0


def test_is_in_vm_clickboard_argument_order():
    assert M.METRICS["is_in_vm_clickboard"]({"expected": ["ab", "cd"]}, "xxabcdxx") == 1.0
    assert M.METRICS["is_in_vm_clickboard"]({"expected": "zz"}, "xxabcdxx") == 0.0


# ---- vscode-style text/config ----------------------------------------------------------------
def test_compare_text_file(tmp_path):
    a = write(tmp_path, "a", "Hello\n\tWorld  \n")
    b = write(tmp_path, "b", "hello world")
    assert M.METRICS["compare_text_file"](a, b) == 0.0
    assert M.METRICS["compare_text_file"](a, b, ignore_blanks=True, ignore_case=True) == 1.0
    assert M.METRICS["compare_text_file"](None, b) == 0.0


def test_check_json_settings_and_keybindings(tmp_path):
    s = write(tmp_path, "settings.json", json.dumps({"editor.fontSize": 14, "x": 1}))
    assert M.METRICS["check_json_settings"](s, {"expected": {"editor.fontSize": 14}}) == 1.0
    assert M.METRICS["check_json_settings"](s, {"expected": {"editor.fontSize": 12}}) == 0.0
    k = write(tmp_path, "keybindings.json", "// header\n" + json.dumps([{"key": "ctrl+j", "command": "x"}]))
    assert M.METRICS["check_json_keybindings"](k, {"expected": {"key": "ctrl+j", "command": "x"}}) == 1.0
    assert M.METRICS["check_json_keybindings"](k, {"expected": {"key": "ctrl+k", "command": "x"}}) == 0.0


def test_compare_config_is_text_equality(tmp_path):
    t = write(tmp_path, "c.txt", "key = value\n")
    assert M.METRICS["compare_config"](t, {"expected": "key = value\n"}) == 1.0
    assert M.METRICS["compare_config"](t, {"expected": "key = value"}) == 0.0
    assert M.METRICS["compare_config"](str(tmp_path / "missing"), {"expected": ""}) == 0.0


def test_is_extension_installed():
    out = "ms-python.python\nesbenp.prettier-vscode\n"
    assert M.METRICS["is_extension_installed"](out, {"type": "contain", "expected": "ms-python.python"}) == 1.0
    assert M.METRICS["is_extension_installed"](out, {"type": "not_contain", "expected": "ms-python.python"}) == 0.0


# ---- chrome ----------------------------------------------------------------------------------
def test_is_expected_tabs():
    rule = {"type": "url", "urls": ["https://www.lonelyplanet.com", "https://www.airbnb.com"]}
    tabs = [{"title": "a", "url": "https://www.airbnb.com/"}, {"title": "b", "url": "https://lonelyplanet.com"}]
    assert M.METRICS["is_expected_tabs"](tabs, rule) == 1.0
    assert M.METRICS["is_expected_tabs"](tabs[:1], rule) == 0.0  # count must match
    assert M.METRICS["is_expected_tabs"]([tabs[0], tabs[0]], rule) == 0.0


def test_is_expected_active_tab_and_approximate():
    rule = {"type": "url", "url": "https://www.example.com/page"}
    assert M.METRICS["is_expected_active_tab"]({"url": "https://example.com/page"}, rule) == 1.0
    assert M.METRICS["is_expected_active_tab"]("https://example.com/other", rule) == 0.0
    assert M.METRICS["is_expected_active_tab_approximate"]("https://www.example.com/page?x=1", rule) == 1.0
    assert M.METRICS["is_expected_active_tab_approximate"]("https://example.com/page", rule) == 0.0  # exact, no normalisation


def test_is_expected_url_pattern_match():
    rules = {"expected": [r"/flights", r"from=BER"]}
    assert M.METRICS["is_expected_url_pattern_match"]("https://x.test/flights?from=BER", rules) == 1.0
    assert M.METRICS["is_expected_url_pattern_match"]({"url": "https://x.test/flights?from=LIS"}, rules) == 0.0


def test_is_expected_bookmarks():
    roots = {"bookmark_bar": {"children": [
        {"type": "folder", "name": "Favorites", "children": []},
        {"type": "url", "name": "x", "url": "https://x.test/"},
        {"type": "folder", "name": "Liked Authors", "children": [
            {"type": "url", "url": "https://a.test/1"}, {"type": "url", "url": "https://b.test/2"}]}]}}
    assert M.METRICS["is_expected_bookmarks"](roots, {"type": "bookmark_bar_folders_names",
                                           "names": ["Favorites", "Liked Authors"]}) == 1.0
    assert M.METRICS["is_expected_bookmarks"](roots, {"type": "bookmark_bar_folders_names", "names": ["Favorites"]}) == 0.0
    assert M.METRICS["is_expected_bookmarks"](roots, {"type": "bookmark_bar_websites_urls", "urls": ["https://x.test/"]}) == 1.0
    liked = {"type": "liked_authors_websites_urls",
             "urls": [["https://a.test/0", "https://a.test/1"], ["https://b.test/2"]]}
    assert M.METRICS["is_expected_bookmarks"](roots, liked) == 1.0
    assert M.METRICS["is_expected_bookmarks"](None, liked) == 0.0


def test_check_font_size_range_is_strict():
    assert M.METRICS["check_font_size"]({"default_font_size": 20}, {"type": "value", "value": 20}) == 1.0
    assert M.METRICS["check_font_size"]({"default_font_size": 20}, {"type": "range", "min": 16, "max": 20}) == 0.0
    assert M.METRICS["check_font_size"]({"default_font_size": 18}, {"type": "range", "min": 16, "max": 20}) == 1.0


def test_check_history_deleted_and_cookies():
    rows = [("https://www.youtube.com/watch?v=1", "t", 1), ("https://bbc.co.uk/", "b", 2)]
    assert M.METRICS["check_history_deleted"](rows, {"type": "keywords", "keywords": ["youtube"]}) == 0.0
    assert M.METRICS["check_history_deleted"](rows[1:], {"type": "keywords", "keywords": ["youtube"]}) == 1.0
    cookies = [(0, ".amazon.com", "k"), (0, ".bbc.co.uk", "k")]
    assert M.METRICS["is_cookie_deleted"](cookies, {"type": "domains", "domains": [".amazon.com"]}) == 0.0
    assert M.METRICS["is_cookie_deleted"](cookies[1:], {"type": "domains", "domains": [".amazon.com"]}) == 1.0


def test_is_shortcut_on_desktop_matches_whole_lines():
    shortcuts = {"c.desktop": "[Desktop Entry]\nName=Google Chrome\nExec=/usr/bin/google-chrome %U\n"
                              "[Desktop Action new-window]\nName=New Window\n"}
    is_on = M.METRICS["is_shortcut_on_desktop"]
    assert is_on(shortcuts, {"type": "name", "name": "Google Chrome"}) == 1.0  # not hidden by the action's Name=
    assert is_on(shortcuts, {"type": "name", "name": "google chrome"}) == 0.0  # case counts
    assert is_on(shortcuts, {"type": "exec", "exec": "/usr/bin/google-chrome %U"}) == 1.0
    assert is_on(shortcuts, {"type": "exec", "exec": "/usr/bin/google-chrome"}) == 0.0  # the whole line
    assert is_on(shortcuts, {"type": "name", "name": "Firefox"}) == 0.0


def test_check_enabled_experiments():
    assert M.METRICS["check_enabled_experiments"](["a@1", "b@2"], {"type": "names", "names": ["a", "b"]}) == 1.0
    assert M.METRICS["check_enabled_experiments"](["a@1"], {"type": "names", "names": ["a", "b"]}) == 0.0


# ---- tables and app config -------------------------------------------------------------------
def test_compare_csv(tmp_path):
    a = write(tmp_path, "a.csv", "x,y\n1,2\n")
    b = write(tmp_path, "b.csv", " x,y \n1,2\n")
    assert M.METRICS["compare_csv"](a, b) == 0.0
    assert M.METRICS["compare_csv"](a, b, strict=False) == 1.0
    assert M.METRICS["compare_csv"](a, [b, a]) == 1.0


def test_compare_table_xlsx(tmp_path):
    import openpyxl  # a dependency of the harness (compare_table)

    def book(name, rows, freeze=None, zoom=None):
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "Sheet1"
        for r in rows:
            ws.append(r)
        if freeze:
            ws.freeze_panes = freeze
        if zoom:
            ws.sheet_view.zoomScale = zoom
        p = tmp_path / name
        wb.save(p)
        return str(p)

    gold = book("gold.xlsx", [["a", "b"], [1, 2.00001]], freeze="A2")
    same = book("same.xlsx", [["a", "b"], [1, 2.00002]], freeze="A2", zoom=150)  # equal after round(4)
    whole = book("whole.xlsx", [["a", "b"], [1, 2]], freeze="A2")  # an int column never equals a float one
    diff = book("diff.xlsx", [["a", "b"], [1, 3]])
    assert M.METRICS["compare_table"](same, gold, rules=[{"type": "sheet_data", "sheet_idx0": 0, "sheet_idx1": "EI0"}]) == 1.0
    assert M.METRICS["compare_table"](diff, gold, rules=[{"type": "sheet_data", "sheet_idx0": 0, "sheet_idx1": "EI0"}]) == 0.0
    assert M.METRICS["compare_table"](whole, gold, rules=[{"type": "sheet_data", "sheet_idx0": 0, "sheet_idx1": "EI0"}]) == 0.0
    missing = {"type": "sheet_data", "sheet_idx0": "RNSheet2", "sheet_idx1": "ENSheet1"}
    assert M.METRICS["compare_table"](same, gold, rules=[missing]) == 0.0  # the agent never made Sheet2
    assert M.METRICS["compare_table"](write(tmp_path, "broken.xlsx", "not a zip"), gold, rules=[missing]) == 0.0
    assert M.METRICS["compare_table"](same, gold, rules=[{"type": "sheet_name"}]) == 1.0
    by_name = {"type": "freeze", "sheet_idx0": "RNSheet1", "sheet_idx1": "ENSheet1"}
    assert M.METRICS["compare_table"](same, gold, rules=[by_name]) == 1.0
    assert M.METRICS["compare_table"](diff, gold, rules=[{"type": "freeze", "sheet_idx0": 0, "sheet_idx1": "EI0"}]) == 0.0
    assert M.METRICS["compare_table"](same, None, rules=[{"type": "zoom", "sheet_idx": 0, "method": "ge", "ref": 120}]) == 1.0
    cell = {"type": "check_cell", "sheet_idx": 0, "coordinate": "B2", "props": {"value": {"method": "eq", "ref": 2}}}
    assert M.METRICS["compare_table"](whole, None, rules=[cell]) == 1.0  # the XML value 2 reads as 2.0
    assert M.METRICS["compare_table"](None, gold, rules=[cell]) == 0.0
    with pytest.raises(M.Unsupported):
        M.METRICS["compare_table"](same, gold, rules=[{"type": "no_such_rule"}])


def test_check_config_status_gimprc(tmp_path):
    p = write(tmp_path, "gimprc", "# comment\n(undo-levels 100)\n(default-image (width 640))\n")
    assert M.METRICS["check_config_status"](p, {"key": "undo-levels", "value": "100"}) == 1.0
    assert M.METRICS["check_config_status"](p, {"key": "undo-levels", "value": "5"}) == 0.0


def test_is_vlc_recordings_folder(tmp_path):
    p = write(tmp_path, "vlcrc", "#input-record-path=\ninput-record-path=/home/user/Desktop\n")
    assert M.METRICS["is_vlc_recordings_folder"](p, {"recording_file_path": "/home/user/Desktop"}) == 1.0
    assert M.METRICS["is_vlc_recordings_folder"](p, {"recording_file_path": "/tmp"}) == 0.0


def test_check_thunderbird_prefs(tmp_path):
    p = write(tmp_path, "prefs.js", 'user_pref("mail.spam.manualMark", true);\nuser_pref("a.b", "x");\n')
    rule = {"expect": {"mail.spam.manualMark": {"method": "eq", "ref": True}},
            "unexpect": {"a.b": {"method": "eq", "ref": "y"}}}
    assert M.METRICS["check_thunderbird_prefs"](p, rule) == 1.0
    assert M.METRICS["check_thunderbird_prefs"](p, {"expect": {"a.b": {"method": "eq", "ref": "y"}}}) == 0.0


def test_registry_names_are_function_names():
    assert all(name == fn.__name__ for name, fn in M.METRICS.items())
    assert M.METRICS["check_file_exists"].__module__.endswith(".gimp")  # gimp's wins, as in OSWorld
    assert {"exact_match", "check_include_exclude", "compare_table", "is_expected_tabs"} <= set(M.METRICS)
