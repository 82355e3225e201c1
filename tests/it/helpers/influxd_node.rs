//! A real `influxd` that a test can stop and start again on the same ports and data: a backup
//! node going down and coming back.
//!
//! A minimal stand-in until `influxd.rs` has its own kill/restart (being added in another
//! branch): it starts the same binary with the same kind of throwaway config, but keeps the
//! process handle so that [`NodeInfluxd::stop`] can `SIGKILL` it (what a crash does) and
//! [`NodeInfluxd::start_again`] can bring it back with its data. The child gets
//! `PR_SET_PDEATHSIG` against the thread that started it: in these tests that is the test's
//! own thread, which outlives it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dms::config::{InfluxApi, InfluxConfig};

/// A stoppable `influxd`, killed on drop.
pub struct NodeInfluxd {
    child: Option<Child>,
    pub url: String,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl NodeInfluxd {
    pub fn start() -> NodeInfluxd {
        let dir = tempfile::Builder::new()
            .prefix("dms-node-influxd-")
            .tempdir()
            .expect("temp dir");
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let (http, rpc) = (free(), free());
        std::fs::write(
            dir.path().join("influxdb.conf"),
            super::influxd::config_text(dir.path(), http, rpc, super::influxd::Options::default()),
        )
        .expect("write influxdb.conf");
        let addr = SocketAddr::from(([127, 0, 0, 1], http));
        let mut server = NodeInfluxd {
            child: None,
            url: format!("http://{addr}"),
            addr,
            dir,
        };
        server.start_again();
        server
    }

    /// Kills the server (`SIGKILL`) and waits until it is gone and its port refuses.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server on the same ports with the same data, and waits for `/ping`.
    pub fn start_again(&mut self) {
        self.stop();
        let binary = std::env::var_os("INFLUXD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("influxd"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("influxd.log"))
            .expect("log file");
        let mut cmd = Command::new(&binary);
        cmd.arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (install InfluxDB 1.x): {e}",
                binary.display()
            )
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !super::influxd::ping(self.addr) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("influxd exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "influxd did not answer: {}",
                self.log()
            );
            // Polling interval while waiting for the deadline.
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }

    /// A v1 store configuration for `database` on this server.
    pub fn config(&self, database: &str) -> InfluxConfig {
        InfluxConfig {
            url: self.url.clone(),
            api: InfluxApi::V1,
            database: Some(database.to_string()),
            org: None,
            bucket: None,
            username: None,
            password_env: None,
            token_env: None,
            retention_policy: None,
            timeout_s: 10,
        }
    }

    /// Posts line protocol with a plain HTTP client (behind DMS's back); returns the status.
    pub async fn raw_write(&self, database: &str, body: &str) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/write", self.url))
            .query(&[("db", database), ("precision", "s")])
            .body(body.to_string())
            .send()
            .await
            .expect("raw write")
            .status()
            .as_u16()
    }
}

impl Drop for NodeInfluxd {
    fn drop(&mut self) {
        self.stop();
    }
}
