#!/usr/bin/env bash
# Fuzzes the GraphQL API with Schemathesis (from PyPI, in a venv under
# target/): starts the server (debug build) on a free port with a fresh
# SQLite database, then runs Schemathesis in GraphQL mode twice, once with an
# admin token and once with a user token, each bounded by FUZZ_SECONDS
# (default 40). A failure is any 5xx, any GraphQL error without a stable
# `extensions.code` (.ci/fuzz_hooks.py), or a crash. Reproduction output
# (the failing requests as a VCR cassette and JUnit) is kept in
# target/fuzz-report/ and the server log in target/fuzz-report/server.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-40}
TARGET="${CARGO_TARGET_DIR:-target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
VENV="$TARGET/fuzz-venv"
REPORT="$TARGET/fuzz-report"
SCHEMATHESIS_VERSION=4.32.5

if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    if command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null || {
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; }
    fi
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q --bin sightline
BIN="$TARGET/debug/sightline"

rm -rf "$REPORT"
mkdir -p "$REPORT"
. scripts/scratch-server.sh
PASSWORD="fuzz-admin-$$-password"

DATABASE_URL="sqlite://$WORK/sightline.db?mode=rwc" \
SIGHTLINE_ADDR="127.0.0.1:$PORT" \
SIGHTLINE_ADMIN_PASSWORD="$PASSWORD" \
SIGHTLINE_LOG=warn \
SIGHTLINE_LOGIN_MAX_FAILURES=1000000 \
NO_COLOR=1 \
  "$BIN" >"$REPORT/server.log" 2>&1 &
SERVER_PID=$!
wait_ready /readyz "$REPORT/server.log"

gql() { # token query variables-json
  local auth=()
  [ -n "$1" ] && auth=(-H "authorization: Bearer $1")
  curl -fsS "$BASE/graphql" -H 'content-type: application/json' "${auth[@]}" \
    --data "$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "variables": json.loads(sys.argv[2])}))' "$2" "$3")"
}
field() { python3 -c 'import json,sys; v=json.load(sys.stdin); 
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"; }

LOGIN='mutation($u: String!, $p: String!) { login(input: {username: $u, password: $p}) { token } }'
ADMIN_TOKEN=$(gql "" "$LOGIN" "{\"u\": \"admin\", \"p\": \"$PASSWORD\"}" | field data.login.token)
USER_PASSWORD="fuzz-user-$$-password"
gql "$ADMIN_TOKEN" 'mutation($i: CreateUserInput!) { createUser(input: $i) { id } }' \
  "{\"i\": {\"username\": \"fuzzuser\", \"email\": \"fuzz@example.com\", \"password\": \"$USER_PASSWORD\", \"role\": \"USER\"}}" >/dev/null
USER_TOKEN=$(gql "" "$LOGIN" "{\"u\": \"fuzzuser\", \"p\": \"$USER_PASSWORD\"}" | field data.login.token)
# Some data for the queries to find.
gql "$ADMIN_TOKEN" 'mutation { createEvent(input: {eventType: LOG, source: "fuzz", tags: {a: 1}}) { id }
  createIncident(input: {title: "fuzz"}) { id }
  submitMetric(input: {name: "fuzz_metric", metricType: GAUGE, value: 1}) { id } }' '{}' >/dev/null

# Mutations that would end the fuzzer's own session or lock it out.
EXCLUDE='^Mutation\.(logout|logoutAll|changePassword|setUserRole|deactivateUser|forcePasswordReset)$'

status=0
for role in admin user; do
  if [ "$role" = admin ]; then TOKEN=$ADMIN_TOKEN; else TOKEN=$USER_TOKEN; fi
  echo "==> schemathesis (GraphQL, $role token, ${FUZZ_SECONDS}s)"
  # Run from the report directory: Schemathesis keeps its cache in the
  # working directory.
  (cd "$REPORT" && SCHEMATHESIS_HOOKS=fuzz_hooks PYTHONPATH="$ROOT/.ci" \
    "$VENV/bin/schemathesis" --no-color run "$BASE/graphql" \
      -H "Authorization: Bearer $TOKEN" \
      --checks graphql_errors_have_codes \
      --exclude-name-regex "$EXCLUDE" \
      --max-time "$FUZZ_SECONDS" \
      --request-timeout 30 \
      --report junit,vcr --report-dir "$REPORT/$role" \
      --output-truncate false) \
    | tee "$REPORT/$role.txt" || status=$?
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server crashed:"; tail -50 "$REPORT/server.log"; exit 1; }
done
if [ "$status" != 0 ]; then
  echo "fuzzing found failures; reproduction output in $REPORT/ (see the cassettes and $REPORT/server.log)"
  exit "$status"
fi
echo "fuzzing passed; reports in $REPORT/"
