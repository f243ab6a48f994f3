#!/usr/bin/env bash
# Browser tests of the playground (/) and the dashboard (/dashboard): installs
# what a fresh machine lacks (Debian's Chromium, the playground's npm
# packages), builds the pages and the server that embeds them, then runs the
# tests in playground/tests/ (unit, schema and headless-Chromium end to end).
# Screenshots land in playground/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "browser.sh: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium
fi

echo "browser.sh: npm ci"
(cd playground && npm ci --no-audit --no-fund)

echo "browser.sh: building the pages"
(cd playground && npm run build)

echo "browser.sh: building the server (it embeds playground/dist)"
cargo build --locked

echo "browser.sh: running the browser tests"
cd playground
npm test
