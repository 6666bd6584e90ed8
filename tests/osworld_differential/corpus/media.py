"""Cases for OSWorld's gimp.py, vlc.py, pdf.py and others.py metrics (images, vlcrc, PDFs, EPUB, MP3),
and the file helpers other families use."""

from __future__ import annotations

import io
import zipfile

import numpy as np


def png(c, size, color, mode="RGB", name="i.png", pattern=False, fmt="PNG"):
    from PIL import Image

    img = Image.new(mode, size, color)
    if pattern:
        a = np.array(img.convert("RGB"))
        h, w = a.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        a[..., 0] = (xx * 7 + yy * 3) % 256
        a[..., 1] = (xx * yy) % 256
        img = Image.fromarray(a).convert(mode)
    path = c.path(name)
    img.save(path, fmt)
    return path


def image_from(c, array, name="i.png", mode=None):
    from PIL import Image

    path = c.path(name)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)
    return path


def pdf(c, pages: list[str], images: list[str] = ()) -> str:
    import pymupdf

    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        if text:
            page.insert_text((72, 72), text)
    for i, image in enumerate(images):
        doc[0].insert_image(pymupdf.Rect(72, 100 + 60 * i, 132, 150 + 60 * i), filename=image)
    path = c.path("d.pdf")
    doc.save(path)
    return path


def add_cases(c) -> None:
    _images(c)
    _gimp_config(c)
    _vlc(c)
    _pdf_pages(c)
    _epub(c)
    _mp3(c)


def _pictures(c):
    base = np.zeros((48, 64, 3), np.uint8)
    yy, xx = np.mgrid[0:48, 0:64]
    base[..., 0], base[..., 1], base[..., 2] = (xx * 4) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256
    dark = (base * 0.6).astype(np.uint8)
    bright = np.clip(base.astype(int) + 40, 0, 255).astype(np.uint8)
    flipped = base[:, ::-1]
    noisy = np.clip(base.astype(int) + np.random.default_rng(0).integers(-30, 30, base.shape), 0, 255).astype(np.uint8)
    gray = base.mean(axis=2).astype(np.uint8)
    from PIL import Image

    vivid = Image.fromarray(base).convert("HSV")
    h, sat, v = vivid.split()
    vivid = Image.merge("HSV", (h, sat.point(lambda x: min(255, int(x * 1.5) + 20)), v)).convert("RGB")
    palette = Image.fromarray(base).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    vivid_path, palette_path = c.path("vivid.png"), c.path("palette.png")
    vivid.save(vivid_path)
    palette.save(palette_path)
    return {"vivid": vivid_path, "palette_of_base": palette_path, "base": image_from(c, base), "base_copy": image_from(c, base), "dark": image_from(c, dark),
            "bright": image_from(c, bright), "flipped": image_from(c, flipped), "noisy": image_from(c, noisy),
            "gray": image_from(c, gray), "small": png(c, (5, 5), (10, 20, 30)),
            "big": png(c, (96, 72), (0, 0, 0), pattern=True), "rgba": png(c, (64, 48), (10, 200, 10, 128), "RGBA"),
            "palette": png(c, (64, 48), (0, 0, 0), pattern=True, mode="P"), "jpeg": png(c, (64, 48), (0, 0, 0), pattern=True,
                                                                                         name="i.jpg", fmt="JPEG"),
            "square_green": png(c, (32, 32), (20, 200, 30)), "square_mask": png(c, (32, 32), (255, 255, 255)),
            "square_red": png(c, (32, 32), (200, 20, 30))}


