#!/usr/bin/env bash
# Soak test: starts the server on a free port with a fresh database (SQLite
# in a temp dir, or an empty PostgreSQL database given as SOAK_DATABASE_URL),
# then runs examples/soak.rs against it: mixed load (single and batch event
# ingest, metric batches, filtered queries, metric series, incident changes),
# SOAK_SUBSCRIBERS live subscribers (default 1000) and alert rules
# evaluating, for SOAK_SECONDS (default 600), printing RSS and throughput
# every SOAK_SAMPLE_SECS (default 30) and p50/p99 per operation at the end.
# Fails on any error, on missed live deliveries, or on RSS growth after
# warm-up above SOAK_MAX_GROWTH percent (default 10), from RSS read every
# SOAK_RSS_EVERY seconds (default 5): the median just after warm-up against
# the median at the end.
#
#   scripts/soak.sh                          # 10 minutes, release build
#   SOAK_SECONDS=60 SOAK_PROFILE=debug scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_SAMPLE_SECS=${SOAK_SAMPLE_SECS:-30}
SOAK_SUBSCRIBERS=${SOAK_SUBSCRIBERS:-1000}
SOAK_WORKERS=${SOAK_WORKERS:-8}
SOAK_RULES=${SOAK_RULES:-20}
SOAK_MAX_GROWTH=${SOAK_MAX_GROWTH:-10}
SOAK_RSS_EVERY=${SOAK_RSS_EVERY:-5}
SOAK_PROFILE=${SOAK_PROFILE:-release}
TARGET="${CARGO_TARGET_DIR:-target}"

if [ "$SOAK_PROFILE" = release ]; then
  cargo build -q --release --bin sightline --example soak
  DIR="$TARGET/release"
else
  cargo build -q --bin sightline --example soak
  DIR="$TARGET/debug"
fi

. scripts/scratch-server.sh
export SOAK_ADMIN_PASSWORD="soak-admin-$$-password"
LOG="$TARGET/soak-server.log"

DATABASE_URL="${SOAK_DATABASE_URL:-sqlite://$WORK/sightline.db?mode=rwc}" \
SIGHTLINE_ADDR="127.0.0.1:$PORT" \
SIGHTLINE_ADMIN_PASSWORD="$SOAK_ADMIN_PASSWORD" \
SIGHTLINE_LOG="${SOAK_SERVER_LOG:-warn}" \
NO_COLOR=1 \
  "$DIR/sightline" >"$LOG" 2>&1 &
SERVER_PID=$!
wait_ready /readyz "$LOG"

# On SQLite the soak also watches the database file and its write-ahead log.
DB_FILE_ARGS=()
[ -z "${SOAK_DATABASE_URL:-}" ] && DB_FILE_ARGS=(--database-file "$WORK/sightline.db")
status=0
"$DIR/examples/soak" --base "$BASE" --pid "$SERVER_PID" \
  --seconds "$SOAK_SECONDS" --sample-secs "$SOAK_SAMPLE_SECS" \
  --subscribers "$SOAK_SUBSCRIBERS" --workers "$SOAK_WORKERS" --rules "$SOAK_RULES" \
  --max-growth "$SOAK_MAX_GROWTH" --rss-every "$SOAK_RSS_EVERY" "${DB_FILE_ARGS[@]}" || status=$?
kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server died during the soak:"; tail -50 "$LOG"; exit 1; }
if [ "$status" != 0 ]; then
  echo "soak failed; server log: $LOG"
  tail -20 "$LOG"
fi
exit "$status"
