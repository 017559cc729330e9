#!/usr/bin/env bash
# Test services for the storage backends, installed project-locally (needs only the npm and PyPI
# registries, no system packages beyond node/npm):
#   Azurite 3.35.0 (the reference Azure Blob service) -> <repo>/.tools/node_modules  (npm)
#   moto server (an S3 endpoint)                     -> <repo>/.venv                (pip)
#
#   scripts/services.sh [install]   install what is missing (idempotent)
#   scripts/services.sh start       install, then start both in the background (pid files in .tools/run)
#   scripts/services.sh stop        stop what `start` started
#   scripts/services.sh env azure|s3|local
#                                   print the exports that point the whole test suite at that backend:
#                                   eval "$(scripts/services.sh env s3)" && .venv/bin/python -m pytest
#
# Ports: OPENAMS_AZURITE_PORT (default 10000), OPENAMS_MOTO_PORT (default 10900).
# tests/storage starts its own private instances on free ports, so `start` is only needed to run
# the rest of the suite on the azure or s3 backend.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/.tools"
RUN="$TOOLS/run"
VENV="$ROOT/.venv"
AZURITE_VERSION=3.35.0
MOTO_SPEC='moto[server]>=5.0,<6'
AZURITE_PORT=${OPENAMS_AZURITE_PORT:-10000}
MOTO_PORT=${OPENAMS_MOTO_PORT:-10900}
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
AZURITE_MAIN="$TOOLS/node_modules/azurite/dist/src/blob/main.js"

say() { echo "services: $*" >&2; }
sudo_cmd() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_azurite() {
  local pkg="$TOOLS/node_modules/azurite/package.json"
  if [ -f "$pkg" ] && grep -q "\"version\": \"$AZURITE_VERSION\"" "$pkg"; then
    say "Azurite $AZURITE_VERSION already in $TOOLS"
    return
  fi
  if ! command -v npm >/dev/null; then
    say "npm not found; trying apt-get install nodejs npm"
    if ! { sudo_cmd apt-get update -qq && sudo_cmd env DEBIAN_FRONTEND=noninteractive \
          apt-get install -y -qq nodejs npm >/dev/null; }; then
      say "cannot install node/npm: install Node.js >= 18 and re-run"; return 1
    fi
  fi
  say "installing Azurite $AZURITE_VERSION into $TOOLS (npm install --prefix .tools azurite@$AZURITE_VERSION)"
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --save-exact --loglevel=error "azurite@$AZURITE_VERSION" >&2
}

install_moto() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "no virtualenv at $VENV (run ./run test or python3 -m venv .venv first)"; return 1
  fi
  if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto.server, flask" 2>/dev/null; then
    say "moto server already in $VENV"
    return
  fi
  say "installing $MOTO_SPEC into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$MOTO_SPEC" >&2
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  say "$what did not open port $port; see $RUN/$what.log"; return 1
}

start() {
  mkdir -p "$RUN"
  if alive "$RUN/azurite.pid"; then
    say "Azurite already running (pid $(cat "$RUN/azurite.pid"), port $AZURITE_PORT)"
  else
    say "starting Azurite on 127.0.0.1:$AZURITE_PORT (data in $RUN/azurite)"
    mkdir -p "$RUN/azurite"
    nohup node "$AZURITE_MAIN" --disableTelemetry --skipApiVersionCheck --silent --blobHost 127.0.0.1 \
      --blobPort "$AZURITE_PORT" --location "$RUN/azurite" >"$RUN/azurite.log" 2>&1 &
    echo $! >"$RUN/azurite.pid"
    wait_port "$AZURITE_PORT" azurite
  fi
  if alive "$RUN/moto.pid"; then
    say "moto already running (pid $(cat "$RUN/moto.pid"), port $MOTO_PORT)"
  else
    say "starting moto server on 127.0.0.1:$MOTO_PORT"
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$RUN/moto.log" 2>&1 &
    echo $! >"$RUN/moto.pid"
    wait_port "$MOTO_PORT" moto
  fi
}

stop() {
  local name
  for name in azurite moto; do
    if alive "$RUN/$name.pid"; then
      say "stopping $name (pid $(cat "$RUN/$name.pid"))"
      kill "$(cat "$RUN/$name.pid")" || true
    fi
    rm -f "$RUN/$name.pid"
  done
}

env_for() {
  case "${1:-}" in
    azure)
      echo "export OPENAMS_STORAGE_BACKEND=azure"
      echo "export OPENAMS_AZURE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$AZURITE_KEY;BlobEndpoint=http://127.0.0.1:$AZURITE_PORT/devstoreaccount1;'"
      ;;
    s3)
      echo "export OPENAMS_STORAGE_BACKEND=s3"
      echo "export OPENAMS_S3_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT"
      echo "export OPENAMS_S3_BUCKET=openams-test"
      echo "export OPENAMS_S3_REGION=us-east-1"
      echo "export OPENAMS_S3_ACCESS_KEY=testing"
      echo "export OPENAMS_S3_SECRET_KEY=testing"
      ;;
    local)
      echo "export OPENAMS_STORAGE_BACKEND=local"
      echo "unset OPENAMS_AZURE_CONNECTION_STRING OPENAMS_S3_ENDPOINT_URL OPENAMS_S3_BUCKET"
      ;;
    *) say "usage: $0 env azure|s3|local"; return 2 ;;
  esac
}

case "${1:-install}" in
  install) install_azurite; install_moto ;;
  start) install_azurite; install_moto; start ;;
  stop) stop ;;
  env) env_for "${2:-}" ;;
  *) say "usage: $0 [install|start|stop|env azure|s3|local]"; exit 2 ;;
esac
