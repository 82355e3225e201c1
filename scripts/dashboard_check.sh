#!/usr/bin/env bash
# The dashboard in a real browser (called by scripts/test.sh after read_api_check.sh): starts a
# live `dms serve` with sample data and read + admin tokens, and runs tests/browser in headless
# Debian Chromium driven by playwright-core: the token dialog, the series table, the chart
# canvas, a backfill started from the page (file source, no network) with its progress, and
# screenshots. Installs Chromium (apt) and the test's node modules (npm ci) when missing.
# The server runs on a free port with its own temp data dir and is stopped on exit.
# Screenshots go to target/dashboard-check/; with --update-docs they are also copied to docs/
# (docs/dashboard.png is the README's picture), so a plain run leaves the tree unchanged.
# Usage: scripts/dashboard_check.sh [--update-docs] [path/to/dms]   (default: target/debug/dms)
set -euo pipefail
cd "$(dirname "$0")/.."

update_docs=0
if [ "${1:-}" = "--update-docs" ]; then update_docs=1; shift; fi
DMS=${1:-target/debug/dms}
PY=${PYTHON:-python3}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x "$CHROMIUM" ]; then
  echo "==> installing chromium (Debian package) for the dashboard test"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null 2>&1; then
  echo "==> installing node (Debian package) for the dashboard test"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "==> npm ci in tests/browser (playwright-core, no browser download)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
mkdir -p "$work/import" "$work/files"
cat > "$work/dms.yaml" <<YAML
server: { bind: 127.0.0.1:$port, admin_token_env: DMS_DASH_ADMIN_TOKEN, read_token_env: DMS_DASH_READ_TOKEN }
storage: { data_dir: $work/data }
sources: { files: { dir: $work/files } }
logging: { dir: $work/logs, json: true, level: warn }
YAML

# Yahoo-style CSV exports of weekday bars with a trend and noise. Imported now: eight
# symbols, five years each (NVDA with two impossible bars, which land in quarantine, and a
# three-week hole). In the file source's folder only, for the backfill the test starts from
# the page: sixteen more, twenty years each, so that the job runs long enough to be watched.
"$PY" - "$work" <<'PYCODE'
import datetime as dt, random, sys
random.seed(11)
work = sys.argv[1]
imported = [("AAPL", 75.0), ("NVDA", 60.0), ("0700.HK", 380.0), ("9988.HK", 200.0),
            ("600519.SS", 1100.0), ("BRK.B", 220.0), ("SPY", 320.0), ("GLD", 150.0)]
files = ["MSFT", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "JNJ", "XOM", "WMT", "PG", "KO",
         "PEP", "DIS", "NFLX", "INTC"]
def write(path, sym, p, start, holes=()):
    drift = random.uniform(-0.0002, 0.0009)
    with open(path, "w") as f:
        f.write("Date,Open,High,Low,Close,Adj Close,Volume\n")
        d, n = start, 0
        while d < dt.date(2024, 1, 1):
            if d.weekday() < 5 and not any(a <= d < b for a, b in holes):
                o = p * (1 + random.gauss(0, 0.004))
                c = max(1.0, p * (1 + random.gauss(drift, 0.016)))
                h = max(o, c) * (1 + abs(random.gauss(0, 0.007)))
                l = min(o, c) * (1 - abs(random.gauss(0, 0.007)))
                if sym == "NVDA" and n in (700, 1100):
                    h = min(o, c) * 0.9  # high below open and close: quarantined
                v = int(random.lognormvariate(15, 0.35))
                f.write(f"{d},{o:.4f},{h:.4f},{l:.4f},{c:.4f},{c*0.98:.4f},{v}\n")
                p, n = c, n + 1
            d += dt.timedelta(days=1)
for sym, p in imported:
    holes = [(dt.date(2023, 3, 6), dt.date(2023, 3, 27))] if sym == "NVDA" else []
    write(f"{work}/import/{sym}.csv", sym, p, dt.date(2019, 1, 2), holes)
for sym in files:
    write(f"{work}/files/{sym}.csv", sym, random.uniform(20, 300), dt.date(2004, 1, 2))
PYCODE
for f in "$work"/import/*.csv; do
  "$DMS" import --config "$work/dms.yaml" --path "$f" --interval 1d >/dev/null
done

export DMS_DASH_ADMIN_TOKEN=dash-admin DMS_DASH_READ_TOKEN=dash-read
"$DMS" serve --config "$work/dms.yaml" 2>"$work/serve.log" &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 200); do
  curl -fsS "$base/health" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; echo "dms serve exited"; exit 1; }
  sleep 0.1
done
curl -fsS "$base/health" >/dev/null

shots=target/dashboard-check
mkdir -p "$shots"
echo "==> dashboard in headless $("$CHROMIUM" --version 2>/dev/null | head -1) against $base"
DMS_URL="$base" DMS_READ_TOKEN=dash-read DMS_ADMIN_TOKEN=dash-admin \
  DMS_EXPECT_SYMBOLS="AAPL,NVDA,0700.HK,9988.HK,600519.SS,BRK.B,SPY,GLD" DMS_BACKFILL_SYMBOLS="MSFT,AMZN,GOOGL,META,TSLA,JPM,V,JNJ,XOM,WMT,PG,KO,PEP,DIS,NFLX,INTC" \
  CHROMIUM="$CHROMIUM" SCREENSHOT_DIR="$PWD/$shots" \
  node --test --test-reporter=spec tests/browser/dashboard.test.mjs || { tail -20 "$work/serve.log"; exit 1; }

if [ "$update_docs" = 1 ]; then
  mkdir -p docs
  cp "$shots"/dashboard.png "$shots"/dashboard-dark.png "$shots"/dashboard-narrow.png docs/
  echo "==> screenshots copied to docs/"
fi
