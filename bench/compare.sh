#!/usr/bin/env bash
# Side-by-side benchmark: installs what it needs (Debian's influxdb, DuckDB from
# PyPI) if missing, then runs Cubed, InfluxDB 1.6 and DuckDB on the same events.
#   bench/compare.sh [--events N]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v influxd >/dev/null; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends influxdb
fi
python3 -c 'import duckdb' 2>/dev/null || pip install duckdb
exec cargo bench --bench compare -- "$@"
