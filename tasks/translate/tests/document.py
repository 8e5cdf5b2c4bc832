"""Markdown parsing for the `translate` verifier: what the checks compare, from markdown-it tokens.

Source and translation are both parsed with markdown-it-py (CommonMark plus GFM
tables) into a Doc: headings, code blocks, tables, prose, judged blocks and list
items; identifiers (flags, ENV_VARs, paths, URLs, func()) are found in the text
and kept out of the judged blocks.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token


# -- identifiers ----------------------------------------------------------------------------------
BARE_IDENTIFIERS = [
    re.compile(r"(?<![\w-])--[A-Za-z][\w-]*"),                             # --long-flag
    re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"),                       # ENV_VAR
    re.compile(r"\$\{?[A-Za-z_]\w*\}?"),                                    # $VAR
    re.compile(r"\b[A-Za-z_][\w.]*\(\)"),                                   # func()
    re.compile(r"https?://[^\s<>()\[\]]+[^\s<>()\[\].,;:!?'\"]"),           # URL
    re.compile(r"(?<![\w/.~:])(?:~|\.{1,2})?/[A-Za-z_][\w.-]*(?:/[\w.-]+)*/?"),  # /a/path
]


def bare_identifiers(text: str) -> list[str]:
    found: list[str] = []
    for pattern in BARE_IDENTIFIERS:
        found += [m.group(0).rstrip(".") for m in pattern.finditer(text)]
    return found


def strip_identifiers(text: str) -> str:
    for pattern in BARE_IDENTIFIERS:
        text = pattern.sub(" ", text)
    return text


# -- the document model ---------------------------------------------------------------------------
@dataclass
class Inline:
    """One inline run (a heading, a paragraph, a table cell): its text with code spans taken out."""

    text: str
    codes: list[str]
    links: list[str]
    line: int
    raw: str                # the Markdown as written, for messages

    @property
    def identifiers(self) -> list[str]:
        return self.codes + self.links + bare_identifiers(self.text)


@dataclass
class Block:
    """A unit of prose judged on its own: heading, paragraph or table row."""

    kind: str
    text: str               # code spans, identifiers and URLs removed
    line: int
    section: int


@dataclass
class Table:
    line: int
    header: list[Inline]
    rows: list[list[Inline]]


@dataclass
class Doc:
    """What the checks compare, taken from one markdown-it token stream."""

    headings: list[tuple[int, Inline]] = field(default_factory=list)
    code_blocks: list[tuple[str, str, int]] = field(default_factory=list)   # info, content, line
    tables: list[Table] = field(default_factory=list)
    prose: list[Inline] = field(default_factory=list)                       # outside tables
    blocks: list[Block] = field(default_factory=list)
    items: Counter[str] = field(default_factory=Counter)                    # "bulleted"/"numbered"


def parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def read_inline(token: Token, line: int) -> Inline:
    """Text of an inline token; code spans and link targets set aside, line breaks kept."""
    parts: list[str] = []
    codes: list[str] = []
    links: list[str] = []
    for child in token.children or []:
        if child.type == "text":
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "code_inline":
            codes.append(child.content)
            parts.append(" ")
        elif child.type == "link_open":
            links.append(str(child.attrGet("href") or ""))
        elif child.type == "image":
            links.append(str(child.attrGet("src") or ""))
            parts.append(child.content)
    return Inline("".join(parts), codes, links, line, token.content)


def parse(markdown: str) -> Doc:
    doc = Doc()
    tokens = parser().parse(markdown)
    lists: list[str] = []
    table: Table | None = None
    row: list[Inline] | None = None
    section = 0
    line = 1
    for i, tok in enumerate(tokens):
        if tok.map:
            line = tok.map[0] + 1
        if tok.type in ("bullet_list_open", "ordered_list_open"):
            lists.append("bulleted" if tok.type == "bullet_list_open" else "numbered")
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif tok.type == "list_item_open":
            doc.items[lists[-1]] += 1
        elif tok.type in ("fence", "code_block"):
            doc.code_blocks.append((tok.info.strip(), tok.content, line))
        elif tok.type == "table_open":
            table = Table(line, [], [])
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and table is not None and row is not None:
            if table.header:
                table.rows.append(row)
            else:
                table.header = row
            doc.blocks.append(Block("table row", " | ".join(c.text for c in row), line, section))
            row = None
        elif tok.type == "table_close" and table is not None:
            doc.tables.append(table)
            table = None
        elif tok.type == "html_block":
            text = re.sub(r"<[^>]*>", " ", tok.content)
            doc.blocks.append(Block("html", text, line, section))
        elif tok.type == "inline":
            inline = read_inline(tok, line)
            opener = tokens[i - 1].type if i else ""
            if opener in ("th_open", "td_open") and row is not None:
                row.append(inline)
                continue
            doc.prose.append(inline)
            if opener == "heading_open":
                section += 1
                doc.headings.append((int(tokens[i - 1].tag[1]), inline))
            doc.blocks.append(Block("heading" if opener == "heading_open" else "paragraph",
                                    inline.text, line, section))
    for b in doc.blocks:
        b.text = strip_identifiers(b.text)
    return doc
