#!/usr/bin/env bash
# Installs what Vigil's tests and demos need, into .tools/ (git-ignored): the Python tools, ONNX Runtime,
# the AWS emulators. `make build` / `make deploy` do not run this (scripts/setup-build.sh is theirs). Idempotent:
# each step is skipped when its result is already there. Registries only, through their
# ordinary clients (pip, npm, apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
VENV="$TOOLS/venv"
mkdir -p "$TOOLS/lib"

say() { printf '[setup] %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (the Rust toolchain); install it with rustup" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating Python venv in .tools/venv"
  python3 -m venv "$VENV"
fi

# Pinned tool requirements; the stamp records which requirements file was installed.
REQ=scripts/requirements-tools.txt
STAMP="$VENV/.requirements.sha256"
want=$("$VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$REQ")
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  say "installing Python tools from $REQ"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  echo "$want" > "$STAMP"
fi

# ONNX Runtime's shared library comes from the onnxruntime wheel (.so on Linux, .dylib on macOS); link it
# at a fixed path.
lib=$("$VENV/bin/python" - <<'PY'
import glob, os, onnxruntime
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
found = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so.*")) + glob.glob(os.path.join(capi, "libonnxruntime*.dylib")))
print(found[0] if found else "")
PY
)
if [ -z "$lib" ]; then
  echo "libonnxruntime.so not found in the onnxruntime wheel" >&2
  exit 1
fi
ln -sf "$lib" "$TOOLS/lib/libonnxruntime.so"

if [ -x scripts/setup-emulators.sh ]; then
  scripts/setup-emulators.sh
fi
if [ -x scripts/setup-browser.sh ]; then
  scripts/setup-browser.sh
fi
say "ready (ORT_DYLIB_PATH=$TOOLS/lib/libonnxruntime.so)"
