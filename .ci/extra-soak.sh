#!/usr/bin/env bash
# The CI version of the soak test (scripts/soak.sh): 60 seconds on the debug
# build with 1,000 live subscribers, sampling RSS every 10 s. Fails on any
# error, missed live delivery or RSS growth after warm-up above 10 %.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-60} \
SOAK_SAMPLE_SECS=${SOAK_SAMPLE_SECS:-10} \
SOAK_PROFILE=${SOAK_PROFILE:-debug} \
  exec bash scripts/soak.sh
