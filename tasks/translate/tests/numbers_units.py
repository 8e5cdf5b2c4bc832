"""Numbers with their units in the prose of one language, and matching them across languages.

"1.234,5 ms" in German and "1,234.5 ms" in English read as the same value with
the same canonical unit; a translation passes when it has every number of the
source with its unit, counted (see match_numbers).

The source is read by adjacency: a unit right after its number ("300 Sekunden",
"15 分"), as the four source languages write them. English, the translation, is
read by phrase, since English grammar does not always put the unit next to the
number (see NumberReader):

  "60 consecutive seconds"  a number takes the first unit after it in its phrase: up to
                            MODIFIERS other words between, but no number, punctuation or
                            function word ("of", "per", "in", "and", "the", ...)
  "4 to 7 minutes"          a range: a number without a unit takes the unit of the number
                            it is joined to by "to", "and", "or" or a dash
  "an hour", "18 GB a day", "a"/"an", "per", "each", "every" before a unit (modifiers allowed:
  "per day", "every hour"   "a full hour") imply one of it: that may stand for the source's
                            "1 時間", but it is never a number of its own, so a table cell
                            "18 GB a day" holds one number, like "18 GB per day"

No unit is converted ("half an hour" is not 30 minutes, and not one hour either).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
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
    shown: str              # as written, unit and words between included, for messages
    offset: int = 0         # where in the text it starts
    implied: bool = False   # "an hour", "per day": one of the unit, with no number written

    @property
    def end(self) -> int:
        return self.offset + len(self.shown)

    def describe(self) -> str:
        if self.value is None:
            return self.literal
        text = format(self.value, "f")
        text = f"{text} {self.unit}" if self.unit else text
        return f"{text} (implied by {self.shown!r})" if self.implied else text


@dataclass(frozen=True)
class NumberMatch:
    """What one text's numbers lack of another's, and what they have too many."""

    missing: list[Num]      # wanted, not found
    extra: list[Num]        # found, not wanted; implied ones never count


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


# -- English phrasing -----------------------------------------------------------------------------
# Number words, which style guides ask for ("two replicas", "fifteen minutes", "forty-five seconds").
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
NUMBER_WORDS = {w: Decimal(i) for i, w in enumerate(_ONES)} | {w: Decimal(20 + 10 * i) for i, w in enumerate(_TENS)}
_NUMBER_WORD = re.compile(rf"\b(?:({'|'.join(_TENS)})-({'|'.join(_ONES[1:10])})|({'|'.join(NUMBER_WORDS)}))\b",
                          re.IGNORECASE)

# Words before a unit that imply one of it: "an hour", "18 GB a day", "per second", "every day".
_IMPLIES_ONE = re.compile(r"(?<![\w-])(?<!half )(a|an|per|each|every)(?![\w'’-])", re.IGNORECASE)

# Closed-class words: a number's phrase ends at them, so "4,200 requests per second" or "10 revisions
# of each service ... days" keep their number apart from the unit after them.
FUNCTION_WORDS = frozenset("""
    a an the this that these those each every per all any some no both either neither few several many
    much most couple lot number dozen half its their our your his her my which who whom what
    where when while whether if then than as so because since until till unless though although and or
    nor but yet of in on at to for from by with within without into onto over under about around across
    after before during between through throughout via up down off out past above below beyond behind
    near inside outside upon toward towards against along among besides despite except like
    is are was were be been being am has have had do does did can could will would shall should may
    might must not it they we you he she them us him me i there here times once twice thrice ago later
    earlier
