"""The source languages of the `translate` task: number conventions, units, stopwords, script.

Shared by the number reader (numbers_units.py), the language detection
(language_detection.py) and the checks (verify.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Units: how a unit is spelled after a number (lower case) -> its canonical symbol. Only units that
# a translator keeps or spells out one-to-one are here; counters ("3 replicas", "2 台") are plain
# numbers. English spellings are valid in every language (sources borrow them: "12 ms", "2 GB").
EN_UNITS: dict[str, str] = {
    "ns": "ns", "nanosecond": "ns", "nanoseconds": "ns",
    "µs": "µs", "μs": "µs", "us": "µs", "microsecond": "µs", "microseconds": "µs",
    "ms": "ms", "msec": "ms", "millisecond": "ms", "milliseconds": "ms",
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "min": "min", "mins": "min", "minute": "min", "minutes": "min",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "day": "d", "days": "d", "week": "wk", "weeks": "wk",
    "byte": "B", "bytes": "B",
    "kb": "kB", "kilobyte": "kB", "kilobytes": "kB", "kib": "KiB",
    "mb": "MB", "megabyte": "MB", "megabytes": "MB", "mib": "MiB",
    "gb": "GB", "gigabyte": "GB", "gigabytes": "GB", "gib": "GiB",
    "tb": "TB", "terabyte": "TB", "terabytes": "TB", "tib": "TiB",
    "%": "%", "percent": "%", "per cent": "%",
    "hz": "Hz", "khz": "kHz", "mhz": "MHz", "ghz": "GHz", "°c": "°C",
    "mb/s": "MB/s", "gb/s": "GB/s", "mbit/s": "Mbit/s", "gbit/s": "Gbit/s", "mbps": "Mbit/s", "gbps": "Gbit/s",
}
HIRAGANA_KATAKANA_KANJI = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
JAPANESE = re.compile(f"[{HIRAGANA_KATAKANA_KANJI}\u3000-\u303f\uff01-\uff60]")


@dataclass(frozen=True)
class Lang:
    """What the verifier needs to know about a source language."""

    name: str
    decimal: str                        # decimal separator; the other of ",." groups thousands
    group_spaces: str                   # spaces that may also group thousands ("10 000")
    units: dict[str, str]               # spelled (lower case) -> canonical, English ones added
    stopwords: frozenset[str] = frozenset()  # frequent words that are never English words
    letters: str = ""                   # letters English text does not use
    japanese: bool = False              # script detection instead of stopwords
    words_per_unit: float = 1.0         # English words per source word (per 2 characters in Japanese)


def _lang(name: str, decimal: str, group_spaces: str, units: dict[str, str], **kw: Any) -> Lang:
    return Lang(name, decimal, group_spaces, {**EN_UNITS, **units}, **kw)


THIN_SPACES = "\u00a0\u202f\u2009"
LANGS: dict[str, Lang] = {
    "en": _lang("English", ".", THIN_SPACES, {}),
    "de": _lang(
        "German", ",", THIN_SPACES,
        {"sekunde": "s", "sekunden": "s", "minute": "min", "minuten": "min", "stunde": "h", "stunden": "h",
         "tag": "d", "tage": "d", "tagen": "d", "woche": "wk", "wochen": "wk", "millisekunde": "ms",
         "millisekunden": "ms", "prozent": "%"},
        stopwords=frozenset(
            "der des dem den das ein eine einer einem einen eines und oder aber nicht ist sind wird werden "
            "wurde wurden sein kann können muss müssen soll sollte für auf aus bei nach vom zum zur über "
            "unter zwischen durch ohne gegen bis sowie wenn dass weil damit ob als auch noch nur schon dann "
            "sich sie wir ihr ihre ihren ihrem ihres sein seine seinen seinem dieser diese dieses diesen "
            "jeder jede jedes jeden alle allen keine keinen kein mehr sehr immer etwa rund bereits wieder "
            "beim".split()),
        letters="äöüßÄÖÜ", words_per_unit=1.05),
    "fr": _lang(
        "French", ",", THIN_SPACES + " ",
        {"seconde": "s", "secondes": "s", "heure": "h", "heures": "h", "jour": "d", "jours": "d",
         "semaine": "wk", "semaines": "wk", "milliseconde": "ms", "millisecondes": "ms", "pour cent": "%",
         "ko": "kB", "mo": "MB", "go": "GB", "to": "TB", "octet": "B", "octets": "B"},
        stopwords=frozenset(
            "le la les des de et est sont une au ce cet cette ces dans sur avec pas ne que qui quoi où "
            "vous nous ils elle elles leur leurs votre vos notre nos tout tous toute toutes être été avoir "
            "peut doit chaque lorsque quand mais ou puis entre après avant chez selon aussi très moins "
            "fois".split()),
        letters="àâçéèêëîïôûùÿœæÀÂÇÉÈÊËÎÏÔÛÙŸŒÆ", words_per_unit=0.95),
    "es": _lang(
        "Spanish", ",", THIN_SPACES,
        {"segundo": "s", "segundos": "s", "minuto": "min", "minutos": "min", "hora": "h", "horas": "h",
         "día": "d", "días": "d", "semana": "wk", "semanas": "wk", "milisegundo": "ms", "milisegundos": "ms",
         "por ciento": "%"},
        stopwords=frozenset(
            "el la los las una unos unas de que es está están ser por para se sus le les como más pero "
            "este esta estos estas ese esa cuando donde muy hasta desde sobre entre también cada otro otra "
            "todos todas puede pueden debe tiene".split()),
        letters="áéíóúñÁÉÍÓÚÑ¿¡", words_per_unit=0.95),
    "ja": _lang(
        "Japanese", ".", THIN_SPACES,
        {"ミリ秒": "ms", "秒": "s", "秒間": "s", "分": "min", "分間": "min", "時間": "h", "日": "d", "日間": "d",
         "週間": "wk", "パーセント": "%"},
        japanese=True, words_per_unit=0.75),
}
