#!/usr/bin/env python3
"""A moving-average crossover backtest on bars served by DMS.

Loads bars for many symbols in one request from `GET /api/v1/bars` as Arrow (IPC stream) or
Parquet, straight into pandas through pyarrow, and runs a long/flat crossover per symbol.

    python3 examples/backtest.py --url http://127.0.0.1:11183 --symbols AAPL,MSFT \\
        --interval 1d --start 2020-01-01 --format arrow

`--verify-formats` also loads the same request as Parquet, CSV and JSON and checks that all
four give the same values (used by scripts/test.sh). The token, when the server needs one,
comes from `--token` or `DMS_READ_TOKEN`.
"""

import argparse
import io
import json
import math
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import pandas as pd
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume"]


def fetch(base, params, token=None):
    """The raw body of GET /api/v1/bars; exits with the server's message on an error."""
    url = f"{base.rstrip('/')}/api/v1/bars?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace")
        try:
            body = json.loads(body)["error"]["message"]
        except (ValueError, KeyError):
            pass
        sys.exit(f"error: {e.code}: {body}")


def load(base, params, fmt, token=None):
    """Bars as a long DataFrame (symbol, ts as UTC timestamps, open..volume)."""
    body = fetch(base, {**params, "format": fmt}, token)
    if fmt == "arrow":
        df = pa.ipc.open_stream(body).read_all().to_pandas()
    elif fmt == "parquet":
        df = pq.read_table(io.BytesIO(body)).to_pandas()
    elif fmt == "csv":
        df = pd.read_csv(io.BytesIO(body), dtype={"symbol": str}, keep_default_na=False)
        df["ts"] = pd.to_datetime(df["ts"], utc=True)
    elif fmt == "json":
        doc = json.loads(body)
        frames = []
        for symbol, cols in doc["series"].items():
            f = pd.DataFrame({k: cols[k] for k in COLUMNS[2:]}, dtype="float64")
            f.insert(0, "ts", pd.to_datetime(pd.Series(cols["ts"], dtype=str), utc=True))
            f.insert(0, "symbol", symbol)
            frames.append(f)
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    else:
        raise ValueError(fmt)
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[s, UTC]")
    return df[COLUMNS].reset_index(drop=True)


def backtest(df, fast, slow):
    """Long when the fast moving average of close is above the slow one, flat otherwise;
    trades on the next bar. Returns one row of statistics per symbol."""
    rows = []
    for symbol, g in df.sort_values(["symbol", "ts"]).groupby("symbol", sort=True):
        close = g.set_index("ts")["close"]
        signal = (close.rolling(fast).mean() > close.rolling(slow).mean()).astype(float)
        position = signal.shift(1).fillna(0.0)
        ret = close.pct_change().fillna(0.0) * position
        equity = (1.0 + ret).cumprod()
        drawdown = (equity / equity.cummax() - 1.0).min() if len(equity) else 0.0
        std = ret.std()
        sharpe = ret.mean() / std * math.sqrt(252) if std and std > 0 else 0.0
        rows.append(
            {
                "symbol": symbol,
                "bars": len(close),
                "trades": int((position.diff().abs() > 0).sum()),
                "total_return": float(equity.iloc[-1] - 1.0) if len(equity) else 0.0,
                "sharpe": float(sharpe),
                "max_drawdown": float(drawdown),
            }
        )
    return pd.DataFrame(rows)


def verify_formats(base, params, token):
    """Loads the request in every format and checks the values agree; returns the frame."""
    frames = {f: load(base, params, f, token) for f in ["arrow", "parquet", "csv", "json"]}
    ref = frames["arrow"]
    for fmt, df in frames.items():
        pd.testing.assert_frame_equal(
            df, ref, check_dtype=False, check_exact=True, obj=f"{fmt} vs arrow"
        )
    print(f"formats agree: {len(ref)} bars in arrow, parquet, csv and json")
    return ref


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:11183")
    p.add_argument("--symbols", required=True, help="comma-separated")
    p.add_argument("--interval", default="1d")
    p.add_argument("--start")
    p.add_argument("--end")
    p.add_argument("--format", choices=["arrow", "parquet"], default="arrow")
    p.add_argument("--adjusted", action="store_true")
    p.add_argument("--fast", type=int, default=10)
    p.add_argument("--slow", type=int, default=30)
    p.add_argument("--token", default=os.environ.get("DMS_READ_TOKEN"))
    p.add_argument("--verify-formats", action="store_true")
    a = p.parse_args()
    params = {"symbols": a.symbols, "interval": a.interval, "adjusted": str(a.adjusted).lower()}
    if a.start:
        params["start"] = a.start
    if a.end:
        params["end"] = a.end
    if a.verify_formats:
        verify_formats(a.url, params, a.token)
    df = load(a.url, params, a.format, a.token)
    if df.empty:
        sys.exit("error: no bars in the requested range")
    stats = backtest(df, a.fast, a.slow)
    with pd.option_context("display.width", 120, "display.float_format", "{:.4f}".format):
        print(stats.to_string(index=False))
    if not stats["bars"].sum() == len(df):
        sys.exit("error: bar count mismatch")


if __name__ == "__main__":
    main()
