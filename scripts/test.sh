#!/usr/bin/env bash
# Runs every test of DMS on a fresh machine: installs what the tests need (InfluxDB 1.x for the
# real-influxd tests, libfaketime for the scenario), then checks formatting and lints, then runs
# `cargo test` and the scenario's smoke mode.
# Usage: ./scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v influxd >/dev/null 2>&1; then
  echo "==> installing influxdb (Debian package) for the InfluxDB tests"
  as_root apt-get update -qq
  # The package must not start a system service: tests start their own influxd.
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq influxdb >/dev/null
fi
influxd version

# The scenario runner (tests/scenario) runs `dms serve` on a simulated clock with libfaketime.
if ! ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 && [ -z "${DMS_FAKETIME_LIB:-}" ]; then
  echo "==> installing libfaketime for the scenario runner"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq libfaketime >/dev/null
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
# `--all-targets` leaves out test targets with `test = false` (the scenario runner): name it.
cargo clippy --all-targets --test scenario --quiet -- -D warnings

echo "==> cargo test"
cargo test "$@"

echo "==> scenario, smoke mode: a compressed week of faults against dms serve (tests/scenario)"
DMS_SCENARIO=smoke cargo test --test scenario

echo "==> read API against a live dms serve (backtest example, pyarrow round trips, schemathesis)"
./scripts/read_api_check.sh target/debug/dms
./scripts/dashboard_check.sh target/debug/dms
