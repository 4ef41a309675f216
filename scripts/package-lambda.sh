#!/usr/bin/env bash
# Builds the ingest Lambda for one architecture and packs a deployable zip:
#   dist/ingest-<arch>.zip = bootstrap
#                          + lib/libonnxruntime.so.1.31.1  (from the onnxruntime wheel for that platform)
#                          + models/*.onnx + models/profiles/*.toml
# Usage: scripts/package-lambda.sh arm64|x86_64
# Needs: cargo; installs cargo-lambda and zig (PyPI packages) into .tools/venv when missing.
# The function's environment must set ORT_DYLIB_PATH=/var/task/lib/libonnxruntime.so.1.31.1
# (VIGIL_MODELS_DIR defaults to $LAMBDA_TASK_ROOT/models).
set -euo pipefail

ARCH="${1:-}"
case "$ARCH" in
    arm64) PLATFORM="manylinux_2_28_aarch64"; FLAG="--arm64" ;;
    x86_64) PLATFORM="manylinux_2_28_x86_64"; FLAG="--x86-64" ;;
    *) echo "usage: $0 arm64|x86_64" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.tools/venv"
WHEELS="$ROOT/.tools/wheels"
ORT_VERSION="1.31.1"
CARGO_LAMBDA_VERSION="1.9.2"
ZIG_VERSION="0.17.1"
log() { printf 'package-lambda(%s): %s\n' "$ARCH" "$*" >&2; }

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! [ -x "$VENV/bin/cargo-lambda" ] || ! "$VENV/bin/python" -c "import ziglang" 2>/dev/null; then
    log "installing cargo-lambda $CARGO_LAMBDA_VERSION and zig $ZIG_VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIG_VERSION"
fi
export PATH="$VENV/bin:$PATH"

# --- the binary ----------------------------------------------------------------------------
log "cargo lambda build --release $FLAG"
cargo lambda build --release "$FLAG" -p vigil-ingest --bin bootstrap --lambda-dir "target/lambda-$ARCH"
BOOTSTRAP="target/lambda-$ARCH/bootstrap/bootstrap"
[ -f "$BOOTSTRAP" ] || { log "no $BOOTSTRAP"; exit 1; }

# --- ONNX Runtime for that platform, from the PyPI wheel ------------------------------------
mkdir -p "$WHEELS"
wheel="$(ls "$WHEELS"/onnxruntime-"$ORT_VERSION"-*"${PLATFORM##*_2_2?_}"*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$wheel" ]; then
    log "downloading the onnxruntime $ORT_VERSION wheel for $PLATFORM"
    "$VENV/bin/pip" download --quiet --disable-pip-version-check "onnxruntime==$ORT_VERSION" \
        --only-binary=:all: --platform "$PLATFORM" --python-version 3.11 --implementation cp \
        --no-deps -d "$WHEELS"
    wheel="$(ls "$WHEELS"/onnxruntime-"$ORT_VERSION"-*"${PLATFORM##*_2_2?_}"*.whl | head -n1)"
fi

# --- the zip -------------------------------------------------------------------------------
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/lib" "$STAGE/models/profiles" dist
cp "$BOOTSTRAP" "$STAGE/bootstrap"
chmod 755 "$STAGE/bootstrap"
"$VENV/bin/python" - "$wheel" "$STAGE/lib" "$ORT_VERSION" <<'PY'
import sys, zipfile, os
wheel, dest, version = sys.argv[1:]
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheel) as z:
    data = z.read(name)
path = os.path.join(dest, os.path.basename(name))
with open(path, "wb") as f:
    f.write(data)
os.chmod(path, 0o755)
PY
cp models/*.onnx "$STAGE/models/"
cp models/profiles/*.toml "$STAGE/models/profiles/"
OUT="$ROOT/dist/ingest-$ARCH.zip"
rm -f "$OUT"
"$VENV/bin/python" - "$STAGE" "$OUT" <<'PY'
import sys, os, zipfile
stage, out = sys.argv[1:]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for base, _, files in sorted(os.walk(stage)):
        for f in sorted(files):
            full = os.path.join(base, f)
            info = zipfile.ZipInfo.from_file(full, os.path.relpath(full, stage))
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as fh:
                z.writestr(info, fh.read(), compresslevel=9)
PY
log "$(du -h "$OUT" | cut -f1) $OUT"
"$VENV/bin/python" - "$OUT" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
total = sum(i.file_size for i in z.infolist())
for i in z.infolist():
    print(f"  {i.file_size:>10}  {i.compress_size:>10}  {i.filename}")
print(f"  {total:>10}  (unzipped total)")
PY
