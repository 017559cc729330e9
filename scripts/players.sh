#!/usr/bin/env bash
# Browser-playback test tools (tests/support/players.py, tests/e2e). Installs what a fresh machine
# lacks, from the Debian, npm and PyPI registries only — no installer downloads anything else:
#   Chromium        Debian package `chromium` -> /usr/bin/chromium. Debian builds it with H.264 and
#                   AAC decoding (MSE), so no extra codec package is needed.
#   hls.js, dashjs, shaka-player, shaka-packager
#                   -> <repo>/node_modules, `npm ci` from package.json + package-lock.json, with
#                   --ignore-scripts: every file is inside the tarballs (shaka-packager carries its
#                   static binaries in bin/). The DASH-IF player is the npm package `dashjs`.
#   playwright      -> <repo>/.venv (PyPI wheel with its driver). It drives *our* Chromium over the
#                   DevTools protocol; `playwright install` (a browser download) is never needed.
#
#   scripts/players.sh [install]   install what is missing (idempotent; quick when all is there)
#   scripts/players.sh check       also ask the installed Chromium whether MSE takes H.264 + AAC
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV="$ROOT/.venv"
PLAYWRIGHT_SPEC='playwright>=1.65'
STAMP="$ROOT/node_modules/.openams-players.lock"
REQUIRED_FILES=(
  hls.js/dist/hls.min.js
  dashjs/dist/modern/umd/dash.all.min.js
  dashjs/dist/modern/umd/dash.mss.min.js
  shaka-player/dist/shaka-player.compiled.js
  shaka-packager/bin/packager-linux-x64
)

say() { echo "players: $*" >&2; }
sudo_cmd() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_apt() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v npm >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -eq 0 ]; then
    say "$(chromium --version 2>/dev/null | head -1), node $(node --version)"
    return
  fi
  say "installing ${missing[*]} (apt)"
  sudo_cmd apt-get update -qq
  sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

node_modules_current() {
  [ -f "$STAMP" ] && cmp -s "$STAMP" "$ROOT/package-lock.json" || return 1
  local f
  for f in "${REQUIRED_FILES[@]}"; do [ -f "$ROOT/node_modules/$f" ] || return 1; done
}

install_npm() {
  if node_modules_current; then
    say "node_modules matches package-lock.json"
    return
  fi
  say "npm ci (hls.js, dashjs, shaka-player, shaka-packager -> $ROOT/node_modules)"
  (cd "$ROOT" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  cp "$ROOT/package-lock.json" "$STAMP"
}

install_playwright() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "no virtualenv at $VENV (run ./run test or python3 -m venv .venv first); skipping playwright"
    return
  fi
  if "$VENV/bin/python" -c "import playwright.sync_api" 2>/dev/null; then
    say "playwright already in $VENV"
    return
  fi
  say "installing $PLAYWRIGHT_SPEC into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$PLAYWRIGHT_SPEC" >&2
}

check_codecs() {
  local profile page out
  profile=$(mktemp -d)
  page="$profile/codecs.html"
  cat >"$page" <<'EOF'
<pre id=o></pre><script>
const t = ['video/mp4; codecs="avc1.64001f"', 'audio/mp4; codecs="mp4a.40.2"', 'video/mp2t; codecs="avc1.64001f,mp4a.40.2"'];
document.getElementById('o').textContent = t.map((x) => `${MediaSource.isTypeSupported(x)} ${x}`).join('\n');
</script>
EOF
  out=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$profile/ud" \
    --dump-dom "file://$page" 2>/dev/null | sed 's/<[^>]*>//g; s/&quot;/"/g' | grep -E '^(true|false) ' || true)
  rm -rf "$profile"
  echo "$out" | sed 's/^/players: MSE /' >&2
  if [ -z "$out" ] || echo "$out" | grep -q '^false'; then
    say "this Chromium cannot play H.264/AAC through MSE; the playback tests will fail"
    return 1
  fi
}

case "${1:-install}" in
  install) install_apt; install_npm; install_playwright ;;
  check) install_apt; install_npm; install_playwright; check_codecs ;;
  *) say "usage: $0 [install|check]"; exit 2 ;;
esac
