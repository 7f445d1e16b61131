#!/usr/bin/env bash
# Install (from Debian's packages) the headless browser the portal's end-to-end tests drive:
# Chromium, run by Playwright for Python through `executable_path` (Playwright's own browser
# downloads are never used). Prints `export ...` lines for the test run; `eval "$(scripts/browser.sh)"`.
set -euo pipefail
log() { echo "browser: $*" >&2; }

CHROMIUM=${AIMI_TEST_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" != 0 ]; then log "missing chromium and not root: install Debian's chromium package first"; exit 1; fi
  log "installing chromium"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
log "$("$CHROMIUM" --version 2>/dev/null | head -1)"
echo "export AIMI_TEST_CHROMIUM=$CHROMIUM"
echo "export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1"
