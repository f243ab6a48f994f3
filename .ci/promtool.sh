#!/usr/bin/env bash
# Validates a real Prometheus exposition with Prometheus's own checker:
# installs Debian's `prometheus` package when `promtool` is missing, starts
# the server (debug build) on a free port with a fresh SQLite database, puts
# some data in through the API (tasks, events, an incident, an alert rule,
# metrics of every type with colon names and
# label values that need escaping), fetches /metrics with a bearer token and
# runs `promtool check metrics` on it. Fails if promtool reports anything
# (a parse error or a lint problem) other than its naming-convention note
# on the colon names submitted on purpose (see below).
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

. scripts/scratch-server.sh
PASSWORD="promtool-check-$$-password"

DATABASE_URL="sqlite://$WORK/sightline.db?mode=rwc" \
SIGHTLINE_ADDR="127.0.0.1:$PORT" \
SIGHTLINE_ADMIN_PASSWORD="$PASSWORD" \
SIGHTLINE_LOG=warn \
SIGHTLINE_EVENT_PROCESSING_INTERVAL=1s \
  "$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

wait_ready /healthz "$WORK/server.log"

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

# Stored metrics of every type with tricky names and label values: names
# with colons (valid in the exposition format, reserved by convention for
# recording rules), a leading underscore, a counter whose exposed name gains
# `_total` and collides with a gauge of that name (one of them is left out
# with a comment), and label values with backslashes, quotes, newlines and
# non-ASCII text that must be escaped.
METRICS='[
  {"name": "job:queue_depth:max", "metricType": "GAUGE", "value": 3, "labels": {"queue": "a\\b \"quoted\"\nnext line", "zone": "eu-1"}},
  {"name": "job:queue_depth:max", "metricType": "GAUGE", "value": 5, "labels": {"queue": "plain", "zone": "eu-1"}},
  {"name": "rpc:requests", "metricType": "COUNTER", "value": 2, "labels": {"method": "Get/Ünïcode ✓"}},
  {"name": "rpc:latency_seconds", "metricType": "HISTOGRAM", "value": 0.042, "labels": {"path": "/a\\b"}},
  {"name": "rpc:latency_seconds", "metricType": "HISTOGRAM", "value": 7.5, "labels": {"path": "/a\\b"}},
  {"name": "rpc:payload_bytes", "metricType": "SUMMARY", "value": 512, "labels": {}},
  {"name": "_private_temperature_celsius", "metricType": "GAUGE", "value": -4.5},
  {"name": "jobs_processed", "metricType": "COUNTER", "value": 1},
  {"name": "jobs_processed_total", "metricType": "GAUGE", "value": 9}
]'
gql 'mutation($m: [SubmitMetricInput!]!) { submitMetrics(input: {metrics: $m}) { accepted rejected { index } } }' \
  "{\"m\": $METRICS}" | python3 -c 'import json, sys; r = json.load(sys.stdin)["submitMetrics"]; sys.exit("metrics refused: %s" % r) if r["rejected"] or r["accepted"] != 9 else None'
# An event, an incident (its analysis task) and an alert rule (its evaluation task).
gql 'mutation { createEvent(input: {eventType: LOG, source: "promtool", message: "hello \"there\"", level: "error"}) { id } }' >/dev/null
gql 'mutation { createIncident(input: {title: "promtool check"}) { id } }' >/dev/null
gql 'mutation { createAlertRule(input: {name: "promtool", query: "job:queue_depth:max > 1", evaluationInterval: 1}) { id } }' >/dev/null

# Let the workers run the due task.
for _ in $(seq 1 100); do
  pending=$(gql '{ taskStats { pending running } }' | python3 -c 'import json, sys; s = json.load(sys.stdin)["taskStats"]; print(s["pending"] + s["running"])')
  [ "$pending" -le 2 ] && break
  sleep 0.1
done

curl -fsS -H "authorization: Bearer $TOKEN" "$BASE/metrics" -D "$WORK/headers" -o "$WORK/metrics.txt"
grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$WORK/headers" || {
  echo "wrong content type:"; cat "$WORK/headers"; exit 1; }
echo "exposition: $(wc -l <"$WORK/metrics.txt") lines, $(grep -c '^# TYPE' "$WORK/metrics.txt") families"

for family in job:queue_depth:max rpc:requests_total rpc:latency_seconds rpc:payload_bytes \
  _private_temperature_celsius monitoring_total_events monitoring_active_alerts; do
  grep -q "^# TYPE $family " "$WORK/metrics.txt" || { echo "family $family missing"; cat "$WORK/metrics.txt"; exit 1; }
done

set +e
promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.raw" 2>&1
status=$?
set -e
# promtool's linter reports every metric name containing a colon ("metric
# names should not contain ':'"): a naming convention (colons are for
# recording rules), not a format error. Exactly those lines for the colon
# names submitted above are accepted; any other output (a parse error, any
# other lint problem, a colon complaint about another family) fails.
grep -v -x -E "(job:queue_depth:max|rpc:requests_total|rpc:latency_seconds|rpc:payload_bytes) metric names should not contain ':'" \
  "$WORK/promtool.raw" >"$WORK/promtool.out" || true
colon_lines=$(grep -c "should not contain ':'" "$WORK/promtool.raw" || true)
if [ "$status" -ne 0 ] && [ "$colon_lines" -gt 0 ] && [ ! -s "$WORK/promtool.out" ]; then
  status=0
fi
if [ "$status" -ne 0 ] || [ -s "$WORK/promtool.out" ]; then
  echo "promtool check metrics failed (status $status):"
  cat "$WORK/promtool.out"
  echo "--- exposition ---"
  cat "$WORK/metrics.txt"
  exit 1
fi
echo "promtool check metrics: OK (only the colon-name convention lint for the $colon_lines colon families submitted)"
