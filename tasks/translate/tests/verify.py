"""Hidden verifier of the `translate` task: /workspace/output.md must be a faithful
English Markdown translation of the variant's source document.

The source is the variant's ``source`` param, never /workspace/source.md or any
other file the agent could have changed. Source and translation are both parsed
with markdown-it-py (CommonMark plus GFM tables; the Debian bookworm package)
and compared as token streams, so what is judged is structure and facts, not
wording or Markdown spelling: ``*`` or ``-`` bullets, ATX or setext headings,
backtick or tilde fences, table padding and alignment, reflowed paragraphs all
pass.

Every trial gets the same checks in the same order (scores compare across
trials); when output.md cannot be read, the rest fail as "not checked":

  output.md exists            a regular file (not a link), non-empty, at most MAX_BYTES
  output.md is UTF-8 text     strict UTF-8 (a BOM is tolerated), no NUL bytes
  one H1 title                exactly one level-1 heading, and it is the first heading
  section headings match      the levels of all other headings, in order, equal the source's
  code blocks unchanged       same number of code blocks; each one's info string and content equal
  tables match                same tables, each with the same columns and rows; per cell the
                              same numbers (with units) and the same inline code
  numbers and units preserved every number of the prose (outside tables and code) with its unit
                              is in the translation's prose, as many times; decimal commas and
                              thousands separators read by each language's conventions; English
                              units where English grammar puts them ("60 consecutive seconds",
                              "4 to 7 minutes", "an hour"; rates such as "18 GB a day" or "per
                              day" add no number): see numbers_units.py
  identifiers preserved       every inline code span, link target, flag, path, ENV_VAR and
                              func() of the source is there, and no inline code is an altered
                              near-copy of one
  glossary terms used         per glossary entry used in the source: the English term appears,
                              the source term does not (outside code)
  lists preserved             the same number of bulleted and of numbered list items
  no untranslated text        no block (heading, paragraph, item, table row) reads as the source
                              language: Japanese script, source-language stopwords and letters,
                              or a near-verbatim copy of a source block; and the text reads as
                              English (English function words, per paragraph and overall)
  translation is complete     per section, the translation's word count is in proportion to
                              the source's (a dropped paragraph or a padded section fails)

The checks and their order are here; the pieces they use are its siblings:
document.py (Markdown parsing), numbers_units.py (numbers and units),
languages.py (the source languages), language_detection.py (source language
vs English, copies, word counts) and output_file.py (reading output.md).

The file comes from the agent, so it is read with O_NOFOLLOW | O_NONBLOCK,
capped in size, and everything quoted in a message is shortened and escaped.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter

# markdown-it-py (through document) loads before agenteval_verifier, which opens the verdict file on import.
from document import Block, Doc, Inline, bare_identifiers, parse
from language_detection import ENGLISH_DOCUMENT, ENGLISH_PARAGRAPH, copied_from, english_share, size_of, untranslated
from languages import LANGS, Lang
from numbers_units import NumberReader, match_numbers
from output_file import EXISTS, UTF8, read_output

from agenteval_verifier import Verdict

SHOWN = 80                  # longest excerpt quoted in a message
MAX_LISTED = 6              # problems listed per check; the rest are counted

CHECKS = [EXISTS, UTF8, "one H1 title", "section headings match", "code blocks unchanged", "tables match",
          "numbers and units preserved", "identifiers preserved", "glossary terms used", "lists preserved",
          "no untranslated text", "translation is complete"]


# -- messages -------------------------------------------------------------------------------------
def show(text: str, limit: int = SHOWN) -> str:
    """Quoted, one line, escaped, shortened."""
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def listing(problems: list[str]) -> str:
    more = len(problems) - MAX_LISTED
    return "; ".join(problems[:MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


# -- the checks -----------------------------------------------------------------------------------
def check_title(v: Verdict, out: Doc) -> None:
    h1 = [h for lvl, h in out.headings if lvl == 1]
    if len(h1) != 1:
        where = ", ".join(f"line {h.line} {show(h.raw, 40)}" for h in h1)
        v.check(CHECKS[2], False, f"expected exactly 1 level-1 heading, found {len(h1)}" + (f": {where}" if where else ""))
    elif out.headings[0][0] != 1:
        level, first = out.headings[0]
        v.check(CHECKS[2], False, f"expected the level-1 title first, found a level-{level} heading "
                f"{show(first.raw, 40)} (line {first.line}) before it")
    else:
        v.check(CHECKS[2], True, f"title {show(h1[0].raw)}")


def check_headings(v: Verdict, src: Doc, out: Doc) -> None:
    want = [lvl for lvl, _ in src.headings if lvl != 1]
    have = [(lvl, h) for lvl, h in out.headings if lvl != 1]
    levels = [lvl for lvl, _ in have]
    if levels == want:
        v.check(CHECKS[3], True, f"{plural(len(want), 'section heading')}, levels {' '.join(map(str, want))}")
        return
    found = ", ".join(f"H{lvl} {show(h.raw, 30)} (line {h.line})" for lvl, h in have[:12])
    v.check(CHECKS[3], False, f"expected {plural(len(want), 'section heading')} with levels {' '.join(map(str, want))} "
            f"(as in the source), found {len(levels)}" + (f" with levels {' '.join(map(str, levels))}: {found}"
                                                           if levels else " (headings written as plain text or "
                                                           "bold do not count: use # or setext headings)"))


def first_difference(want: str, have: str) -> str:
    """Where two code blocks part: the first differing line, expected and found."""
    a, b = want.split("\n"), have.split("\n")
    k = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
    exp = show(a[k], 120) if k < len(a) else "the end of the block"
    got = show(b[k], 120) if k < len(b) else "the end of the block"
    return f"differs at its line {k + 1}: expected {exp}, found {got}"


def check_code_blocks(v: Verdict, src: Doc, out: Doc) -> None:
    problems: list[str] = []
    if len(out.code_blocks) != len(src.code_blocks):
        problems.append(f"expected {plural(len(src.code_blocks), 'code block')}, found {len(out.code_blocks)}")
    for n, ((info, content, sline), (oinfo, ocontent, oline)) in enumerate(zip(src.code_blocks, out.code_blocks), 1):
        if info != oinfo:
            problems.append(f"code block {n} (line {oline}): expected info string {show(info)}, found {show(oinfo)}")
        if content != ocontent:
            problems.append(f"code block {n} (line {oline}, source line {sline}) {first_difference(content, ocontent)}")
    v.check(CHECKS[4], not problems, listing(problems) if problems
            else f"{plural(len(src.code_blocks), 'code block')} identical to the source")


def cell_problems(sc: Inline, oc: Inline, src_reader: NumberReader, out_reader: NumberReader) -> list[str]:
    """What differs in one table cell: its numbers (counted; "a day" in "18 GB a day" is none) and
    its inline code."""
    problems: list[str] = []
    want, have = src_reader.read(sc.text), out_reader.read(oc.text)
    match = match_numbers(want, have, oc.text)
    if match.missing or match.extra:
        problems.append(f"expected the numbers {', '.join(n.describe() for n in want) or '(none)'}, found "
                        f"{', '.join(n.describe() for n in have) or '(none)'} in {show(oc.text, 40)}")
    if Counter(sc.codes) != Counter(oc.codes):
        problems.append(f"expected inline code {sc.codes}, found {oc.codes}")
    return problems


def check_tables(v: Verdict, src: Doc, out: Doc, src_reader: NumberReader, out_reader: NumberReader) -> None:
    problems: list[str] = []
    if len(out.tables) != len(src.tables):
        problems.append(f"expected {plural(len(src.tables), 'table')}, found {len(out.tables)} "
                        "(write Markdown tables: a header row, a |---| delimiter row, then the rows)")
    for n, (st, ot) in enumerate(zip(src.tables, out.tables), 1):
        where = f"table {n} (line {ot.line})"
        if len(ot.header) != len(st.header):
            problems.append(f"{where}: expected {len(st.header)} columns, found {len(ot.header)}")
            continue
        if len(ot.rows) != len(st.rows):
            def numbers(row: list[Inline], reader: NumberReader) -> Counter[str]:
                return Counter(n.describe() for cell in row for n in reader.read(cell.text) if not n.implied)

            found = [numbers(r, out_reader) for r in ot.rows]
            lost = [" | ".join(c.text.strip() for c in r) for r in st.rows if numbers(r, src_reader) not in found]
            problems.append(f"{where}: expected {plural(len(st.rows), 'row')} below the header, found {len(ot.rows)}"
                            + (f"; no row has the numbers of source row {show(lost[0], 50)}" if lost else ""))
            continue
        for r, (srow, orow) in enumerate([(st.header, ot.header)] + list(zip(st.rows, ot.rows))):
            for c, (sc, oc) in enumerate(zip(srow, orow), 1):
                label = "header" if r == 0 else f"row {r}"
                problems += [f"{where} {label} column {c}: {p}" for p in cell_problems(sc, oc, src_reader, out_reader)]
    ok = not problems
    v.check(CHECKS[5], ok, listing(problems) if problems else
            f"{plural(len(src.tables), 'table')} with the same rows, columns, numbers and inline code")


def check_numbers(v: Verdict, src: Doc, out: Doc, src_reader: NumberReader, out_reader: NumberReader) -> None:
    want = [(n, p.line + p.text[:n.offset].count("\n")) for p in src.prose for n in src_reader.read(p.text)]
    have_text = "\n".join(p.text for p in out.prose)
    have = [n for p in out.prose for n in out_reader.read(p.text)]
    missing = match_numbers([n for n, _ in want], have, have_text).missing
    problems = []
    for n in missing:
        line = next(ln for m, ln in want if m is n)
        same_value = sorted({h.shown for h in have if h.value == n.value and h.value is not None})
        hint = f" (found only {', '.join(show(s) for s in same_value[:3])})" if same_value else ""
        problems.append(f"{n.describe()} (source line {line}, {show(n.shown)}) is missing{hint}")
    v.check(CHECKS[6], not missing, listing(problems) if problems
            else f"all {plural(len(want), 'number')} of the prose found with their units")


def check_identifiers(v: Verdict, src: Doc, out: Doc) -> None:
    src_inlines = src.prose + [c for t in src.tables for r in [t.header, *t.rows] for c in r]
    out_inlines = out.prose + [c for t in out.tables for r in [t.header, *t.rows] for c in r]
    out_codes = {c for i in out_inlines for c in i.codes}
    out_links = {link for i in out_inlines for link in i.links}
    out_text = "\n".join(i.text for i in out_inlines) + "\n" + "\n".join(out_codes | out_links)
    problems: list[str] = []
    seen: set[str] = set()
    src_codes = {c for i in src_inlines for c in i.codes}
    for i in src_inlines:
        for code in i.codes:
            if code not in seen and code not in out_codes:
                problems.append(f"inline code `{show(code)[1:-1]}` (source line {i.line}) is missing")
            seen.add(code)
        for link in i.links:
            if link not in seen and link not in out_links:
                problems.append(f"link target {show(link)} (source line {i.line}) is missing")
            seen.add(link)
        for ident in bare_identifiers(i.text):
            if ident not in seen and ident not in out_text:
                problems.append(f"{show(ident)} (source line {i.line}) is missing")
            seen.add(ident)
    for i in out_inlines:
        for code in i.codes:
            if code in src_codes:
                continue
            close = difflib.get_close_matches(code, list(src_codes), n=1, cutoff=0.75)
            if close:
                problems.append(f"inline code `{show(code)[1:-1]}` (line {i.line}) is an altered copy of "
                                f"`{show(close[0])[1:-1]}`")
    v.check(CHECKS[7], not problems, listing(problems) if problems
            else f"all {plural(len(seen), 'identifier')} of the source kept")


def glossary_pattern(term: str) -> re.Pattern[str]:
    """The English term, any word of it in the plural, words joined by spaces or hyphens."""
    def plural(word: str) -> str:
        if word.endswith("y") and len(word) > 2:
            return re.escape(word[:-1]) + "(?:y|ies)"
        return re.escape(word) + "(?:s|es)?"

    words = r"[\s-]+".join(plural(w) for w in term.split())
    return re.compile(rf"(?<![^\W\d_]){words}(?![^\W\d_])", re.IGNORECASE)


def check_glossary(v: Verdict, src: Doc, out: Doc, glossary: dict[str, str]) -> None:
    src_text = "\n".join(b.text for b in src.blocks)
    out_text = "\n".join(b.text for b in out.blocks)
    problems: list[str] = []
    used = 0
    for term, english in glossary.items():
        if term.casefold() not in src_text.casefold():
            continue
        used += 1
        if not glossary_pattern(english).search(out_text):
            problems.append(f"{show(term)} must be translated as {show(english)}, which does not appear")
        if term.casefold() in out_text.casefold():
            line = next((b.line for b in out.blocks if term.casefold() in b.text.casefold()), 0)
            problems.append(f"the source term {show(term)} is still there (line {line}); write {show(english)}")
    v.check(CHECKS[8], not problems, listing(problems) if problems
            else f"{plural(used, 'glossary term')} rendered in English")


def check_lists(v: Verdict, src: Doc, out: Doc) -> None:
    problems = [f"expected {plural(src.items[k], k + ' item')}, found {out.items[k]}"
                for k in ("bulleted", "numbered") if src.items[k] != out.items[k]]
    v.check(CHECKS[9], not problems, listing(problems) if problems else
            f"{plural(src.items['bulleted'], 'bulleted item')} and {plural(src.items['numbered'], 'numbered item')}")


def check_untranslated(v: Verdict, src: Doc, out: Doc, lang: Lang) -> None:
    problems: list[str] = []
    total_en = total = 0
    for b in out.blocks:
        en, n = english_share(b.text)
        total_en, total = total_en + en, total + n
        why = untranslated(b, lang)
        copy = None if why else copied_from(b, src.blocks)
        if why:
            problems.append(f"line {b.line} ({b.kind}) {show(b.text, 50)} reads as {lang.name} ({why})")
        elif copy:
            problems.append(f"line {b.line} ({b.kind}) {show(b.text, 50)} is copied from source line {copy.line}")
        elif b.kind == "paragraph" and n >= 10 and en < ENGLISH_PARAGRAPH * n:
            problems.append(f"line {b.line} ({b.kind}) {show(b.text, 50)} does not read as English "
                            f"(only {en} of its {n} words are common English words)")
    if total and total_en < ENGLISH_DOCUMENT * total:
        problems.insert(0, f"the text does not read as English: only {total_en} of {total} words are common "
                        "English words")
    v.check(CHECKS[10], not problems, listing(problems) if problems
            else f"no {lang.name} text found in {plural(len(out.blocks), 'block')}; "
                 f"{total_en / max(total, 1):.0%} English function words")


MIN_SECTION = 12            # source words below which a section is judged only as part of the whole
RATIO = (0.6, 1.8)          # accepted translation/source size, relative to the language's usual ratio


def check_complete(v: Verdict, src: Doc, out: Doc, lang: Lang) -> None:
    def ratio(s: list[Block], o: list[Block]) -> tuple[float, float, float]:
        ssize, osize = size_of(s, lang, True), size_of(o, lang, False)
        return ssize, osize, osize / (ssize * lang.words_per_unit) if ssize else 1.0

    problems: list[str] = []
    ssize, osize, r = ratio(src.blocks, out.blocks)
    if not RATIO[0] <= r <= RATIO[1]:
        problems.append(f"the translation has {osize:.0f} words where about {ssize * lang.words_per_unit:.0f} "
                        f"are expected ({r:.2f} times that)")
    if len(src.headings) == len(out.headings):
        titles = {i + 1: h.raw for i, (_, h) in enumerate(out.headings)}
        for sec in range(len(src.headings) + 1):
            s = [b for b in src.blocks if b.section == sec]
            o = [b for b in out.blocks if b.section == sec]
            ssec, osec, rsec = ratio(s, o)
            if ssec >= MIN_SECTION and not RATIO[0] <= rsec <= RATIO[1]:
                name = f"section {show(titles.get(sec, ''), 40)}" if sec else "the text before the first heading"
                problems.append(f"{name} has {osec:.0f} words where about {ssec * lang.words_per_unit:.0f} are "
                                f"expected ({rsec:.2f} times that): is something left out or added?")
    v.check(CHECKS[11], not problems, listing(problems) if problems
            else f"{osize:.0f} words for {ssize:.0f} in the source ({r:.2f} of the usual ratio)")


def main() -> None:
    with Verdict() as v:
        params = v.variant
        source, lang_code, glossary = params.get("source"), params.get("lang"), params.get("glossary", {})
        if not isinstance(source, str) or lang_code not in LANGS or not isinstance(glossary, dict):
            raise ValueError("the variant's params need 'source' (text), 'lang' (de, fr, es, ja) and 'glossary'")
        text, why = read_output(v)
        if text is None:
            done = {c["name"] for c in v.checks}
            for name in CHECKS:
                if name not in done:
                    v.check(name, False, f"not checked: {why}")
            return
        lang = LANGS[lang_code]
        src, out = parse(source), parse(text)
        src_reader, out_reader = NumberReader(lang), NumberReader(LANGS["en"])
        check_title(v, out)
        check_headings(v, src, out)
        check_code_blocks(v, src, out)
        check_tables(v, src, out, src_reader, out_reader)
        check_numbers(v, src, out, src_reader, out_reader)
        check_identifiers(v, src, out)
        check_glossary(v, src, out, glossary)
        check_lists(v, src, out)
        check_untranslated(v, src, out, lang)
        check_complete(v, src, out, lang)


if __name__ == "__main__":
    main()