def _images(c) -> None:
    pics = _pictures(c)
    results = [("value", p) for p in pics.values()] + [("missing", c.missing), ("none", None),
                                                       ("corrupt", c.text("i.png", "not an image"))]
    pairs_metrics = ["compare_images", "compare_image_list", "check_structure_sim", "check_structure_sim_resized",
                     "check_brightness_decrease_and_structure_sim", "check_saturation_increase_and_structure_sim",
                     "check_contrast_increase_and_structure_sim", "check_image_mirror",
                     "check_file_exists_and_structure_sim", "check_palette_and_structure_sim"]
    golds = [pics[k] for k in ("base", "bright", "gray", "big", "rgba")]
    for metric in pairs_metrics:
        c.cross(metric, results, golds)
    c.cross("compare_images", results, golds[:2], options=[{"reference_base_result": 0.5},
                                                           {"reference_base_result": 0.99}])
    c.add("compare_image_list", [pics["base"], pics["base_copy"]], [pics["base_copy"], pics["base"]])
    c.add("compare_image_list", [pics["base"], pics["dark"]], [pics["base"], pics["base"]])
    c.add("compare_image_list", [pics["base"], None], [pics["base"], pics["base"]], kind="none")
    triangle = np.full((40, 40, 3), 255, np.uint8)
    triangle[15:25, 16:24] = (250, 200, 0)
    off = np.full((40, 40, 3), 255, np.uint8)
    off[0:8, 0:8] = (250, 200, 0)
    for kind, p in [("value", image_from(c, triangle)), ("value", image_from(c, off)), ("value", pics["base"]),
                    ("missing", c.missing), ("none", None)]:
        c.add("check_triangle_position", p, kind=kind)
    text = np.full((30, 100), 255, np.uint8)
    text[10:20, 2:30] = 0
    right = np.full((30, 100), 255, np.uint8)
    right[10:20, 60:90] = 0
    for kind, p in [("value", image_from(c, text)), ("value", image_from(c, right)),
                    ("value", image_from(c, np.full((30, 100), 255, np.uint8))), ("missing", c.missing), ("none", None)]:
        c.add("check_textbox_on_leftside", p, kind=kind)
    for kind, p in [("value", pics["square_green"]), ("value", pics["square_red"]), ("missing", c.missing)]:
        for mask in (pics["square_mask"], png(c, (32, 32), (0, 0, 0))):
            c.add("check_green_background", p, mask, kind=kind)
    sizes = [{"height": 48, "width": 64}, {"height": 48}, {"width": 10}, {}, {"width": 64, "ignore_transparent": True}]
    c.cross("check_image_size", results, sizes)
    c.cross("check_image_file_size", results, [{"max_size": 500000}, {"max_size": 10}])
    for kind, p in results:
        c.add("check_file_exists", None if p is None else p.rsplit("/", 1)[0], None if p is None else p.rsplit("/", 1)[1],
              kind=kind)


def _gimp_config(c) -> None:
    gimprc = ("# GIMP gimprc\n\n(undo-levels 100)\n(default-image (width 640))\n(theme \"Dark\")\n"
              "(default-snap-to-grid yes)\n(show-tooltips no)\n(interpolation-type cubic)\n(default-grid (xspacing 10))\n")
    files = [("value", c.text("gimprc", gimprc)), ("value", c.text("gimprc", "")),
             ("blank_line", c.text("gimprc", "(undo-levels 5)\n   \n(theme \"Light\")\n")),
             ("missing", c.missing), ("none", None)]
    rules = [{"key": "undo-levels", "value": "100"}, {"key": "undo-levels", "value": "5"},
             {"key": "theme", "value": "\"Dark\""}, {"key": ["default-image", "(width"], "value": "640))"},
             {"key": ["default-grid", "(xspacing"], "value": "10))"}, {"key": ["a", "b", "c"], "value": "x"},
             *c.task_rules("check_config_status")]
    c.cross("check_config_status", files, rules)


VLCRC = ("[qt] # Qt interface\n#qt-bgcone=1\nqt-bgcone=0\nqt-max-volume=200\n#qt-minimal-view=0\n"
         "qt-slider-colours=0;0;0;20;20;20;30;30;30;10;10;10\n[core]\n#input-record-path=\n"
         "input-record-path=/home/user/Desktop\nglobal-key-play-pause=Ctrl+p\none-instance-when-started-from-file=0\n")


