//! A real `influxd` (InfluxDB 1.x, Debian package `influxdb`) for tests and benchmarks.
//!
//! [`Influxd::start`] runs one on free loopback ports with a throwaway directory and a
//! generated config (reporting, the `_internal` monitor store, the HTTP access log, continuous
//! queries and retention enforcement off; `inmem` index), and waits for `/ping` with a deadline.
//! It is killed when the [`Influxd`] is dropped, and, through `PR_SET_PDEATHSIG`, when the test
//! process dies in any way. [`Influxd::kill`] and [`Influxd::restart`] take a server of one's own
//! down (`SIGKILL`, as a crash would) and bring it back on the same ports with the same data. [`shared`] is one server for the whole test binary; tests keep
//! apart by using their own database ([`Influxd::unique_database`]).
//!
//! A missing `influxd` fails the test with instructions; it never skips. Set `INFLUXD` to use a
//! binary outside `PATH`.
//!
//! Also used by `benches/influx.rs` (through `#[path]`), so it depends only on std, `libc`,
//! `tempfile`, `reqwest`, `serde_json`, `url` and `dms`; each of the two uses a different part.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use dms::config::{InfluxApi, InfluxConfig};

/// How long `influxd` may take to answer `/ping` after it starts.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// What to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `[http] auth-enabled`.
    pub auth: bool,
}

/// A running `influxd`, killed on drop.
pub struct Influxd {
    child: Child,
    /// Whether `child` has been killed and reaped (by [`Influxd::kill`]).
    killed: bool,
    binary: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

static SHARED: OnceLock<Influxd> = OnceLock::new();

/// The server shared by every test of this binary. Statics are never dropped, so it is stopped
/// and its directory removed by an `atexit` handler (and killed by `PR_SET_PDEATHSIG` if the
/// process dies without running it).
pub fn shared() -> &'static Influxd {
    SHARED.get_or_init(|| {
        let server = Influxd::start(Options::default());
        // SAFETY: registers a plain `extern "C" fn` with no preconditions.
        unsafe { libc::atexit(stop_shared) };
        server
    })
}

extern "C" fn stop_shared() {
    if let Some(s) = SHARED.get() {
        let pid = s.child.id() as libc::pid_t;
        // SAFETY: plain syscalls on the pid of a child this process spawned and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let _ = std::fs::remove_dir_all(s.dir.path());
    }
}

impl Influxd {
    /// Starts a server, panicking with the reason (and the server's log) when it cannot.
    pub fn start(options: Options) -> Influxd {
        let binary = find_binary();
        let mut last_error = String::new();
        // A port picked as free can be taken before influxd binds it: try a few times.
        for _ in 0..3 {
            match Influxd::try_start(&binary, options) {
                Ok(s) => return s,
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start {}: {last_error}", binary.display());
    }

    fn try_start(binary: &Path, options: Options) -> Result<Influxd, String> {
        let dir = tempfile::Builder::new()
            .prefix("dms-influxd-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let (http, rpc) = free_ports()?;
        let config = dir.path().join("influxdb.conf");
        std::fs::write(&config, config_text(dir.path(), http, rpc, options))
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], http));
        let child = spawn_and_wait(binary, dir.path(), addr)?;
        Ok(Influxd {
            child,
            killed: false,
            binary: binary.to_path_buf(),
            url: format!("http://{addr}"),
            addr,
            dir,
        })
    }

    /// Kills the server with `SIGKILL` (no shutdown: what a crash or power cut does to the
    /// process) and waits until it is gone. Its data directory stays for [`Influxd::restart`].
    pub fn kill(&mut self) {
        if !self.killed {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.killed = true;
        }
    }

    /// Whether the server is running (not [`Influxd::kill`]ed).
    pub fn is_running(&self) -> bool {
        !self.killed
    }

    /// Starts the server again (killing it first if it runs) on the same ports, with the same
    /// configuration and data, and waits for `/ping`. Panics when it cannot, with its log.
    pub fn restart(&mut self) {
        self.kill();
        match spawn_and_wait(&self.binary, self.dir.path(), self.addr) {
            Ok(child) => {
                self.child = child;
                self.killed = false;
            }
            Err(e) => panic!("cannot restart {}: {e}", self.binary.display()),
        }
    }

    /// The process id (for CPU accounting in benchmarks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A database name no other test of this process uses.
    pub fn unique_database(&self, prefix: &str) -> String {
        format!("{prefix}_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed))
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
            timeout_s: 30,
        }
    }

    /// Runs InfluxQL with a plain HTTP client, independent of the store under test, and returns
    /// InfluxDB's JSON answer. Panics on transport errors.
    pub async fn raw_query(&self, database: &str, q: &str) -> serde_json::Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/query", self.url))
            .query(&[("db", database), ("epoch", "s")])
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("q={}", urlencode(q)))
            .send()
            .await
            .expect("raw query");
        resp.json().await.expect("raw query answer")
    }

    /// Posts a line-protocol body with a plain HTTP client; returns the status and body.
    pub async fn raw_write(&self, database: &str, body: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .post(format!("{}/write", self.url))
            .query(&[("db", database), ("precision", "s")])
            .body(body.to_string())
            .send()
            .await
            .expect("raw write");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `binary` with the configuration in `dir` (appending to its log) and waits until it
/// answers `/ping` on `addr`.
fn spawn_and_wait(binary: &Path, dir: &Path, addr: SocketAddr) -> Result<Child, String> {
    let log_path = dir.join("influxd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("log file: {e}"))?;
    let log2 = log.try_clone().map_err(|e| format!("log file: {e}"))?;
    let mut cmd = Command::new(binary);
    cmd.arg("-config")
        .arg(dir.join("influxdb.conf"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    let mut child = spawn_supervised(cmd).map_err(|e| format!("spawn: {e}"))?;
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "influxd exited with {status}; its log:\n{}",
                read_log(&log_path)
            ));
        }
        if ping(addr) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "influxd did not answer /ping within {START_DEADLINE:?}; its log:\n{}",
                read_log(&log_path)
            ));
        }
        // Polling interval while waiting for the deadline, not a fixed wait.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn find_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("INFLUXD") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("influxd"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "influxd not found on PATH: the InfluxDB tests need a real InfluxDB 1.x server. \
             Install it (Debian/Ubuntu: `apt-get install influxdb`) or set INFLUXD to its path"
        )
    })
}

/// Two free loopback ports (HTTP and the RPC bind address), found by binding port 0.
fn free_ports() -> Result<(u16, u16), String> {
    let a = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    let b = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string());
    Ok((port(&a)?, port(&b)?))
}

/// The configuration of a throwaway `influxd` (also used by `influxd_node.rs`).
pub fn config_text(dir: &Path, http: u16, rpc: u16, options: Options) -> String {
    let d = dir.display();
    format!(
        r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"

[meta]
  dir = "{d}/meta"
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  index-version = "inmem"
  query-log-enabled = false

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"#,
        auth = options.auth
    )
}

/// Whether `GET /ping` answers 204.
pub fn ping(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 204"
}

fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// Spawns `cmd` so that it is killed when this process dies, however it dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the process, and
/// test threads come and go; so every server is forked by one thread that lives as long as the
/// process.
fn spawn_supervised(mut cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("influxd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}
