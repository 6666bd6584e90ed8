"""Cases for OSWorld's chrome.py metrics: URLs, tabs, bookmarks, profile values, and its PDF/HTML/archive
comparisons."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile

from osworld_differential.corpus.media import pdf, png

URLS = ["https://www.airbnb.com", "airbnb.com", "http://www.airbnb.com.sg/", "https://www.lonelyplanet.com/",
        "https://a.example.com/x", "https://example.com/x?q=1", "https://example.com/x?q=2#frag", "HTTPS://Example.COM/x",
        "localhost:8080/p", "http://localhost:8080/p", "chrome://settings/", "https://drugs.com/npc/",
        "https://www.drugs.com/npc/", "https://www.babycenter.com/baby-names/details/carl-853", "file:///home/user/a.html",
        "https://www.google.com/search?q=Nereida&oq=x", "https://example.com/ü/日本"]


def add_cases(c) -> None:
    _urls(c)
    _profile(c)
    _documents(c)


def _urls(c) -> None:
    infos = [("value", u) for u in URLS] + [("value", {"url": u, "title": "t"}) for u in URLS[:6]]
    infos += [("none", None), ("value", ""), ("value", {}), ("value", {"title": "no url"})]
    actives = [{"type": "url", "url": u} for u in URLS[:10]] + [{"type": "title", "url": "x"}]
    actives += c.task_rules("is_expected_active_tab") + c.task_rules("is_expected_active_tab_approximate")
    c.cross("is_expected_active_tab", infos, actives)
    c.cross("is_expected_active_tab_approximate", infos, actives)
    patterns = [{"expected": [r"/flights", r"from=BER"]}, {"expected": ["airbnb"]}, {"expected": []},
                {"expected": [r"q=Nereida&"]}, {"expected": ["ü"]}, *c.task_rules("is_expected_url_pattern_match")]
    c.cross("is_expected_url_pattern_match", infos, patterns)
    queries = [{"expect": {"pattern": r"www\.google\.com.*?/search\?q=Nereida&"}}, {"expect": {"pattern": "airbnb"}},
               *c.task_rules("is_expected_search_query")]
    tab_infos = [("wrong_type" if isinstance(v, str) and v else kind, v) for kind, v in infos]  # the getter gives dicts
    c.cross("is_expected_search_query", tab_infos, queries)
    tab_sets = [[], URLS[:2], URLS[:4], [URLS[0], URLS[0]], URLS[4:8], ["https://www.lonelyplanet.com", "airbnb.com"]]
    tabs = [("value", [{"title": "t", "url": u} for u in urls]) for urls in tab_sets] + [("none", None)]
    rules = [{"type": "url", "urls": urls} for urls in tab_sets[1:]] + [{"type": "title", "urls": []}]
    c.cross("is_expected_tabs", tabs, rules + c.task_rules("is_expected_tabs"))


def _bookmarks(c) -> None:
    roots = {"bookmark_bar": {"children": [
        {"type": "folder", "name": "Favorites", "children": []},
        {"type": "url", "name": "x", "url": "https://x.test/"},
        {"type": "folder", "name": "Liked Authors", "children": [
            {"type": "url", "name": "a", "url": "https://a.test/1"}, {"type": "url", "name": "b", "url": "https://b.test/2"}]}]}}
    empty_bar = {"bookmark_bar": {"children": []}}
    values = [("value", roots), ("value", empty_bar), ("value", []), ("none", None), ("value", {"other": {}})]
    rules = [{"type": "bookmark_bar_folders_names", "names": ["Favorites", "Liked Authors"]},
             {"type": "bookmark_bar_folders_names", "names": ["Favorites"]},
             {"type": "bookmark_bar_websites_urls", "urls": ["https://x.test/"]},
             {"type": "liked_authors_websites_urls", "urls": [["https://a.test/0", "https://a.test/1"], "https://b.test/2"]},
             {"type": "liked_authors_websites_urls", "urls": [["https://a.test/1"]]}, {"type": "other", "names": []},
             *c.task_rules("is_expected_bookmarks")]
    c.cross("is_expected_bookmarks", values, rules)


def _profile(c) -> None:
    _bookmarks(c)
    installed = [("value", ["Zotero Connector", "uBlock"]), ("value", []), ("value", "Google"), ("none", None),
                 ("value", ["Zoom Chrome Extension"]), ("value", ["Zoom for Google Chrome"])]
    c.cross("is_expected_installed_extensions", installed,
            [{"expected": ["Zotero Connector"]}, {"expected": []}, {"expected": ["Zoom Chrome Extension"]},
             *c.task_rules("is_expected_installed_extensions")])
    cookies = [("value", [[1, ".amazon.com", "k"], [2, ".bbc.co.uk", "k"]]), ("value", []), ("none", None),
               ("value", [[1, "www.amazon.co.uk", "k"]])]
    c.cross("is_cookie_deleted", cookies, [{"type": "domains", "domains": [".amazon.com"]},
                                          {"type": "domains", "domains": []}, {"type": "hosts"},
                                          *c.task_rules("is_cookie_deleted")])
    history = [("value", [["https://www.youtube.com/watch?v=1", "t", 1], ["https://bbc.co.uk/", "b", 2]]),
               ("value", [["https://bbc.co.uk/", "b", 2]]), ("value", []), ("none", None)]
    c.cross("check_history_deleted", history, [{"type": "keywords", "keywords": ["youtube"]},
                                               {"type": "keywords", "keywords": []}, {"type": "domains"},
                                               *c.task_rules("check_history_deleted")])
    desktop = "[Desktop Entry]\nName=Google Chrome\nExec=/usr/bin/google-chrome %U\n[Desktop Action new]\nName=New Window\n"
    shortcuts = [("value", {"c.desktop": desktop}), ("value", {"g.desktop": "Name=Play Puzzle Game 2048\nExec=x"}),
                 ("value", {"g.desktop": "Name=Play Puzzle Game 2048\r\n"}), ("value", {}), ("none", None)]
    c.cross("is_shortcut_on_desktop", shortcuts, [
        {"type": "name", "name": "Google Chrome"}, {"type": "name", "name": "google chrome"},
        {"type": "name", "name": "Play Puzzle Game 2048"}, {"type": "exec", "exec": "/usr/bin/google-chrome %U"},
        {"type": "exec", "exec": "/usr/bin/google-chrome"}, {"type": "url", "url": "x"},
        *c.task_rules("is_shortcut_on_desktop")])
    experiments = [("value", ["a@1", "b@2"]), ("value", ["a@1"]), ("value", []), ("none", None)]
    c.cross("check_enabled_experiments", experiments, [{"type": "names", "names": ["a", "b"]},
                                                       {"type": "names", "names": []}, {"type": "other"},
                                                       *c.task_rules("check_enabled_experiments")])
    sizes = [("value", {"default_font_size": s}) for s in (16, 18, 20, 24)]
    sizes += [("value", {"default_fixed_font_size": 13, "default_font_size": 16}), ("none", None)]
    c.cross("check_font_size", sizes, [{"type": "value", "value": 20}, {"type": "range", "min": 16, "max": 20},
                                       {"type": "other"}, *c.task_rules("check_font_size")])
    pages = [("value", {"title": "Cart", "url": "u", "content": "<div>Cyberpunk 2077</div><div>Dota</div>"}),
             ("value", {"title": "", "url": "", "content": ""}), ("none", None)]
    c.cross("is_added_to_steam_cart", pages, [{"items": ["Cyberpunk 2077"]}, {"items": ["Cyberpunk 2077", "Portal"]},
                                              {"items": []}, *c.task_rules("is_added_to_steam_cart")])


def _archive(c, kind: str, members: dict[str, str]) -> str:
    if kind == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, text in members.items():
                z.writestr(name, text)
        return c.bytes("a.zip", buf.getvalue())
    path = c.path("a.tar.gz")
    with tarfile.open(path, "w:gz") as t:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _documents(c) -> None:
    texts = [pdf(c, ["Hello PDF world"]), pdf(c, ["Hello PDF world"]), pdf(c, ["Hello PDF", "second page"]),
             pdf(c, [""]), pdf(c, ["Ünïcödé 中文 text"])]
    results = [("value", p) for p in texts] + [("missing", c.missing), ("none", None),
                                               ("corrupt", c.text("x.pdf", "not a pdf"))]
    c.cross("compare_pdfs", results, texts[:3])
    c.add("compare_pdfs", texts[:2], texts[1:3])
    c.add("compare_pdfs", [texts[0], c.missing], [texts[0], texts[1]], kind="missing")
    with_images = [pdf(c, ["a"], images=[png(c, (40, 30), (200, 10, 10))]),
                   pdf(c, ["a"], images=[png(c, (40, 30), (200, 10, 10))]),
                   pdf(c, ["a"], images=[png(c, (40, 30), (10, 200, 10)), png(c, (20, 20), (0, 0, 0))]),
                   texts[0]]
    image_results = [("value", p) for p in with_images] + [("missing", c.missing), ("none", None)]
    c.cross("compare_pdf_images", image_results, with_images)
    same_name = c.path("result.pdf")
    shutil.copy(with_images[2], same_name)
    c.add("compare_pdf_images", with_images[0], same_name)
    same_gold = c.path("result.pdf")
    shutil.copy(with_images[0], same_gold)
    c.add("compare_pdf_images", same_name, same_gold)  # OSWorld compares the gold with itself here
    htmls = ["<html><body><p class='a'>Hi</p></body></html>", "<html><body><p class='a'>Hi</p></body></html>",
             "<html><body><p class='b'>Hi</p></body></html>", "<html><body><p class='a' sdnum='1'>Hi</p></body></html>",
             "<html><body><p>Hi</p><p>more</p></body></html>", ""]
    paths = [("value", c.text("a.html", h)) for h in htmls] + [("missing", c.missing), ("none", None)]
    c.cross("compare_htmls", paths, [c.text("g.html", h) for h in htmls[:4]], options=[{}, {"ignore_sdnum": True}])
    gold_members = {"a.txt": "one\n", "b.txt": "two\n"}
    for archive in ("zip", "tar"):
        gold = _archive(c, archive, gold_members)
        for kind, members in (("value", gold_members), ("value", {"a.txt": "one\n"}), ("value", {"a.txt": "ONE\n", "b.txt": "two\n"})):
            pred = _archive(c, archive, members)
            for opts in ({}, {"file_type": "text"}, {"file_type": "text", "ignore_case": True}):
                c.add("compare_archive", pred, gold, kind=kind, **opts)
        c.add("compare_archive", None, gold, kind="none")
        c.add("compare_archive", c.text("a.zip", "not an archive"), gold, kind="corrupt")
    nested = _archive(c, "zip", {"d/a.txt": "x", "d/b.txt": "y"})
    c.add("compare_archive", _archive(c, "zip", {"d/a.txt": "x", "d/b.txt": "y"}), nested, file_path="d", file_type="text")
