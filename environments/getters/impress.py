"""Impress getters (OSWorld `getters/impress.py`): media a slide uses, extracted from the .pptx."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
import zipfile

from environments.controller import Controller
from environments.getters.file import get_vm_file

_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"


def _slide_media(c: Controller, cfg: dict, wanted) -> str | None:
    """The first relationship of slide `slide_index` that `wanted(rel)` picks: an embedded target
    extracted beside the local copy, a `file://` target fetched from the task machine."""
    index, dest = int(cfg["slide_index"]), cfg["dest"]
    local_pptx = get_vm_file(c, {"path": cfg["ppt_file_path"], "dest": os.path.basename(cfg["ppt_file_path"])})
    if local_pptx is None:
        raise FileNotFoundError(cfg["ppt_file_path"])
    with zipfile.ZipFile(local_pptx, "r") as z:
        found = wanted(z, index)
        if found is None:
            return None
        rels = f"ppt/slides/_rels/slide{index + 1}.xml.rels"
        if rels not in z.namelist():
            return None
        with z.open(rels) as f:
            for rel in ET.parse(f).getroot().findall(_RELS):
                if not found(rel):
                    continue
                target = rel.attrib["Target"]
                if target.startswith(".."):
                    member = os.path.normpath(os.path.join("ppt/slides", target)).replace("\\", "/")
                    folder = os.path.dirname(local_pptx)
                    z.extract(member, folder)
                    return os.path.join(folder, member)
                if not target.startswith("file://"):
                    raise ValueError(f"unexpected media target {target!r}")
                return get_vm_file(c, {"path": target[7:], "dest": dest})
    return None


def get_audio_in_slide(c: Controller, cfg: dict) -> str | None:
    def pick(z, index):
        return lambda rel: "audio" in rel.attrib["Type"]

    return _slide_media(c, cfg, pick)


def get_background_image_in_slide(c: Controller, cfg: dict) -> str | None:
    """The image of the slide's background (`<p:bgPr>` … `<a:blip r:embed>`); None without one."""
    def pick(z, index):
        slide = f"ppt/slides/slide{index + 1}.xml"
        if slide not in z.namelist():
            return None
        with z.open(slide) as f:
            root = ET.parse(f).getroot()
        image_id = None
        for bg in root.iter("{http://schemas.openxmlformats.org/presentationml/2006/main}bgPr"):
            for blip in bg.iter("{http://schemas.openxmlformats.org/drawingml/2006/main}blip"):
                image_id = blip.attrib.get("{http://schemas.openxmlformats.org/officeDocument/2006/relationships}embed")
                break
            if image_id is not None:
                break
        if image_id is None:
            return None
        return lambda rel: "image" in rel.attrib["Type"] and rel.attrib["Id"] == image_id

    return _slide_media(c, cfg, pick)


GETTERS = {"audio_in_slide": get_audio_in_slide, "background_image_in_slide": get_background_image_in_slide}
