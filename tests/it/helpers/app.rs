//! Running DMS in tests: in-process (`spawn_app`) or as the real binary (`DmsCommand`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dms::app::{App, Services};
use dms::config::Config;
use tokio_util::sync::CancellationToken;

/// A DMS server running in this process on a free port, with its own data directory.
#[allow(dead_code)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub services: Services,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    pub client: reqwest::Client,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The YAML for a test instance: data and logs in `dir`, port 0, extra YAML appended. Extra
/// YAML must not repeat the `server`, `storage` or `logging` sections; set the bind address
/// with [`DmsCommand::with_port`] and other keys with `DMS__*` overrides.
pub fn test_config_yaml(dir: &Path, extra: &str) -> String {
    test_config_yaml_on(dir, 0, extra)
}

fn test_config_yaml_on(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        "server: {{ bind: 127.0.0.1:{port} }}\nstorage: {{ data_dir: {:?} }}\nlogging: {{ dir: {:?}, json: true }}\n{extra}",
        dir.join("data"),
        dir.join("logs")
    )
}

/// Starts an app whose config is the test defaults plus `extra` YAML (which may override
/// sections), with `env` as the only environment overrides.
pub async fn spawn_app_with(extra: &str, env: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = test_config_yaml(dir.path(), extra);
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let config = Config::from_yaml(&yaml, env).unwrap_or_else(|e| panic!("test config: {e}"));
    let app = App::build(config).await.expect("app builds");
    let addr = app.addr();
    let services = app.services().clone();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move { app.run(token).await });
    TestApp {
        addr,
        services,
        dir,
        shutdown,
        client: reqwest::Client::new(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("", &[]).await
}

/// The `dms` binary with a config file in a temp dir.
pub struct DmsCommand {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl DmsCommand {
    pub fn new(extra: &str) -> DmsCommand {
        DmsCommand::with_port(0, extra)
    }

    /// Binds the server (when one is started) to a fixed port, so that CLI commands find it.
    pub fn with_port(port: u16, extra: &str) -> DmsCommand {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("dms.yaml");
        std::fs::write(&config, test_config_yaml_on(dir.path(), port, extra))
            .expect("write config");
        DmsCommand { dir, config }
    }

    /// Starts `dms serve`; the server is killed when the guard drops.
    pub fn serve(&self) -> ChildGuard {
        let child = self
            .command(&["serve"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn dms serve");
        ChildGuard(child)
    }

    /// A command for `args`, with `--config`, run in the temp dir, with no `DMS__*` or token
    /// variables inherited from the test environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dms"));
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("DMS") {
                c.env_remove(k);
            }
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run dms")
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Kills the child process on drop (a failing test must not leave a server behind).
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
