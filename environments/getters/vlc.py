"""VLC getters (OSWorld `getters/vlc.py`): vlcrc, the HTTP interface's status, the default video player."""

from __future__ import annotations

from collections import Counter

from environments.controller import Controller

VLC_HTTP_PORT = 8080  # VLC's default HTTP interface port, which OSWorld's tasks use
VLC_HTTP_PASSWORD = "password"
VIDEO_TYPES = (
    "3gp", "3gpp", "3gpp2", "avi", "divx", "dv", "fli", "flv", "mp2t", "mp4", "mp4v-es", "mpeg", "mpeg-system",
    "msvideo", "ogg", "quicktime", "vnd.divx", "vnd.mpegurl", "vnd.rn-realvideo", "webm", "x-anim", "x-avi",
    "x-flc", "x-fli", "x-flv", "x-m4v", "x-matroska", "x-mpeg", "x-mpeg-system", "x-mpeg2", "x-ms-asf",
    "x-ms-asf-plugin", "x-ms-asx", "x-ms-wm", "x-ms-wmv", "x-ms-wmx", "x-ms-wvx", "x-msvideo", "x-nsv", "x-ogm",
    "x-ogm+ogg", "x-theora", "x-theora+ogg")


def get_vlc_config(c: Controller, cfg: dict) -> str | None:
    """~/.config/vlc/vlcrc copied into the task cache; None when VLC never wrote it."""
    from environments.getters.file import get_vm_file

    return get_vm_file(c, {"path": "~/.config/vlc/vlcrc", "dest": cfg.get("dest", "vlcrc")})


def get_vlc_playing_info(c: Controller, cfg: dict) -> str | None:
    """VLC's HTTP interface status.xml (password "password") saved into the task cache; None if it
    does not answer 200."""
    import httpx

    try:
        r = httpx.get(f"http://127.0.0.1:{VLC_HTTP_PORT}/requests/status.xml", auth=("", VLC_HTTP_PASSWORD),
                      timeout=10)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    local = c.task_cache / cfg["dest"]
    local.write_bytes(r.content)
    return str(local)


def get_default_video_player(c: Controller, cfg: dict) -> str:
    """The most common `xdg-mime query default video/<type>` answer (newline kept), "unknown" if none.

    OSWorld asks every type twice; counting each once gives the same most common answer."""
    answers = [out for t in VIDEO_TYPES if (out := c.run(["xdg-mime", "query", "default", f"video/{t}"],
                                                         timeout=10).output)]
    return Counter(answers).most_common(1)[0][0] if answers else "unknown"


GETTERS = {"vlc_config": get_vlc_config, "vlc_playing_info": get_vlc_playing_info,
           "default_video_player": get_default_video_player}
