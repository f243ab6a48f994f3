# Sourced by the scripts that run a server of their own (scripts/soak.sh,
# .ci/promtool.sh, .ci/extra-fuzz.sh): a scratch directory `WORK`, a free
# port `PORT` and its `BASE` URL; on exit the server started as `SERVER_PID`
# is stopped and `WORK` removed. `wait_ready PATH LOG` polls `$BASE$PATH`
# for up to 30 s and fails, printing LOG, if the server exits first.
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_ready() {
  local path=$1 log=$2
  for _ in $(seq 1 300); do
    curl -fsS "$BASE$path" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server exited:"; cat "$log"; exit 1; }
    sleep 0.1
  done
  curl -fsS "$BASE$path" >/dev/null
}
