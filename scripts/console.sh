#!/usr/bin/env bash
# The web console's end-to-end browser tests against a built `cloudstream` binary.
# Installs what they need if it is missing (idempotent: a second run installs nothing):
#   - Chromium from Debian (apt-get; run as root, or with sudo available),
#   - playwright-core (npm, pinned, no browser download) into $CLOUDSTREAM_TOOLS/console
#     (default ~/.cache/cloudstream/tools/console), outside the clone;
# then runs crates/cloudstream-server/tests/console/run.mjs, which starts real servers on
# loopback, drives headless Chromium over the console and writes screenshots.
# Usage: scripts/console.sh BIN [SCREENSHOT_DIR]   (default target/console-screenshots)
# CONSOLE_ONLY=REGEX runs only the scenarios whose name matches. Exit status 1 if any
# scenario failed, none ran, or the browser did not start.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BIN [SCREENSHOT_DIR]" >&2
  exit 2
fi
BIN=$(realpath "$1")
[ -x "$BIN" ] || { echo "console: $BIN is not an executable" >&2; exit 2; }
SHOTS=""
[ $# -lt 2 ] || SHOTS=$(realpath -m "$2")
cd "$(dirname "$0")/.."
SHOTS="${SHOTS:-$PWD/target/console-screenshots}"
TOOLS="${CLOUDSTREAM_TOOLS:-$HOME/.cache/cloudstream/tools}"
PW_VERSION=1.64.1
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

command -v node >/dev/null || { echo "console: node is not installed" >&2; exit 1; }
if ! [ -x "$CHROMIUM" ]; then
  echo "== installing chromium (Debian)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "console: installing chromium needs root (or sudo)" >&2; exit 1; }
    SUDO="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq chromium >/dev/null ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; }
fi
# Debian's wrapper script may print shell noise on stderr; only the version line matters.
if ! version=$("$CHROMIUM" --version 2>/dev/null) || [ -z "$version" ]; then
  echo "console: chromium does not run:" >&2
  "$CHROMIUM" --version >&2 || true
  exit 1
fi
echo "== $version"

PW="$TOOLS/console/node_modules/playwright-core"
if [ "$(node -p "require('$PW/package.json').version" 2>/dev/null)" != "$PW_VERSION" ]; then
  echo "== installing playwright-core $PW_VERSION (npm) into $TOOLS/console"
  mkdir -p "$TOOLS/console"
  [ -f "$TOOLS/console/package.json" ] || echo '{"private":true}' >"$TOOLS/console/package.json"
  (cd "$TOOLS/console" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error \
    "playwright-core@$PW_VERSION")
fi

PLAYWRIGHT_CORE="$PW" CHROMIUM="$CHROMIUM" exec node crates/cloudstream-server/tests/console/run.mjs "$BIN" "$SHOTS"
