"""Numbers with their units in the prose of one language, and matching them across languages.

"1.234,5 ms" in German and "1,234.5 ms" in English read as the same value with
the same canonical unit; a translation passes when it has every number of the
source with its unit, counted (see match_numbers).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from languages import THIN_SPACES, Lang

# A number starts at a digit not glued to a word, dot or comma before it ("x86", "1.5" inside
# "1.5.3" are not numbers of their own); it may hold separators between digit groups. In the
# translation "v3" also counts as a 3 ("version 3 of the API" may become "API v3").
_NUM_START = r"(?<![A-Za-z0-9_.,])"
_EN_NUM_START = r"(?<![A-UW-Za-uw-z0-9_.,])"


@dataclass(frozen=True)
class Num:
    """A number found in text: its value and canonical unit, or a literal (a version, an IP)."""

    value: Decimal | None
    unit: str | None
    literal: str
    shown: str              # as written, for messages
    offset: int = 0         # where in the text it starts

    def describe(self) -> str:
        if self.value is None:
            return self.literal
        text = format(self.value, "f")
        return f"{text} {self.unit}" if self.unit else text


def _number_pattern(lang: Lang) -> re.Pattern[str]:
    spaces = re.escape(lang.group_spaces)
    start = _EN_NUM_START if lang.name == "English" else _NUM_START
    return re.compile(start + rf"\d+(?:(?:[.,]|[{spaces}](?=\d{{3}}(?!\d)))\d+)*")


def _unit_pattern(lang: Lang) -> re.Pattern[str]:
    spelled = sorted(lang.units, key=len, reverse=True)
    alts = "|".join(re.escape(u).replace(r"\ ", r"\s+") for u in spelled)
    return re.compile(rf"[ \n{THIN_SPACES}-]?({alts})(?![A-Za-zÀ-ÿ])", re.IGNORECASE)


def parse_value(run: str, lang: Lang) -> Decimal | None:
    """A digit run as a value by the language's conventions; None when it is no plain number."""
    decimal = lang.decimal
    group = "." if decimal == "," else ","
    text = run
    for sp in lang.group_spaces:
        text = text.replace(sp, group)
    if text.count(decimal) > 1:
        return None
    whole, _, frac = text.partition(decimal)
    groups = whole.split(group)
    if len(groups) > 1 and (not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:])):
        return None
    try:
        return Decimal("".join(groups) + ("." + frac if frac else "")).normalize()
    except InvalidOperation:
        return None


NUMBER_WORDS = {w: Decimal(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
NUMBER_WORDS |= {"a": Decimal(1), "an": Decimal(1)}     # only before a unit: "an hour", "a day"
_NUMBER_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)


class NumberReader:
    """Finds numbers and their units in text written in one language; in English also the
    number words up to twelve, which style guides ask for ("two replicas", "one hour"), and
    "a"/"an" before a unit ("an hour")."""

    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self.number = _number_pattern(lang)
        self.unit = _unit_pattern(lang)

    def read(self, text: str) -> list[Num]:
        found: list[Num] = []
        for m in self.number.finditer(text):
            value = parse_value(m.group(0), self.lang)
            if value is None:
                found.append(Num(None, None, m.group(0), m.group(0), m.start()))
            else:
                found.append(self._with_unit(text, m, value))
        if self.lang.name == "English":
            for m in _NUMBER_WORD.finditer(text):
                num = self._with_unit(text, m, NUMBER_WORDS[m.group(0).lower()])
                if num.unit is not None or m.group(0).lower() not in ("a", "an"):
                    found.append(num)
        return found

    def _with_unit(self, text: str, m: re.Match[str], value: Decimal) -> Num:
        u = self.unit.match(text, m.end())
        unit = self.lang.units[re.sub(r"\s+", " ", u.group(1).lower())] if u else None
        return Num(value, unit, m.group(0), text[m.start():u.end()] if u else m.group(0), m.start())


def match_numbers(want: list[Num], have: list[Num], have_text: str) -> list[Num]:
    """The numbers of ``want`` that ``have`` lacks, counted: a number with a unit needs the same
    value and unit, one without a unit any occurrence of the value, a literal its exact text."""
    pool = Counter((n.value, n.unit) for n in have if n.value is not None)
    values = Counter(n.value for n in have if n.value is not None)
    missing: list[Num] = []
    for n in sorted(want, key=lambda n: n.unit is None):   # numbers with units pick first
        if n.value is None:
            if n.literal not in have_text:
                missing.append(n)
            continue
        if n.unit is not None and pool[(n.value, n.unit)] > 0:
            pool[(n.value, n.unit)] -= 1
            values[n.value] -= 1
        elif n.unit is None and values[n.value] > 0:
            values[n.value] -= 1
            key = next(k for k in pool if k[0] == n.value and pool[k] > 0)
            pool[key] -= 1
        else:
            missing.append(n)
    return missing
