"""OSWorld's own evaluator code in a virtual environment of its own, for the differential test.

OSWorld publishes its harness on PyPI as `desktop-env`; its metric modules import heavy libraries
(torch through easyocr, librosa, opencv) that none of the shared metrics need. The package is
installed with `--no-deps`, plus only the libraries its metric modules import, pinned the way
`desktop-env` itself pins them (numpy<2, pandas 2.2, Pillow 11), so scores come from OSWorld's
code running on OSWorld's library versions. What would need torch, audio or video is stubbed
(`STUBBED`): importing works, calling raises, so a metric that used one could never agree by accident.

The venv lives under a cache folder outside the repository ($QVL_OSWORLD_VENV, default
~/.cache/qvl-agent/osworld-venv) and is built once; a changed `REQUIREMENTS` list rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

DESKTOP_ENV = "desktop-env==1.0.2"  # the newest release on PyPI (2025); its evaluators are OSWorld-Verified's
# What desktop_env/evaluators/metrics/*.py and getters/misc.py import, with desktop-env's own pins.
REQUIREMENTS = [
    "numpy>=1.26,<2", "pandas>=2.2,<2.3", "Pillow~=11.0.0", "openpyxl", "lxml", "cssselect", "xmltodict",
    "formulas", "rapidfuzz", "python-docx", "python-pptx", "pypdf", "PyPDF2", "pdfplumber", "pymupdf>=1.24,<2",
    "scikit-image", "scipy", "tldextract", "PyYAML", "beautifulsoup4", "odfpy", "mutagen", "ImageHash",
    "pytz", "requests", "chardet",
]
# Imported at module level by metrics that no shared case calls (OCR, audio, video, borb's PDF model).
STUBBED = ["easyocr", "librosa", "acoustid", "fastdtw", "cv2", "borb", "borb.pdf"]
BUILD_TIMEOUT_S = 1800


def venv_dir() -> Path:
    return Path(os.environ.get("QVL_OSWORLD_VENV", Path.home() / ".cache" / "qvl-agent" / "osworld-venv"))


def _spec_hash() -> str:
    return hashlib.sha256("\n".join([DESKTOP_ENV, *REQUIREMENTS, *STUBBED]).encode()).hexdigest()[:16]


def venv_python() -> Path:
    """The venv's python, building the venv first when it is missing or out of date."""
    root = venv_dir()
    python = root / "bin" / "python"
    stamp = root / "qvl-spec.txt"
    if python.is_file() and stamp.is_file() and stamp.read_text().strip() == _spec_hash():
        return python
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-deps", DESKTOP_ENV], check=True, timeout=BUILD_TIMEOUT_S)
    subprocess.run([*pip, *REQUIREMENTS], check=True, timeout=BUILD_TIMEOUT_S)
    _write_stubs(root / "qvl-stubs")
    stamp.write_text(_spec_hash() + "\n")
    return python


def _write_stubs(folder: Path) -> None:
    for name in STUBBED:
        path = folder.joinpath(*name.split(".")) / "__init__.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "def __getattr__(name):\n"
            "    if name.startswith('__'):\n"
            "        raise AttributeError(name)\n"
            "    def unavailable(*args, **kwargs):\n"
            f"        raise RuntimeError('{name}.' + name + ' is stubbed in the differential venv')\n"
            "    return unavailable\n")


def stubs_dir() -> Path:
    return venv_dir() / "qvl-stubs"


if __name__ == "__main__":
    print(venv_python())
