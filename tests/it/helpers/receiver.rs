//! A local HTTP receiver for alert tests: an axum app on `127.0.0.1` that records every POST
//! (path, query, JSON body) and answers from a script: the next queued statuses first, then
//! 200 with a fixed body.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::routing::post;

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Decoded query pairs.
    pub query: HashMap<String, String>,
    pub body: serde_json::Value,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Default)]
struct Script {
    /// Statuses for the next requests, in order.
    next: VecDeque<u16>,
    /// The body of a 200.
    ok_body: String,
    received: Vec<Received>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver on a free port answering `200 ok_body`.
    pub async fn start(ok_body: &str) -> Receiver {
        Receiver::start_on(0, ok_body).await
    }

    /// A receiver on `port` (0: any free port).
    pub async fn start_on(port: u16, ok_body: &str) -> Receiver {
        let script = Arc::new(Mutex::new(Script {
            ok_body: ok_body.to_string(),
            ..Script::default()
        }));
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, script, task }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// Answers the next requests with these statuses (empty bodies), then as before.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.script.lock().unwrap().next.extend(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Waits (polling, up to `deadline`) until `n` requests were answered 200; returns them.
    pub async fn wait_ok(&self, n: usize, deadline: Duration) -> Vec<Received> {
        let start = tokio::time::Instant::now();
        loop {
            let ok: Vec<Received> = self
                .received()
                .into_iter()
                .filter(|r| r.status == 200)
                .collect();
            if ok.len() >= n {
                return ok;
            }
            assert!(
                start.elapsed() < deadline,
                "only {} of {n} deliveries within {deadline:?}: {:#?}",
                ok.len(),
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn record(
    State(script): State<Arc<Mutex<Script>>>,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: String,
) -> (StatusCode, String) {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    let mut s = script.lock().unwrap();
    let status = s.next.pop_front().unwrap_or(200);
    s.received.push(Received {
        path: uri.path().to_string(),
        query,
        body,
        status,
    });
    let text = if status == 200 {
        s.ok_body.clone()
    } else {
        String::new()
    };
    (StatusCode::from_u16(status).unwrap(), text)
}
