#!/usr/bin/env bash
# `make bench-aws`: the deployed bootstrap (`deploy` profile) under cargo-lambda's Runtime API emulator
# (`cargo lambda watch --only-lambda-apis`) against DynamoDB Local + moto server, for direct, SQS
# and Kinesis delivery, 1 and 60 samples per message. Prints the figures as JSON (docs/aws.md).
# Needs: `make setup` (emulators, venv); installs cargo-lambda (PyPI, the version `make build`
# pins) into .tools/venv when missing. Usage: scripts/bench-aws.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VIGIL_TOOLS_VENV:-$PWD/.tools/venv}"
CARGO_LAMBDA_VERSION="$(sed -n 's/^CARGO_LAMBDA_VERSION="\(.*\)"/\1/p' scripts/package-lambda.sh)"
CARGO_LAMBDA="${VIGIL_CARGO_LAMBDA:-$VENV/bin/cargo-lambda}"
if ! [ -x "$CARGO_LAMBDA" ]; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi
# The bootstrap as it is deployed: the `deploy` profile (Cargo.toml), as scripts/package-lambda.sh builds it.
cargo build --locked --profile deploy -q -p vigil-ingest --bin bootstrap
cargo build --locked -q -p vigil-tests --bin bench-aws
mkdir -p target/emulators
target/debug/bench-aws --cycles "${1:-20}" --bootstrap target/deploy/bootstrap --cargo-lambda "$CARGO_LAMBDA" \
    | tee target/emulators/bench-aws.json