""".split())
MODIFIERS = 2               # words allowed between a number and its unit ("60 full consecutive seconds")
_WORD = re.compile(r"\s+([^\W\d_]+(?:['’-][^\W\d_]+)*)")
_RANGE = re.compile(r"\s*(?:-|–|—|to|and|or)\s*", re.IGNORECASE)


class NumberReader:
    """Finds numbers and their units in text written in one language: by adjacency in a source
    language, by phrase in English (see the module docstring)."""

    def __init__(self, lang: Lang) -> None:
        self.lang = lang
        self.english = lang.name == "English"
        self.number = _number_pattern(lang)
        self.unit = _unit_pattern(lang)

    def read(self, text: str) -> list[Num]:
        found: list[Num] = []
        for m in self.number.finditer(text):
            value = parse_value(m.group(0), self.lang)
            if value is None:
                found.append(Num(None, None, m.group(0), m.group(0), m.start()))
            else:
                found.append(self._with_unit(text, m.start(), m.end(), value))
        if not self.english:
            return found
        for m in _NUMBER_WORD.finditer(text):
            tens, ones, word = m.groups()
            value = NUMBER_WORDS[tens.lower()] + NUMBER_WORDS[ones.lower()] if tens else NUMBER_WORDS[word.lower()]
            found.append(self._with_unit(text, m.start(), m.end(), value))
        found = _share_range_units(sorted(found, key=lambda n: n.offset), text)
        for m in _IMPLIES_ONE.finditer(text):
            one = self._with_unit(text, m.start(), m.end(), Decimal(1))
            if one.unit is not None:
                found.append(replace(one, implied=True))
        return found

    def _with_unit(self, text: str, start: int, end: int, value: Decimal) -> Num:
        u = self._unit_after(text, end)
        unit = self.lang.units[re.sub(r"\s+", " ", u.group(1).lower())] if u else None
        return Num(value, unit, text[start:end], text[start:u.end()] if u else text[start:end], start)

    def _unit_after(self, text: str, pos: int) -> re.Match[str] | None:
        """The unit right after ``pos``; in English also across up to MODIFIERS other words."""
        u = self.unit.match(text, pos)
        for _ in range(MODIFIERS if self.english else 0):
            if u is not None:
                break
            w = _WORD.match(text, pos)
            if w is None or w.group(1).lower() in FUNCTION_WORDS or w.group(1).lower() in NUMBER_WORDS:
                return None
            pos = w.end()
            u = self.unit.match(text, pos)
        return u


def _share_range_units(nums: list[Num], text: str) -> list[Num]:
    """"4 to 7 minutes", "between 4 and 7 minutes": the first number takes the second's unit."""
    for k in range(len(nums) - 2, -1, -1):
        a, b = nums[k], nums[k + 1]
        if a.value is not None and a.unit is None and b.unit is not None and _RANGE.fullmatch(text, a.end, b.offset):
            nums[k] = replace(a, unit=b.unit, shown=text[a.offset:b.end])
    return nums


_Key = tuple[Decimal, str | None]            # value and unit


def match_numbers(want: list[Num], have: list[Num], have_text: str) -> NumberMatch:
    """The numbers of ``want`` that ``have`` lacks, counted: a number with a unit needs the same
    value and unit (written, or implied: "an hour"), one without a unit any written occurrence of
    the value, a literal its exact text. Then the written numbers of ``have`` that none of
    ``want`` took."""
    written: Counter[_Key] = Counter((n.value, n.unit) for n in have if n.value is not None and not n.implied)
    implied: Counter[_Key] = Counter((n.value, n.unit) for n in have if n.value is not None and n.implied)
    literals = Counter(n.literal for n in have if n.value is None)
    missing: list[Num] = []
    for n in sorted(want, key=lambda n: n.unit is None):   # numbers with units pick first
        if n.value is None:
            if n.literal not in have_text:
                missing.append(n)
            literals[n.literal] -= 1
            continue
        candidates: list[tuple[Counter[_Key], _Key]]
        if n.unit is not None:
            candidates = [(written, (n.value, n.unit)), (implied, (n.value, n.unit))]
        else:   # the value written without a unit first, then with any unit
            candidates = [(written, k) for k in sorted(written, key=lambda k: k[1] is not None) if k[0] == n.value]
        taken = next(((pool, key) for pool, key in candidates if pool[key] > 0), None)
        if taken is None:
            missing.append(n)
        else:
            taken[0][taken[1]] -= 1
    extra: list[Num] = []
    for n in have:
        if n.value is None and literals[n.literal] > 0:
            literals[n.literal] -= 1
            extra.append(n)
        elif n.value is not None and not n.implied and written[(n.value, n.unit)] > 0:
            written[(n.value, n.unit)] -= 1
            extra.append(n)
    return NumberMatch(missing, extra)
