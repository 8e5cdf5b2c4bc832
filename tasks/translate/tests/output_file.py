"""Reading /workspace/output.md, which comes from the agent: the checks "output.md exists" and
"output.md is UTF-8 text".

The file is read with O_NOFOLLOW | O_NONBLOCK (a link or a FIFO is reported, never
followed or waited on) and capped in size.
"""

from __future__ import annotations

import os
import stat

from agenteval_verifier import Verdict

OUTPUT = "output.md"
MAX_BYTES = 512 * 1024      # a translation of these documents is ~5 KB; more is not a translation

EXISTS = "output.md exists"
UTF8 = "output.md is UTF-8 text"


def read_output(v: Verdict) -> tuple[str | None, str]:
    """output.md as text, or None and why not (both file checks recorded here)."""
    path = v.workspace / OUTPUT
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        v.check(EXISTS, False, f"expected {path}, found nothing there")
        return None, "output.md is missing"
    except OSError as e:
        try:
            st = os.lstat(path)
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else f"not readable ({e.strerror})"
        except OSError:
            what = f"not readable ({e.strerror})"
        v.check(EXISTS, False, f"expected a regular file readable by other users at {path}, found {what}")
        return None, "output.md cannot be read"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            v.check(EXISTS, False, f"expected a regular file at {path}, found something else (mode {st.st_mode:o})")
            return None, "output.md is not a regular file"
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if not data.strip():
        v.check(EXISTS, False, f"{path} is empty; expected the English translation")
        return None, "output.md is empty"
    if len(data) > MAX_BYTES:
        v.check(EXISTS, False, f"{path} is larger than {MAX_BYTES // 1024} KiB; a translation of this "
                "document is a few KiB")
        return None, "output.md is too large"
    v.check(EXISTS, True, f"{len(data)} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        v.check(UTF8, False, f"not UTF-8: byte {data[e.start]:#04x} at offset {e.start} cannot be decoded; "
                "save the file as UTF-8")
        return None, "output.md is not UTF-8"
    if "\0" in text:
        v.check(UTF8, False, f"a NUL byte at offset {text.index(chr(0))}; expected plain text")
        return None, "output.md is not text"
    v.check(UTF8, True, "valid UTF-8")
    return text.removeprefix("\ufeff"), ""
