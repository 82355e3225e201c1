//! The `dms` binary end to end: import, read, sync and verify, config check, exit codes.

use crate::helpers::app::{DmsCommand, stderr, stdout};

const YAHOO_CSV: &str = "Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,187.149994,188.440002,183.889999,185.639999,184.938217,82488700
2024-01-03,184.220001,185.880005,183.429993,184.250000,183.553467,58414500
2024-01-04,182.149994,183.089996,180.880005,181.910004,181.222336,71983600
";

#[test]
fn import_then_read_prints_the_same_values_back() {
    let dms = DmsCommand::new("");
    let csv = dms.write("AAPL.csv", YAHOO_CSV);
    let o = dms.run(&[
        "import",
        "--path",
        csv.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3 written"), "{}", stdout(&o));

    let o = dms.run(&[
        "read",
        "--symbols",
        "AAPL",
        "--interval",
        "1d",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "symbol,ts,open,high,low,close,volume
AAPL,2024-01-02T00:00:00Z,187.149994,188.440002,183.889999,185.639999,82488700.0
AAPL,2024-01-03T00:00:00Z,184.220001,185.880005,183.429993,184.25,58414500.0
AAPL,2024-01-04T00:00:00Z,182.149994,183.089996,180.880005,181.910004,71983600.0
"
    );

    let o = dms.run(&[
        "read",
        "--symbols",
        "AAPL",
        "--interval",
        "1d",
        "--format",
        "json",
        "--start",
        "2024-01-03",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["series"]["AAPL"]["ts"],
        serde_json::json!(["2024-01-03T00:00:00Z", "2024-01-04T00:00:00Z"])
    );
    assert_eq!(v["series"]["AAPL"]["close"][1].as_f64(), Some(181.910004));

    let out = dms.dir.path().join("adj.csv");
    let o = dms.run(&[
        "read",
        "--symbols",
        "AAPL",
        "--interval",
        "1d",
        "--adjusted",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(out).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .ends_with(",184.938217,82488700.0"),
        "{text}"
    );
}

#[test]
fn a_malformed_line_fails_the_file_and_writes_nothing_from_it() {
    let dms = DmsCommand::new("");
    let dir = dms.dir.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("a_good.csv"),
        "symbol,ts,open,high,low,close,volume\nGOOD,2024-01-02,1,2,0.5,1.5,10\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b_bad.csv"),
        "symbol,ts,open,high,low,close,volume\nBAD,2024-01-02,1,2,0.5,1.5,10\nBAD,2024-01-03,1,2,0.5,oops,10\n",
    )
    .unwrap();
    let o = dms.run(&[
        "import",
        "--path",
        dir.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: ")
            && last.contains("b_bad.csv:3: close: not a number")
            && !last.contains("oops"),
        "{err}"
    );

    let o = dms.run(&["read", "--symbols", "GOOD,BAD", "--interval", "1d"]);
    let text = stdout(&o);
    assert!(text.contains("GOOD,2024-01-02"), "{text}");
    assert!(!text.contains("BAD,"), "nothing from the bad file: {text}");
}

#[test]
fn invalid_bars_are_quarantined_not_written() {
    let dms = DmsCommand::new("");
    let csv = dms.write(
        "x.csv",
        "symbol,ts,open,high,low,close,volume\nX,2024-01-02,1,2,0.5,1.5,10\nX,2024-01-03,1,1.2,0.5,1.5,10\nX,2024-01-04,1,2,0.5,1.5,-5\nX,2099-01-05,1,2,0.5,1.5,5\n",
    );
    let o = dms.run(&[
        "import",
        "--path",
        csv.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 written, 3 quarantined"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn parquet_files_with_the_generic_columns_import() {
    use dms::domain::{Bar, Interval, SourceKind};
    let bars: Vec<Bar> = (0..500)
        .map(|i| {
            let p = 100.0 + i as f64 / 3.0;
            Bar {
                // 390 minutes a session from 09:30 New York, on 2024-01-02 and 2024-01-03.
                ts: 1_704_205_800 + (i / 390) * 86_400 + (i % 390) * 60,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p + 0.5,
                volume: i as f64,
                adj_close: None,
                source: SourceKind::Files,
            }
        })
        .collect();
    let bytes = dms::format::encode_all(
        dms::format::Format::Parquet,
        Interval::M1,
        false,
        &[("NVDA", &bars)],
    )
    .unwrap();
    let dms = DmsCommand::new("");
    let path = dms.dir.path().join("nvda.parquet");
    std::fs::write(&path, bytes).unwrap();
    let o = dms.run(&[
        "import",
        "--path",
        path.to_str().unwrap(),
        "--interval",
        "1m",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("500 written"), "{}", stdout(&o));
    let o = dms.run(&[
        "read",
        "--symbols",
        "NVDA",
        "--interval",
        "1m",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let closes: Vec<f64> = v["series"]["NVDA"]["close"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(closes, bars.iter().map(|b| b.close).collect::<Vec<_>>());
}

#[test]
fn config_check_lists_every_problem_and_exits_1() {
    let dms = DmsCommand::new(
        "cache: { max_bytes: lots }\nsources: { yahoo: { requests_per_minute: -1, colour: red } }\n",
    );
    let o = dms.run(&["config", "check"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for p in [
        "cache.max_bytes",
        "sources.yahoo.requests_per_minute",
        "sources.yahoo.colour: unknown key",
    ] {
        assert!(err.contains(p), "missing {p} in {err}");
    }
    assert!(err.contains("3 configuration problem(s)"), "{err}");
}

#[test]
fn config_check_shows_overrides_and_never_secrets() {
    let dms = DmsCommand::new("");
    let o = dms
        .command(&["config", "check"])
        .env("DMS_ADMIN_TOKEN", "s3cr3t-admin-token")
        .env("DMS__CACHE__MAX_BYTES", "12345")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("max_bytes: 12345"), "{out}");
    assert!(out.contains("DMS_ADMIN_TOKEN: set (redacted)"), "{out}");
    assert!(!out.contains("s3cr3t") && !stderr(&o).contains("s3cr3t"));
}

#[test]
fn bad_usage_exits_2() {
    let dms = DmsCommand::new("");
    assert_eq!(
        dms.run(&["read", "--symbols", "A B", "--interval", "1d"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        dms.run(&["read", "--symbols", "A", "--interval", "7m"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        dms.run(&[
            "read",
            "--symbols",
            "A",
            "--interval",
            "1d",
            "--start",
            "2024-02-30"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(dms.run(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn import_and_read_work_the_same_on_an_influxdb_primary() {
    let influxd = crate::helpers::influxd::shared();
    let db = influxd.unique_database("cli");
    let primary = format!(
        "{{kind: influxdb, url: \"{}\", api: v1, database: {db}}}",
        influxd.url
    );
    let dms = DmsCommand::new("");
    let csv = dms.write("AAPL.csv", YAHOO_CSV);
    let run = |args: &[&str]| {
        dms.command(args)
            .env("DMS__STORAGE__PRIMARY", &primary)
            .output()
            .unwrap()
    };
    let o = run(&[
        "import",
        "--path",
        csv.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "read",
        "--symbols",
        "AAPL",
        "--interval",
        "1d",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 4, "{}", stdout(&o));
    assert!(
        stdout(&o).contains(
            "AAPL,2024-01-03T00:00:00Z,184.220001,185.880005,183.429993,184.25,58414500.0"
        )
    );
    // The bars really are in InfluxDB, in the schema of DESIGN §6.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v = rt.block_on(influxd.raw_query(
        &db,
        "SELECT count(close) FROM bars WHERE symbol = 'AAPL' AND interval = '1d'",
    ));
    assert_eq!(v["results"][0]["series"][0]["values"][0][1], 3, "{v}");
}

#[tokio::test]
async fn sync_and_verify_run_as_jobs_and_say_what_they_did_per_node() {
    use dms::store::Store;
    let dms = DmsCommand::new("");
    let backup = dms.dir.path().join("b1.db");
    let backups = format!("[{{ name: b1, kind: embedded, path: {backup:?} }}]");
    let run = |args: &[&str]| {
        dms.command(args)
            .env("DMS__STORAGE__BACKUPS", &backups)
            .output()
            .expect("run dms")
    };
    let csv = dms.write("AAPL.csv", YAHOO_CSV);
    let o = run(&[
        "import",
        "--path",
        csv.to_str().unwrap(),
        "--interval",
        "1d",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(&["sync"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("sync succeeded: 1 nodes (0 failed)"), "{out}");
    assert!(
        out.contains("node b1: ") && out.contains("3 bars written"),
        "{out}"
    );
    let node = dms::store::embedded::EmbeddedStore::open(&backup).unwrap();
    let k = crate::helpers::bars::key("AAPL", dms::domain::Interval::D1);
    assert_eq!(
        node.read(&k, dms::domain::TimeRange::ALL)
            .await
            .unwrap()
            .len(),
        3
    );

    let o = run(&["verify", "--node", "b1", "--symbols", "AAPL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("verify succeeded: 1 series, 3 bars checked, 0 break a rule, 0 flagged"),
        "{out}"
    );
    assert!(
        out.contains("node b1: ") && out.contains("0 differ"),
        "{out}"
    );

    let o = run(&["sync", "--node", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no backup node named \"nope\""),
        "{}",
        stderr(&o)
    );
}
