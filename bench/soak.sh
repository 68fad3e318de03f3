#!/usr/bin/env bash
# Soak benchmark (see bench/soak.rs): a release build of Cubed under steady
# ingest, 1,000 WebSocket dashboards (some stop reading) and hostile requests.
#   bench/soak.sh [--minutes 10] [--clients 1000] [--stalled 100] [--rate 5000]
set -euo pipefail
cd "$(dirname "$0")/.."
# 1,000 dashboards, 100 live streams and 400 held connections need more
# descriptors than the usual 1,024, in this process and in the server.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec cargo bench --bench soak -- "$@"
