#!/usr/bin/env bash
# Read-API checks against a live `dms serve` (called by scripts/test.sh after `cargo test`):
#   1. examples/backtest.py loads bars into pandas via pyarrow (Arrow and Parquet), checks that
#      arrow, parquet, csv and json give the same values, and runs its backtest;
#   2. schemathesis fuzzes every operation of /openapi.json: no 5xx, no status code, content
#      type or response schema that the document does not declare.
# The server runs on a free port with its own temp data dir and is stopped on exit.
# Usage: scripts/read_api_check.sh [path/to/dms]   (default: target/debug/dms)
set -euo pipefail
cd "$(dirname "$0")/.."

DMS=${1:-target/debug/dms}
PY=${PYTHON:-python3}

echo "==> python deps for the read-API checks (pyarrow, pandas, schemathesis)"
if ! "$PY" -c 'import pyarrow, pandas, schemathesis' >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --disable-pip-version-check pyarrow pandas schemathesis
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
cat > "$work/dms.yaml" <<YAML
server: { bind: 127.0.0.1:$port, admin_token_env: DMS_CHECK_ADMIN_TOKEN, read_token_env: DMS_CHECK_READ_TOKEN }
storage: { data_dir: $work/data }
logging: { dir: $work/logs, json: true, level: warn }
YAML

# Two symbols, three years of weekday bars with a trend and noise, as Yahoo CSV exports.
"$PY" - "$work" <<'PYCODE'
import datetime as dt, math, random, sys
random.seed(7)
for sym, p in [("AAPL", 100.0), ("0700.HK", 300.0)]:
    with open(f"{sys.argv[1]}/{sym}.csv", "w") as f:
        f.write("Date,Open,High,Low,Close,Adj Close,Volume\n")
        d = dt.date(2021, 1, 1)
        while d < dt.date(2024, 1, 1):
            if d.weekday() < 5:
                o = p
                c = max(1.0, p * (1 + random.gauss(0.0004, 0.015)))
                h, l = max(o, c) * 1.01, min(o, c) * 0.99
                f.write(f"{d},{o:.4f},{h:.4f},{l:.4f},{c:.4f},{c*0.98:.4f},{random.randint(1000,9000)}00\n")
                p = c
            d += dt.timedelta(days=1)
PYCODE
"$DMS" import --config "$work/dms.yaml" --path "$work/AAPL.csv" --interval 1d >/dev/null
"$DMS" import --config "$work/dms.yaml" --path "$work/0700.HK.csv" --interval 1d >/dev/null

export DMS_CHECK_ADMIN_TOKEN=check-admin DMS_CHECK_READ_TOKEN=check-read
"$DMS" serve --config "$work/dms.yaml" 2>"$work/serve.log" &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 200); do
  curl -fsS "$base/health" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; echo "dms serve exited"; exit 1; }
  sleep 0.1
done
curl -fsS "$base/health" >/dev/null

echo "==> examples/backtest.py against $base"
for fmt in arrow parquet; do
  "$PY" examples/backtest.py --url "$base" --token check-read --symbols AAPL,0700.HK \
    --interval 1d --start 2021-01-01 --format "$fmt" --verify-formats
done

# Twice: with the read token (every read; mutations answer 403) and with the admin token
# (every operation, the mutating ones included).
for token in check-read check-admin; do
  echo "==> schemathesis against $base/openapi.json ($token)"
  "$PY" -m schemathesis.cli run "$base/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-60}" --seed 1 --no-color
done
