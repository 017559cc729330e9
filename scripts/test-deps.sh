#!/usr/bin/env bash
# Services and tools the test suite talks to. Installs what a fresh machine lacks; with
# OPENAMS_REQUIRE_SERVICES=1 a missing service makes the suite fail instead of skip.
set -euo pipefail
sudo_cmd() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v psql >/dev/null || missing+=(postgresql postgresql-client)
command -v curl >/dev/null || missing+=(curl)          # the blob tests PUT with the real curl
command -v npm >/dev/null || missing+=(nodejs npm)     # Azurite, the reference blob service
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd apt-get update -qq
  sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# PostgreSQL: start the local cluster if it is installed but not running
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if ls /etc/postgresql >/dev/null 2>&1; then
    sudo_cmd pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