def _vlc(c) -> None:
    files = [("value", c.text("vlcrc", VLCRC)), ("value", c.text("vlcrc", "")),
             ("value", c.text("vlcrc", "input-record-path = /tmp = x\nglobal-key-play-pause=\n")),
             ("corrupt", c.bytes("vlcrc", b"\xff\xfe")), ("missing", c.missing), ("none", None)]
    c.cross("is_vlc_recordings_folder", files, [{"recording_file_path": "/home/user/Desktop"}, {"recording_file_path": "x"},
                                               *c.task_rules("is_vlc_recordings_folder")])
    c.cross("check_qt_bgcone", files, [{"expected_qt_bgcone": 0}, {"expected_qt_bgcone": "1"}])
    c.cross("check_qt_max_volume", files, [{"expected_qt_max_volume": 200}, {"expected_qt_max_volume": "125"}])
    c.cross("check_qt_minimal_view", files, [{"expected_qt_minimal_view": 1}, {"expected_qt_minimal_view": "0"}])
    c.cross("check_qt_slider_colours", files, [{"type": "match", "expected_qt_slider_colours":
                                                "0;0;0;20;20;20;30;30;30;10;10;10"}, {"type": "blackish"}])
    c.cross("check_global_key_play_pause", files, [{"expected_global_key_play_pause": 1},
                                                   {"expected_global_key_play_pause": "0"}])
    c.cross("check_one_instance_when_started_from_file", files, [
        {"expected_one_instance_when_started_from_file": 0}, {"expected_one_instance_when_started_from_file": "1"}])
    status = ('<?xml version="1.0" encoding="utf-8"?><root><state>{state}</state><information>'
              '<category name="meta"><info name="filename">{name}</info><info name="url">{url}</info></category>'
              '</information></root>')
    statuses = [("value", c.text("status.xml", status.format(state=s, name=n, url=u)))
                for s, n, u in (("playing", "/home/user/Desktop/Rick.mp4", "https://x.test/a.m3u8"),
                                ("paused", "Rick.mp4", ""), ("playing", "Rick.mp4.bak", "a.m3u8"))]
    statuses += [("corrupt", c.text("status.xml", "<root>")), ("missing", c.missing), ("none", None)]
    c.cross("is_vlc_playing", statuses, [{"type": "file_name", "file_name": "Rick.mp4"},
                                         {"type": "url", "url": "https://x.test/a.m3u8"}, {"type": "other"}])
    screen = {"width": 1920, "height": 1080}
    for window in (screen, {"width": 800, "height": 600}, None):
        for scr in (screen, None):
            c.add("is_vlc_fullscreen", window, scr)


def _pdf_pages(c) -> None:
    files = [("value", pdf(c, ["a"] * n)) for n in (1, 2, 5)] + [("corrupt", c.text("x.pdf", "nope")),
                                                                   ("missing", c.missing), ("none", None)]
    c.cross("check_pdf_pages", files, [{"relation": "eq", "ref_value": 2}, {"relation": "ge", "ref_value": 2},
                                       {"relation": "lt", "ref_value": 5}, *c.task_rules("check_pdf_pages")])


def _epub_file(c, title: str, body: str, identifier: str = "id-1") -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("toc.ncx", f"<ncx>\n<navPoint id='1'>{title}</navPoint>\n<docTitle>{title}</docTitle>\n</ncx>\n")
        z.writestr("content.opf", f"<package>\n<dc:identifier>{identifier}</dc:identifier>\n<dc:title>{title}</dc:title>\n</package>\n")
        z.writestr("chapter1.html", f"<html><body><h1>{title}</h1>\n<p>{body}</p></body></html>")
    return c.bytes("book.epub", buf.getvalue())


def _epub(c) -> None:
    gold = _epub_file(c, "Title", "Body text")
    results = [("value", _epub_file(c, "Title", "Body text", "other-id")), ("value", _epub_file(c, "Title", "Other")),
               ("value", _epub_file(c, "T2", "Body text")), ("corrupt", c.text("book.epub", "not a zip")),
               ("none", None)]
    c.cross("compare_epub", results, [gold])


def _mp3(c) -> None:
    from mutagen.easyid3 import EasyID3
    from mutagen.id3 import ID3

    def tagged(**tags) -> str:
        path = c.bytes("song.mp3", b"\x00" * 64)
        ID3().save(path)
        audio = EasyID3(path)
        for k, v in tags.items():
            audio[k] = v
        audio.save()
        return path

    files = [("value", tagged(title="Hello", artist=["A", "B"])), ("value", tagged(title="hello world")),
             ("value", tagged()), ("corrupt", c.bytes("song.mp3", b"not id3")), ("missing", c.missing), ("none", None)]
    metas = [{"title": {"method": "eq", "ref": "Hello"}}, {"artist": {"method": "eq", "ref": "A,B"}},
             {"title": {"method": "re.I", "ref": "^hello"}}, {"album": {"method": "eq", "ref": ""}}, {},
             *c.task_rules("check_mp3_meta")]
    c.cross("check_mp3_meta", files, metas)
