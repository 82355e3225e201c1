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

/// The environment overrides of a test instance: `env`, plus the drop folder inside `dir`
/// (never the working directory's `data/import`) unless `env` or the YAML `extra` sets it.
fn test_env(dir: &Path, extra: &str, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !out.iter().any(|(k, _)| k == FILES_DIR_VAR) && !extra.contains("files:") {
        out.push((FILES_DIR_VAR.into(), files_dir(dir).display().to_string()));
    }
    out
}

const FILES_DIR_VAR: &str = "DMS__SOURCES__FILES__DIR";

/// The drop folder (`sources.files.dir`) of a test instance in `dir`.
pub fn files_dir(dir: &Path) -> PathBuf {
    dir.join("import")
}

/// Starts an app whose config is the test defaults plus `extra` YAML (which may override
/// sections), with `env` as the only environment overrides.
pub async fn spawn_app_with(extra: &str, env: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = test_config_yaml(dir.path(), extra);
    let config = Config::from_yaml(&yaml, test_env(dir.path(), extra, env))
        .unwrap_or_else(|e| panic!("test config: {e}"));
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

/// Starts an app like [`spawn_app_with`], but around `primary` instead of the configured store
/// (a store that misbehaves on purpose, wrapped around a real one).
pub async fn spawn_app_on(
    primary: std::sync::Arc<dyn dms::store::Store>,
    extra: &str,
    env: &[(&str, &str)],
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = test_config_yaml(dir.path(), extra);
    let config = Config::from_yaml(&yaml, test_env(dir.path(), extra, env))
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let lock = dms::services::lock_data_dir(&config, "serve").expect("data dir");
    let services = Services::with_primary(config, primary, lock)
        .await
        .expect("services");
    let app = App::from_services(services).await.expect("app builds");
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
    /// Whether the drop folder is set by this helper (the extra YAML did not set one).
    own_files_dir: bool,
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
        let own_files_dir = !extra.contains("files:");
        DmsCommand {
            dir,
            config,
            own_files_dir,
        }
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
        if self.own_files_dir {
            c.env(FILES_DIR_VAR, files_dir(self.dir.path()));
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
