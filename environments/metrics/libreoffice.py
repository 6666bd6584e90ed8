"""LibreOffice registry metrics (OSWorld `metrics/libreoffice.py`)."""

from __future__ import annotations

import fnmatch


def check_libre_locale(config_file: str | None, rules: dict) -> float:
    """The L10N ooSetupSystemLocale (else ooLocale) matches one of the `locale_set` globs. A file that
    does not parse, or sets neither, scores 0 (OSWorld: raises)."""
    import lxml.etree
    from lxml.cssselect import CSSSelector

    ns = {"oor": "http://openoffice.org/2001/registry"}
    try:
        config = lxml.etree.parse(config_file).getroot()
    except (OSError, TypeError, lxml.etree.XMLSyntaxError):
        return 0.0
    setup = CSSSelector("item[oor|path$=L10N]>prop[oor|name=ooSetupSystemLocale]>value", namespaces=ns)(config)
    locale = CSSSelector("item[oor|path$=L10N]>prop[oor|name=ooLocale]>value", namespaces=ns)(config)
    values = setup or locale
    if not values or values[0].text is None:
        return 0.0
    return float(any(fnmatch.fnmatchcase(values[0].text, pattern) for pattern in rules["locale_set"]))


METRICS = {"check_libre_locale": check_libre_locale}
