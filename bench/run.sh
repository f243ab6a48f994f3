#!/usr/bin/env bash
# Ingest and query benchmarks of issue 3: builds the release server and the
# bench tool, then measures on SQLite (a fresh temporary file) and on a fresh
# PostgreSQL database (created and dropped here), including psql COPY of the
# same rows into the same table as the ceiling for batch ingest.
#
#   bench/run.sh                      # both backends, full run (~10 minutes)
#   BENCH_BACKENDS=sqlite bench/run.sh --only batch,single --levels 16
#   BENCH_PG_URL=postgres://user@host/postgres bench/run.sh
#
# Subscriber fan-out (issue 7), three replicas on PostgreSQL:
#   BENCH_BACKENDS=postgresql bench/run.sh --only fanout --replicas 3 --subscribers 1000,10000
#
# Extra arguments go to every `sightline-bench` run (see --help). Results are
# printed and written as JSON to $BENCH_OUT (default target/bench).
set -euo pipefail
# Fan-out holds one socket per subscriber on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$(dirname "$0")/.."

PG_BASE=${BENCH_PG_URL:-postgres://postgres@127.0.0.1/postgres}
OUT=${BENCH_OUT:-target/bench}
BACKENDS=${BENCH_BACKENDS:-sqlite postgresql}

cargo build --release -q -p sightline -p sightline-bench
mkdir -p "$OUT"
echo "machine: $(nproc) cores, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"

cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c" || true; done' EXIT

for backend in $BACKENDS; do
  case "$backend" in
    sqlite)
      dir=$(mktemp -d)
      cleanup+=("rm -rf '$dir'")
      target/release/sightline-bench --database-url "sqlite://$dir/bench.db?mode=rwc" \
        --work-dir "$OUT" --out "$OUT/sqlite.json" "$@"
      ;;
    postgresql)
      db="sightline_bench_$(date +%s)_$$"
      url="${PG_BASE%/*}/$db"
      psql "$PG_BASE" -qc "CREATE DATABASE $db"
      cleanup+=("psql '$PG_BASE' -qc 'DROP DATABASE IF EXISTS $db WITH (FORCE)'")
      target/release/sightline-bench --database-url "$url" --psql-url "$url" \
        --work-dir "$OUT" --out "$OUT/postgresql.json" "$@"
      ;;
    *) echo "unknown backend $backend (use sqlite and/or postgresql)"; exit 2 ;;
  esac
done
