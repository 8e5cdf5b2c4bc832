#!/usr/bin/env bash
# Make sure a headless Chromium and its chromedriver exist, changing nothing where they do.
#
# The report's browser tests (tests/integration/test_report_browser.py) drive
# Debian's chromium through Selenium with the chromedriver from the same
# release, so Selenium Manager never downloads a browser. On a machine that
# already has both on PATH this only checks them. On Debian/Ubuntu run as root
# it installs chromium, chromium-driver and one font (pages render with real
# glyphs, so screenshots are comparable). Exit status 0 means both are on PATH.
set -euo pipefail

log() { printf 'setup-browser: %s\n' "$*" >&2; }

have_browser() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if have_browser; then
  log "chromium and chromedriver are already installed; nothing to do"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "chromium and chromedriver are not both on PATH and this is not root on Debian:"
  log "install them yourself (Debian/Ubuntu: apt-get install chromium chromium-driver fonts-dejavu-core)"
  log "and selenium (pip install selenium), then rerun the tests"
  exit 1
fi

log "installing chromium, chromium-driver and fonts-dejavu-core from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null

if have_browser; then
  log "ready: $(chromium --version 2>/dev/null | head -n 1), $(chromedriver --version | head -n 1)"
  exit 0
fi
log "the packages installed but chromium or chromedriver is still not on PATH"
exit 1
