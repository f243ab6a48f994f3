#!/usr/bin/env bash
# The CI version of the soak test (scripts/soak.sh): 60 seconds on the debug
# build with 1,000 live subscribers, printing RSS every 10 s (read every
# 2 s). Fails on any error or missed live delivery, and on RSS growth after
# warm-up above 50 %.
# The soak's own bound is 10 % over 10 minutes; a 60 s run on the debug build
# is still filling caches and buffers after its 15-s warm-up (8.8 % and 20 %
# seen on two runs), so here the bound only catches a gross leak. Run
# scripts/soak.sh for the real figure.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-60} \
SOAK_SAMPLE_SECS=${SOAK_SAMPLE_SECS:-10} \
SOAK_PROFILE=${SOAK_PROFILE:-debug} \
SOAK_MAX_GROWTH=${SOAK_MAX_GROWTH:-50} \
SOAK_RSS_EVERY=${SOAK_RSS_EVERY:-2} \
  exec bash scripts/soak.sh
