"""Hidden verifier of the `folder` task: /workspace must hold exactly the variant's tree.

The tree is the variant's ``entries`` (see task.toml). This runs as another
user than the agent, over content the agent controlled, so it trusts nothing
it finds: entries are examined with lstat and never followed (a symlink is a
wrong entry, never a way out of the workspace), files are opened with
O_NOFOLLOW | O_NONBLOCK and read only a little past the expected size, listings
and counts are capped, and odd names are escaped before they are shown.

Every expected entry always gets the same checks (``dir P/``; or ``file P``,
``content P`` and ``mode P``), so scores compare across trials; every
unexpected entry gets its own failing ``extra P`` check; ``no extra entries``
and ``tree matches the spec`` close the verdict.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import stat
import unicodedata
from dataclasses import dataclass
from typing import Any

from agenteval_verifier import Verdict

MAX_EXTRA_CHECKS = 100      # unexpected entries reported one by one; the rest are summed up
MAX_LISTING = 100_000       # names read from one directory: a flood of files must not stall us
MAX_COUNTED = 10_000        # entries counted inside one unexpected directory
SHOWN_CHARS = 100           # longest excerpt of a line or a name put in a message

SUMMARY = "tree matches the spec"
NO_EXTRAS = "no extra entries"


@dataclass(frozen=True)
class Want:
    """One entry of the spec'd tree."""

    path: str               # relative, '/'-separated, no trailing slash
    kind: str               # "file" or "dir"
    content: bytes = b""
    mode: int = 0o644


@dataclass
class Tally:
    """How many entries went wrong in which way, for the summary."""

    missing: int = 0
    wrong_type: int = 0
    unreadable: int = 0
    wrong_content: int = 0
    wrong_mode: int = 0
    extra: int = 0


def parse_spec(params: dict[str, Any]) -> dict[str, Want]:
    """The variant's ``entries`` by path; parents not listed are implied directories."""
    raw = params.get("entries")
    if not isinstance(raw, list) or not raw:
        raise ValueError("the variant's params need a non-empty 'entries' list")
    want: dict[str, Want] = {}
    for item in raw:
        path = _spec_path(item.get("path"))
        if path in want:
            raise ValueError(f"entry {path!r} is listed twice")
        if item.get("type") == "dir":
            want[path] = Want(path, "dir")
        elif item.get("type") == "file":
            content = item.get("content")
            if not isinstance(content, str):
                raise ValueError(f"file entry {path!r} needs a string 'content'")
            want[path] = Want(path, "file", content.encode("utf-8"), int(str(item.get("mode", "0644")), 8))
        else:
            raise ValueError(f"entry {path!r}: 'type' must be 'dir' or 'file'")
    for path in list(want):
        parent = posixpath.dirname(path)
        while parent:
            if want.setdefault(parent, Want(parent, "dir")).kind != "dir":
                raise ValueError(f"entry {path!r} lies under {parent!r}, which is a file")
            parent = posixpath.dirname(parent)
    return want


def _spec_path(path: Any) -> str:
    if not isinstance(path, str):
        raise ValueError(f"entry path {path!r} is not a string")
    norm = path.rstrip("/")
    parts = norm.split("/")
    if path.startswith("/") or "\0" in norm or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"entry path {path!r} must be relative, without '.', '..' or empty parts")
    return norm


