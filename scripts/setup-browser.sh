#!/usr/bin/env bash
# The browser tests' tools: Debian's chromium (apt-get) and playwright-core (npm) in
# .tools/browser. Pinned; idempotent (skips what is there). Called by scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
PLAYWRIGHT_VERSION=1.65.1
CHROMIUM_VERSION=148.0.7778.167-1~deb12u1

say() { printf '[setup-browser] %s\n' "$*"; }

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium $CHROMIUM_VERSION with apt-get"
    # A fresh machine has no package lists yet: read them first.
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "chromium=$CHROMIUM_VERSION" >/dev/null \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    say "chromium is missing: install Debian's chromium (apt-get install chromium) for the browser tests"
  fi
fi

if [ ! -f "$TOOLS/browser/node_modules/playwright-core/package.json" ] \
  || ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$TOOLS/browser/node_modules/playwright-core/package.json"; then
  if command -v npm >/dev/null 2>&1; then
    say "installing playwright-core $PLAYWRIGHT_VERSION into .tools/browser"
    mkdir -p "$TOOLS/browser"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/browser" "playwright-core@$PLAYWRIGHT_VERSION"
  else
    say "npm is missing: the browser tests will be skipped"
  fi
fi
