//! Alerts end to end: events published on the bus reach a local HTTP receiver in the Slack,
//! DingTalk (signature checked on the receiver side) and webhook shapes, and a local SMTP sink
//! by email; repeats are throttled, clears send one recovery; a dead receiver is retried and
//! holds up no one else.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use dms::alert::{Alerts, RetryPolicy};
use dms::config::{AlertConfig, Config};
use dms::events::{Event, EventBus};

use crate::helpers::receiver::Receiver;
use crate::helpers::smtp_sink::SmtpSink;

const DEADLINE: Duration = Duration::from_secs(20);

/// Fast retries, so a test waits milliseconds between attempts, not seconds.
const FAST: RetryPolicy = RetryPolicy {
    min_backoff: Duration::from_millis(10),
    max_backoff: Duration::from_millis(50),
};

/// Decodes `alerts:` items (one YAML flow mapping each) as the service would.
fn alerts(items: &[String]) -> Vec<AlertConfig> {
    let yaml = format!(
        "alerts:\n{}",
        items
            .iter()
            .map(|i| format!("  - {i}\n"))
            .collect::<String>()
    );
    Config::from_yaml(&yaml, vec![])
        .unwrap_or_else(|e| panic!("{e}"))
        .alerts
}

fn job_failed(task: &str) -> Event {
    Event::JobFailed {
        job_id: 42,
        task: task.into(),
        message: "yahoo: 429 too many requests".into(),
    }
}

fn lag(node: &str, changes: u64) -> Event {
    Event::BackupLag {
        node: node.into(),
        changes,
        seconds: 10,
    }
}

/// The DingTalk secret: PATH, which every process has, so no test needs `set_var`.
fn path_secret() -> String {
    std::env::var("PATH").expect("PATH is set")
}

/// What a DingTalk robot checks: `sign` is base64(HMAC-SHA256(secret, "{timestamp}\n{secret}")).
fn dingtalk_signature_is_valid(secret: &str, timestamp: &str, sign: &str) -> bool {
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(sign) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, format!("{timestamp}\n{secret}").as_bytes(), &tag).is_ok()
}