def show(path: str) -> str:
    """A path for a message, quoted; undecodable bytes and control characters escaped."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + "..."
    return f"'{text}'"


def show_bytes(data: bytes) -> str:
    """An excerpt of file content for a message, escaped like a Python string literal."""
    text = data[:SHOWN_CHARS].decode("utf-8", "backslashreplace")
    return repr(text) + ("..." if len(data) > SHOWN_CHARS else "")


def kind_of(st: os.stat_result) -> str:
    """What an lstat result is, with its article: 'a regular file', 'a symbolic link', ..."""
    m = st.st_mode
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(m):
            return name
    return "a device file"


def link_note(abspath: str, st: os.stat_result) -> str:
    """' -> target' for a symlink, so the message says where it points."""
    if not stat.S_ISLNK(st.st_mode):
        return ""
    try:
        return f" -> {show(os.readlink(abspath))}"
    except OSError:
        return ""


def count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def rwx(mode: int) -> str:
    return stat.filemode(stat.S_IFREG | mode)[1:]


def likeness(found: str, expected: str) -> str | None:
    """How an unexpected name resembles an expected one, or None when it does not."""
    if unicodedata.normalize("NFC", found) == unicodedata.normalize("NFC", expected):
        return "differs only in Unicode normalization (write the name precomposed, NFC)"
    if found.casefold() == expected.casefold():
        return "differs only in letter case"
    if found.strip() == expected.strip():
        return "differs only in leading or trailing spaces"
    if difflib.SequenceMatcher(None, found, expected).ratio() >= 0.75:
        return "is spelled similarly"
    return None


def list_dir(abspath: str) -> tuple[list[str], bool]:
    """Names in a directory, capped; the flag says whether the cap cut the listing."""
    names: list[str] = []
    with os.scandir(abspath) as it:
        for entry in it:
            if len(names) >= MAX_LISTING:
                return names, True
            names.append(entry.name)
    return names, False


def count_inside(abspath: str) -> tuple[int, str | None, bool]:
    """Entries under an unexpected directory (not following links): how many, the first, capped."""
    n, first, stack = 0, None, [abspath]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    n += 1
                    first = first or entry.path
                    if n >= MAX_COUNTED:
                        return n, first, True
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return n, first, False


def read_file(abspath: str, st: os.stat_result, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file that lstat saw, never through a link."""
    fd = os.open(abspath, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise OSError("the file changed while it was examined")
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def content_problem(expected: bytes, found: bytes, size: int) -> str | None:
    """None when ``found`` (the file's first bytes, ``size`` in all) is ``expected``; else why not."""
    n = len(expected)
    if size == n and found == expected:
        return None
    head = f"expected {n} bytes, found {size}"
    if size == 0:
        return f"{head}: the file is empty"
    if expected.endswith(b"\n") and size == n - 1 and found == expected[:-1]:
        return f"{head}: the final newline is missing"
    if size > n and found.startswith(expected):
        tail = found[n:]
        if size - n == len(tail) and not tail.strip(b"\n"):
            return f"{head}: {count(size - n, 'extra newline', 'extra newlines')} after the last line " \
                   f"(end with exactly one)"
        return (f"{head}: the expected content is followed by {count(size - n, 'more byte', 'more bytes')}, "
                f"starting {show_bytes(tail)}")
    if size == len(found) and b"\r\n" in found and found.replace(b"\r\n", b"\n") == expected:
        return f"{head}: the file has Windows line endings (\\r\\n); use Unix ones (\\n)"
    if size == n + 3 and found == b"\xef\xbb\xbf" + expected:
        return f"{head}: the file starts with a UTF-8 byte-order mark; remove it"
    offset = next((i for i, (a, b) in enumerate(zip(expected, found)) if a != b), min(n, len(found)))
    line = expected.count(b"\n", 0, offset) + 1
    if offset >= len(found) and size == len(found):
        return (f"{head}: the file ends early, at byte {offset} (line {line}); "
                f"expected it to go on with {show_bytes(expected[offset:])}")
    return (f"{head}; first difference at byte {offset} (line {line}): "
            f"expected line {show_bytes(_line_at(expected, offset))}, found {show_bytes(_line_at(found, offset))}")


def _line_at(data: bytes, offset: int) -> bytes:
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    return data[start:] if end < 0 else data[start:end + 1]


def mode_problem(path: str, found: int, expected: int) -> str | None:
    if found == expected:
        return None
    msg = f"{show(path)} has mode {found:04o} ({rwx(found)}), expected {expected:04o} ({rwx(expected)})"
    if expected & 0o111 and not found & 0o111:
        return f"{msg}: it is not executable; run chmod {expected:o} {show(path)}"
    if found & 0o111 and not expected & 0o111:
        return f"{msg}: it must not be executable; run chmod {expected:o} {show(path)}"
    return f"{msg}; run chmod {expected:o} {show(path)}"


class TreeCheck:
    """Walks the expected tree once, recording checks on ``v`` as it goes."""

    def __init__(self, v: Verdict, want: dict[str, Want]) -> None:
        self.v = v
        self.root = os.fspath(v.workspace)
        self.want = want
        self.tally = Tally()
        self.listings: dict[str, list[str]] = {}   # examined directories ('' is /workspace) -> names
        self.trouble: dict[str, str] = {}          # directories that could not be examined -> why
        self.capped: list[str] = []                # directories whose listing hit MAX_LISTING

    def abspath(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def run(self) -> None:
        self.check_root()
        for path in sorted(self.want, key=lambda p: p.split("/")):
            if self.want[path].kind == "dir":
                self.check_dir(path)
            else:
                self.check_file(path)
        self.check_extras()
        self.summary()

    # -- the workspace and expected entries ---------------------------------
    def check_root(self) -> None:
        name = "workspace is a readable directory"
        try:
            st = os.lstat(self.root)
        except OSError as e:
            self.trouble[""] = f"cannot be examined ({e.strerror})"
            self.v.check(name, False, f"{self.root} cannot be examined: {e.strerror}")
            return
        if not stat.S_ISDIR(st.st_mode):
            self.trouble[""] = f"is {kind_of(st)}"
            self.v.check(name, False, f"{self.root} is {kind_of(st)}, expected a directory")
            return
        problem = self.listable("", st)
        self.v.check(name, problem is None, problem or f"{self.root} is a directory")

    def listable(self, rel: str, st: os.stat_result) -> str | None:
        """List a real directory into ``self.listings``; the problem when others cannot."""
        where = self.root if not rel else show(rel + "/")
        try:
            if not os.access(self.abspath(rel), os.X_OK):
                raise PermissionError
            names, capped = list_dir(self.abspath(rel))
        except OSError:
            self.trouble[rel] = "cannot be read by another user"
            return (f"{where} is a directory, but another user cannot list or enter it "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); keep directories readable, e.g. mode 0755")
        self.listings[rel] = names
        if capped:
            self.capped.append(rel)
        return None

    def lstat_expected(self, path: str) -> tuple[os.stat_result | None, str]:
        """lstat of an expected entry, or None and why there is none ('missing', ...)."""
        parent = posixpath.dirname(path)
        if parent not in self.listings:
            where = "the workspace" if not parent else f"its parent {show(parent + '/')}"
            why = self.trouble.get(parent, "is missing")
            return None, f"missing, because {where} {why}"
        try:
            return os.lstat(self.abspath(path)), ""
        except FileNotFoundError:
            return None, "missing" + self.similar_note(path)
        except OSError as e:
            return None, f"missing: it cannot be examined ({e.strerror})"

    def similar_note(self, path: str) -> str:
        """' (found X instead, which ...)' when an unexpected sibling looks like the missing entry."""
        parent, name = posixpath.split(path)
        for other in sorted(self.listings.get(parent, [])):
            if posixpath.join(parent, other) in self.want:
                continue
            how = likeness(other, name)
            if how:
                return f" (found {show(posixpath.join(parent, other))} instead, which {how})"
        return ""

    def check_dir(self, path: str) -> None:
        name = f"dir {path}/"
        shown = show(path + "/")
        st, why = self.lstat_expected(path)
        if st is None:
            self.trouble[path] = "is missing"
            self.tally.missing += 1
            self.v.check(name, False, f"{shown} is {why}; expected a directory")
            return
        if not stat.S_ISDIR(st.st_mode):
            self.trouble[path] = f"is {kind_of(st)}, not a directory"
            self.tally.wrong_type += 1
            self.v.check(name, False, f"{shown} is {kind_of(st)}{link_note(self.abspath(path), st)}, "
                                      f"expected a directory")
            return
        problem = self.listable(path, st)
        if problem:
            self.tally.unreadable += 1
        empty = not any(p.startswith(path + "/") for p in self.want)
        self.v.check(name, problem is None,
                     problem or f"{shown} is a directory" + (", as it must be, empty" if empty else ""))

    def check_file(self, path: str) -> None:
        want = self.want[path]
        shown = show(path)
        st, why = self.lstat_expected(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            if st is None:
                self.tally.missing += 1
                found, skipped = f"{shown} is {why}", f"not checked: {shown} is missing"
            else:
                self.tally.wrong_type += 1
                found = f"{shown} is {kind_of(st)}{link_note(self.abspath(path), st)}"
                skipped = f"not checked: {shown} is not a regular file"
            self.v.check(f"file {path}", False, f"{found}; expected a regular file of {len(want.content)} bytes "
                                               f"with mode {want.mode:04o}")
            self.v.check(f"content {path}", False, skipped)
            self.v.check(f"mode {path}", False, skipped)
            return
        self.v.check(f"file {path}", True, f"{shown} is a regular file")
        self.check_content(path, st)
        problem = mode_problem(path, stat.S_IMODE(st.st_mode), want.mode)
        if problem:
            self.tally.wrong_mode += 1
        self.v.check(f"mode {path}", problem is None, problem or f"{shown} has mode {want.mode:04o}")

    def check_content(self, path: str, st: os.stat_result) -> None:
        expected = self.want[path].content
        try:
            found = read_file(self.abspath(path), st, 2 * len(expected) + 64)
        except OSError as e:
            self.tally.unreadable += 1
            self.v.check(f"content {path}", False,
                         f"{show(path)} cannot be read by another user ({e.strerror or e}); "
                         f"files must be readable, e.g. mode 0644")
            return
        problem = content_problem(expected, found, st.st_size)
        if problem:
            self.tally.wrong_content += 1
        self.v.check(f"content {path}", problem is None,
                     f"{show(path)}: {problem}" if problem else f"{show(path)} has the expected {len(expected)} bytes")

    # -- everything else ------------------------------------------------------
    def check_extras(self) -> None:
        found = (posixpath.join(d, n) for d in sorted(self.listings) for n in sorted(self.listings[d]))
        extras = [path for path in found if path not in self.want]
        self.tally.extra = len(extras)
        for path in extras[:MAX_EXTRA_CHECKS]:
            self.v.check(f"extra {show(path)[1:-1]}", False, self.describe_extra(path))
        if len(extras) > MAX_EXTRA_CHECKS:
            self.v.check("extra (more)", False, f"{len(extras) - MAX_EXTRA_CHECKS} more unexpected entries "
                                                f"were found and not listed one by one")
        for rel in self.capped:
            where = self.root if not rel else show(rel + "/")
            self.v.check(f"extra (listing of {where} cut)", False,
                         f"{where} holds more than {MAX_LISTING} entries; only the first were examined")
        if extras:
            shown = ", ".join(show(p) for p in extras[:10]) + (", ..." if len(extras) > 10 else "")
            self.v.check(NO_EXTRAS, False,
                         f"{count(len(extras), 'unexpected entry', 'unexpected entries')} in {self.root}: {shown}")
        else:
            self.v.check(NO_EXTRAS, not self.capped, f"nothing but the spec'd tree is in {self.root}")

    def describe_extra(self, path: str) -> str:
        abspath = self.abspath(path)
        try:
            st = os.lstat(abspath)
        except OSError as e:
            return f"unexpected entry {show(path)} (cannot be examined: {e.strerror})"
        if stat.S_ISREG(st.st_mode):
            what = f"unexpected file {show(path)} ({st.st_size} bytes)"
        elif stat.S_ISDIR(st.st_mode):
            n, first, capped = count_inside(abspath)
            if not n:
                inside = "empty"
            else:
                example = show(os.path.relpath(first or abspath, self.root))
                inside = f"holding {'at least ' if capped else ''}{count(n, 'entry', 'entries')}, e.g. {example}"
            what = f"unexpected directory {show(path + '/')} ({inside})"
        else:
            what = f"unexpected {kind_of(st).removeprefix('a ')} {show(path)}{link_note(abspath, st)}"
        parent, name = posixpath.split(path)
        notes = []
        if parent and not any(p.startswith(parent + "/") for p in self.want):
            notes.append(f"{show(parent + '/')} must stay empty")
        for expected in self.want:
            if posixpath.dirname(expected) == parent and not self.present(expected):
                how = likeness(name, posixpath.basename(expected))
                if how:
                    slash = "/" if self.want[expected].kind == "dir" else ""
                    notes.append(f"did you mean {show(expected + slash)}? this name {how}")
                    break
        if not notes:
            notes.append(f"only the spec'd tree may exist in {self.root}")
        return what + "; " + "; ".join(notes)

    def present(self, path: str) -> bool:
        parent, name = posixpath.split(path)
        return name in self.listings.get(parent, ())

    def summary(self) -> None:
        t = self.tally
        wrong = [f"{n} {what}" for n, what in (
            (t.missing, "missing"), (t.wrong_type, "of the wrong type"), (t.unreadable, "unreadable"),
            (t.wrong_content, "with wrong content"), (t.wrong_mode, "with the wrong mode")) if n]
        ok = all(c["passed"] for c in self.v.checks)
        if ok:
            msg = (f"all {len(self.want)} expected entries are in place with the right type, content and mode, "
                   f"and nothing else is")
        else:
            msg = f"of {len(self.want)} expected entries: " + (", ".join(wrong) if wrong else "none wrong")
            msg += f"; {count(t.extra, 'unexpected entry', 'unexpected entries')}" if t.extra or self.capped else ""
        self.v.check(SUMMARY, ok, msg)


def main() -> None:
    with Verdict() as v:
        TreeCheck(v, parse_spec(v.variant)).run()


if __name__ == "__main__":
    main()
