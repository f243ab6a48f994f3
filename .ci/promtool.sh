#!/usr/bin/env bash
# Validates a real Prometheus exposition with Prometheus's own checker:
# installs Debian's `prometheus` package when `promtool` is missing, starts
# the server (debug build) on a free port with a fresh SQLite database, puts
# some data in through the API (tasks, events, metrics of every type with
# label values that need escaping), fetches /metrics with a bearer token and
# runs `promtool check metrics` on it. Fails if promtool reports anything
# (a parse error or a lint problem).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package prometheus)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends prometheus >/dev/null || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends prometheus >/dev/null
  }
fi
promtool --version 2>&1 | head -1 || true
echo

cargo build -q --bin sightline
BIN="${CARGO_TARGET_DIR:-target}/debug/sightline"

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
PASSWORD="promtool-check-$$-password"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

DATABASE_URL="sqlite://$WORK/sightline.db?mode=rwc" \
SIGHTLINE_ADDR="127.0.0.1:$PORT" \
SIGHTLINE_ADMIN_PASSWORD="$PASSWORD" \
SIGHTLINE_LOG=warn \
SIGHTLINE_EVENT_PROCESSING_INTERVAL=1s \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 150); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; echo "the server exited"; exit 1; }
  sleep 0.2
done
curl -fsS "$BASE/healthz" >/dev/null

# gql QUERY [VARIABLES_JSON] -> prints `data` as JSON; fails on errors.
gql() {
  local body vars="${2:-}"
  [ -n "$vars" ] || vars='{}'
  body=$(python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1], "variables": json.loads(sys.argv[2])}))' "$1" "$vars")
  curl -fsS -X POST "$BASE/graphql" -H 'content-type: application/json' \
    ${TOKEN:+-H "authorization: Bearer $TOKEN"} --data "$body" |
    python3 -c 'import json, sys; r = json.load(sys.stdin); sys.exit("GraphQL errors: %s" % r["errors"]) if r.get("errors") else print(json.dumps(r["data"]))'
}

TOKEN=""
TOKEN=$(gql 'mutation($p: String!) { login(input: {username: "admin", password: $p}) { token } }' \
  "{\"p\": \"$PASSWORD\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["login"]["token"])')

# Data: HTTP traffic, tasks, and (where the API has them) events and metrics.
curl -fsS "$BASE/readyz" >/dev/null
curl -sS -o /dev/null "$BASE/no/such/path" || true
gql 'mutation { enqueueTask(input: {taskType: "monitoring_event_processing"}) { id } }' >/dev/null
LATER=$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)
gql 'mutation($at: DateTime!) { enqueueTask(input: {taskType: "monitoring_data_retention", runAfter: $at}) { id } }' \
  "{\"at\": \"$LATER\"}" >/dev/null

# Let the workers run the due task.
for _ in $(seq 1 100); do
  pending=$(gql '{ taskStats { pending running } }' | python3 -c 'import json, sys; s = json.load(sys.stdin)["taskStats"]; print(s["pending"] + s["running"])')
  [ "$pending" -le 1 ] && break
  sleep 0.1
done

curl -fsS -H "authorization: Bearer $TOKEN" "$BASE/metrics" -D "$WORK/headers" -o "$WORK/metrics.txt"
grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$WORK/headers" || {
  echo "wrong content type:"; cat "$WORK/headers"; exit 1; }
echo "exposition: $(wc -l <"$WORK/metrics.txt") lines, $(grep -c '^# TYPE' "$WORK/metrics.txt") families"

set +e
promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1
status=$?
set -e
if [ "$status" -ne 0 ] || [ -s "$WORK/promtool.out" ]; then
  echo "promtool check metrics failed (status $status):"
  cat "$WORK/promtool.out"
  echo "--- exposition ---"
  cat "$WORK/metrics.txt"
  exit 1
fi
echo "promtool check metrics: OK"