#[tokio::test]
async fn slack_dingtalk_and_webhook_channels_each_get_their_own_shape() {
    let rx = Receiver::start(r#"{"errcode":0,"errmsg":"ok"}"#).await;
    let configs = alerts(&[
        format!("{{ kind: slack, url: {:?} }}", rx.url("/slack")),
        format!(
            "{{ kind: dingtalk, url: {:?}, secret_env: PATH }}",
            rx.url("/robot/send?access_token=tok123")
        ),
        format!(
            "{{ kind: webhook, url: {:?}, events: [job_failed] }}",
            rx.url("/hook")
        ),
    ]);
    let bus = EventBus::new();
    let service = Alerts::start_with(&configs, &bus, FAST, None).unwrap();
    bus.publish(job_failed("update <us>"));
    let got = rx.wait_ok(3, DEADLINE).await;
    let by_path = |p: &str| got.iter().find(|r| r.path == p).unwrap().clone();

    let slack = by_path("/slack");
    let text = slack.body["text"].as_str().unwrap();
    assert_eq!(slack.body.as_object().unwrap().len(), 1, "{}", slack.body);
    assert!(
        text.starts_with("[DMS] ALERT job_failed update &lt;us&gt;:"),
        "{text}"
    );
    assert!(text.contains("yahoo: 429 too many requests"), "{text}");

    let ding = by_path("/robot/send");
    assert_eq!(ding.body["msgtype"], "text");
    let content = ding.body["text"]["content"].as_str().unwrap();
    assert!(content.contains("job 42 (update <us>) failed"), "{content}");
    assert_eq!(ding.query["access_token"], "tok123");
    let ts = &ding.query["timestamp"];
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ts_ms: i64 = ts.parse().unwrap();
    assert!(
        (now_ms - ts_ms).abs() < 60_000,
        "timestamp {ts} is not now ({now_ms})"
    );
    assert!(
        dingtalk_signature_is_valid(&path_secret(), ts, &ding.query["sign"]),
        "bad signature {:?}",
        ding.query
    );
    assert!(!dingtalk_signature_is_valid(
        "SECwrong",
        ts,
        &ding.query["sign"]
    ));

    let hook = by_path("/hook");
    assert_eq!(hook.body["source"], "dms");
    assert_eq!(hook.body["status"], "firing");
    assert_eq!(hook.body["event"], "job_failed");
    assert_eq!(hook.body["subject"], "update <us>");
    assert_eq!(hook.body["details"]["event"], "job_failed");
    assert_eq!(hook.body["details"]["job_id"], 42);

    let stats = service.stats();
    assert_eq!(stats.iter().map(|s| s.sent).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!(stats[1].channel, "alerts[1] dingtalk");
}

#[tokio::test]
async fn a_dingtalk_refusal_is_given_up_at_once_not_retried() {
    let rx = Receiver::start(r#"{"errcode":310000,"errmsg":"sign not match"}"#).await;
    let configs = alerts(&[format!(
        "{{ kind: dingtalk, url: {:?} }}",
        rx.url("/robot/send?access_token=t")
    )]);
    let bus = EventBus::new();
    let service = Alerts::start_with(&configs, &bus, FAST, None).unwrap();
    bus.publish(job_failed("update"));
    let start = tokio::time::Instant::now();
    while service.stats()[0].given_up == 0 {
        assert!(start.elapsed() < DEADLINE, "{:?}", service.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = &service.stats()[0];
    assert_eq!((s.sent, s.failed_attempts, s.given_up), (0, 1, 1));
    assert_eq!(rx.received().len(), 1);
    // Unsigned when no secret_env is set.
    assert!(!rx.received()[0].query.contains_key("sign"));
}

#[tokio::test]
async fn an_email_reaches_the_smtp_sink_with_its_login() {
    let sink = SmtpSink::start().await;
    let configs = alerts(&[format!(
        "{{ kind: email, smtp: \"smtp://alerts@{}\", password_env: PATH, from: \"DMS <dms@example.com>\", to: [ops@example.com, oncall@example.com], events: [backup_lag] }}",
        sink.addr
    )]);
    let bus = EventBus::new();
    let _service = Alerts::start_with(&configs, &bus, FAST, None).unwrap();
    bus.publish(job_failed("update")); // not asked for
    bus.publish(lag("b1", 50_000));
    let mails = sink.wait(1, DEADLINE).await;
    let m = &mails[0];
    assert_eq!(m.from, "dms@example.com");
    assert_eq!(m.to, ["ops@example.com", "oncall@example.com"]);
    assert_eq!(m.login, Some(("alerts".to_string(), path_secret())));
    assert!(
        m.data.contains("Subject: [DMS] ALERT backup_lag b1"),
        "{}",
        m.data
    );
    assert!(m.data.contains("50000 change(s) behind"), "{}", m.data);
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn repeats_within_the_throttle_send_one_alert_and_a_clear_one_recovery() {
    let rx = Receiver::start("ok").await;
    let configs = alerts(&[format!(
        "{{ kind: webhook, url: {:?}, throttle_s: 3600, backup_lag_changes: 1000 }}",
        rx.url("/hook")
    )]);
    let bus = EventBus::new();
    let service = Alerts::start_with(&configs, &bus, FAST, None).unwrap();
    bus.publish(Event::BackupCaughtUp { node: "b1".into() }); // nothing raised: nothing sent
    bus.publish(lag("b1", 500)); // under the threshold: a clear, nothing sent
    for changes in [5_000, 6_000, 7_000, 8_000, 9_000] {
        bus.publish(lag("b1", changes));
    }
    bus.publish(lag("b1", 10)); // back under the threshold: recovery
    bus.publish(Event::BackupCaughtUp { node: "b1".into() }); // already clear: nothing
    bus.publish(lag("b2", 5_000)); // a fence: another condition, sent last
    let got = rx.wait_ok(3, DEADLINE).await;
    let summary: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.body["status"].as_str().unwrap().to_string(),
                r.body["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("firing".to_string(), "b1".to_string()),
            ("resolved".to_string(), "b1".to_string()),
            ("firing".to_string(), "b2".to_string()),
        ]
    );
    assert_eq!(got[0].body["details"]["changes"], 5_000);
    assert_eq!(got[1].body["suppressed"], 4);
    assert_eq!(rx.received().len(), 3);
    assert_eq!(service.stats()[0].suppressed, 4);
}

#[tokio::test]
async fn a_condition_raised_before_a_restart_is_resolved_after_it_and_not_raised_again() {
    let rx = Receiver::start("ok").await;
    let state = tempfile::tempdir().unwrap();
    let configs = alerts(&[format!(
        "{{ kind: webhook, url: {:?}, throttle_s: 3600 }}",
        rx.url("/hook")
    )]);
    let bus = EventBus::new();
    let first = Alerts::start_with(&configs, &bus, FAST, Some(state.path())).unwrap();
    bus.publish(job_failed("update"));
    bus.publish(job_failed("verify"));
    rx.wait_ok(2, DEADLINE).await;
    drop(first); // the process ends (or is killed) with both conditions raised

    let bus = EventBus::new();
    let second = Alerts::start_with(&configs, &bus, FAST, Some(state.path())).unwrap();
    bus.publish(job_failed("verify")); // still failing: a repeat within the throttle
    bus.publish(Event::JobSucceeded {
        job_id: 43,
        task: "update".into(),
    });
    bus.publish(lag("fence", 5_000_000)); // another condition, sent last
    let got = rx.wait_ok(4, DEADLINE).await;
    let summary: Vec<(&str, &str)> = got
        .iter()
        .map(|r| {
            (
                r.body["status"].as_str().unwrap(),
                r.body["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("firing", "update"),
            ("firing", "verify"),
            ("resolved", "update"),
            ("firing", "fence"),
        ]
    );
    assert_eq!(second.stats()[0].suppressed, 1);
    assert_eq!(rx.received().len(), 4);
}

#[tokio::test]
async fn a_dead_receiver_is_retried_and_holds_up_neither_other_channels_nor_the_publisher() {
    // A port with nothing behind it: connection refused until a receiver binds it.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let healthy = Receiver::start("ok").await;
    let configs = alerts(&[
        format!(
            "{{ kind: webhook, url: \"http://127.0.0.1:{dead_port}/hook\", retries: 1000, timeout_s: 2 }}"
        ),
        format!("{{ kind: slack, url: {:?} }}", healthy.url("/slack")),
    ]);
    let bus = EventBus::new();
    let service = Alerts::start_with(&configs, &bus, FAST, None).unwrap();
    for i in 0..10 {
        bus.publish(job_failed(&format!("task{i}")));
    }
    // A flood: publish returns at once, the repeats are throttled.
    for _ in 0..5_000 {
        bus.publish(job_failed("task0"));
    }
    healthy.wait_ok(10, DEADLINE).await;
    let start = tokio::time::Instant::now();
    while service.stats()[0].failed_attempts < 3 {
        assert!(start.elapsed() < DEADLINE, "{:?}", service.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(service.stats()[0].sent, 0);

    // The receiver comes up, answers 500 twice, then accepts.
    let revived = Receiver::start_on(dead_port, "ok").await;
    revived.fail_next(&[500, 500]);
    let ok = revived.wait_ok(10, DEADLINE).await;
    let statuses: Vec<u16> = revived.received().iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], [500, 500, 200]);
    let subjects: Vec<&str> = ok
        .iter()
        .map(|r| r.body["subject"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("task{i}")).collect();
    assert_eq!(subjects, expected, "delivered in order, each once");
    // The channel counts a delivery after reading its answer: wait for the tenth.
    let start = tokio::time::Instant::now();
    while service.stats()[0].sent < 10 {
        assert!(start.elapsed() < DEADLINE, "{:?}", service.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = &service.stats()[0];
    assert_eq!((s.sent, s.given_up, s.dropped), (10, 0, 0));
    assert!(s.failed_attempts >= 5, "{s:?}");
    assert_eq!(healthy.received().len(), 10);
}
