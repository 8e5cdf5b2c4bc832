"""Driving Debian's headless Chromium from tests, with nothing downloaded.

Selenium is pointed at the installed ``chromium`` and ``chromedriver`` (from
the same release; ``tests/setup-browser.sh`` installs both), so Selenium
Manager never looks for a browser on the network. ``AGENTEVAL_CHROMIUM`` and
``AGENTEVAL_CHROMEDRIVER`` name other binaries. Screenshots are decoded here
too, without Pillow, so a test can tell a rendered page from a blank one.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator


class BrowserUnavailable(RuntimeError):
    """No headless Chromium can be driven here; the message says what to install."""


def _binary(env: str, name: str) -> str | None:
    """The program named by ``env``, else ``name`` on PATH or in /usr/bin; None when that file is missing."""
    path = os.environ.get(env) or shutil.which(name) or f"/usr/bin/{name}"
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def browser_missing() -> str | None:
    """Why no browser can be driven here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    missing = [name for env, name in (("AGENTEVAL_CHROMIUM", "chromium"), ("AGENTEVAL_CHROMEDRIVER", "chromedriver"))
               if _binary(env, name) is None]
    if missing:
        return f"{' and '.join(missing)} not found (run tests/setup-browser.sh as root on Debian)"
    return None


@contextmanager
def headless_chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Selenium driver of a headless Chromium that keeps its console log; quit on exit."""
    reason = browser_missing()
    if reason:
        raise BrowserUnavailable(reason)
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary("AGENTEVAL_CHROMIUM", "chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--allow-file-access-from-files", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_binary("AGENTEVAL_CHROMEDRIVER", "chromedriver"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as e:
        raise BrowserUnavailable(f"chromium did not start under chromedriver: {e.msg or e}") from e
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """SEVERE console entries since the last call (reading the log empties it)."""
    return [f"{e.get('source', '?')}: {e.get('message', '')}" for e in driver.get_log("browser")
            if e.get("level") == "SEVERE"]


def page_links(driver: Any) -> list[str]:
    """Every href and src on the page as written in the HTML (not resolved), SVG links included."""
    links: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll('[href],[src]'), "
        "e => e.getAttribute('href') ?? e.getAttribute('src'));")
    return links


def full_page_screenshot(driver: Any, path: str) -> None:
    """The whole page, not just the window: the window grows to the page's size for the shot."""
    size = driver.get_window_size()
    width, height = driver.execute_script(
        "const d = document.documentElement; return [Math.max(d.scrollWidth, innerWidth), d.scrollHeight];")
    try:
        driver.set_window_size(max(size["width"], width), max(size["height"], height))
        if not driver.save_screenshot(path):
            raise BrowserUnavailable(f"chromium could not write a screenshot to {path}")
    finally:
        driver.set_window_size(size["width"], size["height"])


@dataclass(frozen=True)
class Pixels:
    """A decoded screenshot: ``rows`` of packed RGB(A) bytes, ``channels`` bytes a pixel."""

    width: int
    height: int
    channels: int
    rows: list[bytes]

    def colours(self) -> set[bytes]:
        """The distinct colours, alpha dropped."""
        c = self.channels
        return {row[i:i + 3] for row in self.rows for i in range(0, len(row), c)}

    def non_white(self) -> int:
        c = self.channels
        return sum(1 for row in self.rows for i in range(0, len(row), c) if row[i:i + 3] != b"\xff\xff\xff")


def decode_png(data: bytes) -> Pixels:
    """Pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes); anything else raises."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, []
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, cur = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(kind, cur, prev, channels)
        rows.append(bytes(cur))
        prev = cur
    return Pixels(width, height, channels, rows)


def _unfilter(kind: int, cur: bytearray, prev: bytearray, bpp: int) -> None:
    """Undo one row's PNG filter in place (one branch per row: this loop is the decoder's cost)."""
    n = len(cur)
    if kind == 0:
        return
    if kind == 1:  # Sub
        for i in range(bpp, n):
            cur[i] = (cur[i] + cur[i - bpp]) & 0xFF
    elif kind == 2:  # Up
        cur[:] = bytes((a + b) & 0xFF for a, b in zip(cur, prev))
    elif kind == 3:  # Average
        for i in range(n):
            cur[i] = (cur[i] + (((cur[i - bpp] if i >= bpp else 0) + prev[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(n):
            up = prev[i]
            if i < bpp:
                cur[i] = (cur[i] + up) & 0xFF
                continue
            left, corner = cur[i - bpp], prev[i - bpp]
            pa, pb, pc = abs(up - corner), abs(left - corner), abs(left + up - 2 * corner)
            cur[i] = (cur[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
    else:
        raise ValueError(f"bad PNG filter type {kind}")
