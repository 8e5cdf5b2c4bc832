"""Telling the source language from English, copies from translations, and counting words.

Used by the checks "no untranslated text" and "translation is complete" (verify.py).
"""

from __future__ import annotations

import difflib
import re
from typing import Iterable

from document import Block
from languages import JAPANESE, Lang

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def foreign_markers(text: str, lang: Lang) -> tuple[int, int, list[str]]:
    """(markers, words, examples): how much of ``text`` is visibly in the source language."""
    if lang.japanese:
        chars = JAPANESE.findall(text)
        return len(chars), len(WORD.findall(text)) + len(chars), ["".join(chars)[:20]] if chars else []
    words = WORD.findall(text)
    marked = [w for w in words if w.lower() in lang.stopwords or any(c in lang.letters for c in w)]
    return len(marked), len(words), marked


def untranslated(block: Block, lang: Lang) -> str | None:
    """Why a block of the output reads as the source language, or None."""
    markers, words, examples = foreign_markers(block.text, lang)
    if lang.japanese:
        flagged = markers >= 2
    else:
        flagged = markers >= 1 and (words <= 4 or (markers >= 2 and markers / words >= 0.08))
    if flagged:
        return f"{', '.join(sorted(set(examples), key=examples.index)[:5])}"
    return None


COPIED = 0.85               # word-sequence similarity from which an output block is a copy


def copied_from(block: Block, src_blocks: list[Block]) -> Block | None:
    """A source block this output block is a near-verbatim copy of (long blocks only)."""
    words = [w.lower() for w in WORD.findall(block.text)]
    if len(words) < 6:
        return None
    for sb in src_blocks:
        swords = [w.lower() for w in WORD.findall(sb.text)]
        if len(swords) < 6:
            continue
        sm = difflib.SequenceMatcher(None, words, swords, autojunk=False)
        if sm.real_quick_ratio() >= COPIED and sm.quick_ratio() >= COPIED and sm.ratio() >= COPIED:
            return sb
    return None


# Function words of English: a third of the words of English prose, almost none of the sources'.
ENGLISH = frozenset(
    "the a an and or of to in on at for with by from as is are was were be been being it its this that these "
    "those which who when where if then than not no do does did can will must should may might has have had "
    "your you we our they their there here all each every any so but into over under after before about up out "
    "only also more most such per via while until how what same other".split())
ENGLISH_PARAGRAPH = 0.1     # least share of English function words in a paragraph of 10 words or more
ENGLISH_DOCUMENT = 0.2      # least share over the whole translation


def english_share(text: str) -> tuple[int, int]:
    words = [w.lower() for w in WORD.findall(text)]
    return sum(w in ENGLISH for w in words), len(words)


def size_of(blocks: Iterable[Block], lang: Lang, source: bool) -> float:
    """Words of prose; Japanese source text counts one word per two characters."""
    total = 0.0
    for b in blocks:
        if source and lang.japanese:
            chars = len(JAPANESE.findall(b.text))
            total += chars / 2 + len(WORD.findall(JAPANESE.sub(" ", b.text)))
        else:
            total += len(WORD.findall(b.text))
    return total
