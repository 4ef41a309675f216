#!/usr/bin/env bash
# Builds the ingest Lambda for one architecture and packs a deployable zip:
#   dist/ingest-<arch>.zip = bootstrap
#                          + lib/libonnxruntime.so.1.31.1  (from the onnxruntime wheel for that platform)
#                          + models/*.onnx + models/profiles/*.toml
# Usage: scripts/package-lambda.sh arm64|x86_64
# Needs: cargo and python3; cargo-lambda and zig come from scripts/setup-build.sh. Linux and macOS.
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
log() { printf 'package-lambda(%s): %s\n' "$ARCH" "$*" >&2; }

# cargo-lambda and zig (pinned in setup-build.sh, which `make build` runs first).
bash "$ROOT/scripts/setup-build.sh"
export PATH="$VENV/bin:$PATH"

# --- the binary ----------------------------------------------------------------------------
# The `deploy` profile (Cargo.toml): whole-program LTO, sized for memory; cargo-lambda's own
# `--release` settings are not used (they are thin LTO with full speed optimisation).
log "cargo lambda build --profile deploy $FLAG"
cargo lambda build --profile deploy "$FLAG" -p vigil-ingest --bin bootstrap --lambda-dir "target/lambda-$ARCH"
BOOTSTRAP="target/lambda-$ARCH/bootstrap/bootstrap"
[ -f "$BOOTSTRAP" ] || { log "no $BOOTSTRAP"; exit 1; }

# --- ONNX Runtime for that platform, from the PyPI wheel ------------------------------------
mkdir -p "$WHEELS"
find_wheel() { find "$WHEELS" -maxdepth 1 -name "onnxruntime-$ORT_VERSION-*${PLATFORM#manylinux_2_28_}*.whl" | head -n1; }
wheel="$(find_wheel)"
if [ -z "$wheel" ]; then
    log "downloading the onnxruntime $ORT_VERSION wheel for $PLATFORM"
    "$VENV/bin/pip" download --quiet --disable-pip-version-check "onnxruntime==$ORT_VERSION" \
        --only-binary=:all: --platform "$PLATFORM" --python-version 3.11 --implementation cp \
        --no-deps -d "$WHEELS"
    wheel="$(find_wheel)"
    [ -n "$wheel" ] || { log "no onnxruntime $ORT_VERSION wheel for $PLATFORM in $WHEELS"; exit 1; }
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
