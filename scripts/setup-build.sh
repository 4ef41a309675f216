#!/usr/bin/env bash
# What `make build` and `make deploy` need, and nothing else: cargo (checked, not installed), and
# cargo-lambda with zig (PyPI packages, pinned) in the venv .tools/venv. No Java, npm nor emulators:
# those are for the tests (scripts/setup.sh). Works on Linux and macOS (bash 3.2, no GNU-only tools).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/venv"
CARGO_LAMBDA_VERSION="1.9.2"
ZIG_VERSION="0.17.1"
log() { printf 'setup-build: %s\n' "$*" >&2; }

command -v cargo >/dev/null 2>&1 || { log "cargo is required (the Rust toolchain): install it with rustup"; exit 1; }
command -v python3 >/dev/null 2>&1 || { log "python3 is required (it installs cargo-lambda and zig)"; exit 1; }

[ -x "$VENV/bin/python" ] || { log "creating the venv $VENV"; python3 -m venv "$VENV"; }
have="$("$VENV/bin/python" -c 'import importlib.metadata as m
try: print(m.version("cargo-lambda"), m.version("ziglang"))
except Exception: print("")' 2>/dev/null || true)"
if [ "$have" != "$CARGO_LAMBDA_VERSION $ZIG_VERSION" ]; then
    log "installing cargo-lambda $CARGO_LAMBDA_VERSION and zig $ZIG_VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIG_VERSION"
fi
log "ready: $VENV/bin/cargo-lambda"
