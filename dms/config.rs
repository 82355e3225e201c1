//! Configuration (DESIGN §2): `config/dms.yaml` plus `DMS__SECTION__KEY` environment overrides.
//!
//! Loading happens in three steps so that *every* problem is reported at once:
//! 1. the YAML file is parsed into a generic tree;
//! 2. each `DMS__A__B=value` variable sets `a.b` in the tree (the value is read as a YAML
//!    scalar or flow collection, so `DMS__CACHE__MAX_BYTES=1000` is a number);
//! 3. a decoder walks the tree field by field, collecting a problem for every unknown key,
//!    wrong type and invalid value instead of stopping at the first.
//!
//! Secrets never live in the config: `*_env` keys name environment variables, read on demand
//! into [`Secret`], whose `Debug` and `Display` print `[redacted]`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::domain::{Interval, Market, Symbol};
use crate::store::meta::UniverseEntry;

/// A secret read from the environment. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads the secret an `*_env` key names; `None` when the key is unset or the variable is
/// unset or empty.
pub fn secret_from_env(var: Option<&str>) -> Option<Secret> {
    let var = var?;
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub replication: ReplicationConfig,
    pub sources: SourcesConfig,
    pub universe: Vec<UniverseEntry>,
    pub history: HistoryConfig,
    pub cache: CacheConfig,
    pub reader: ReaderConfig,
    pub schedule: Vec<ScheduleEntry>,
    pub alerts: Vec<AlertConfig>,
    pub logging: LoggingConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    pub admin_token_env: String,
    pub read_token_env: String,
    /// Largest request body accepted, in bytes (not in DESIGN §2; default 1 MiB).
    pub max_body_bytes: u64,
    /// Largest file `POST /api/v1/import` accepts as an upload (not in DESIGN §2; default
    /// 4 GiB).
    pub max_upload_bytes: u64,
    /// Host names (besides the bind address and `localhost`) that requests may name in their
    /// `Host` header: the guard against DNS rebinding (not in DESIGN §2; default none).
    pub allowed_hosts: Vec<String>,
}

impl ServerConfig {
    pub fn admin_token(&self) -> Option<Secret> {
        secret_from_env(Some(&self.admin_token_env))
    }

    pub fn read_token(&self) -> Option<Secret> {
        secret_from_env(Some(&self.read_token_env))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub primary: StoreConfig,
    pub backups: Vec<NodeConfig>,
}

impl StorageConfig {
    /// The embedded store's file.
    pub fn bars_path(&self) -> PathBuf {
        self.data_dir.join("bars.db")
    }

    /// The metadata database's file.
    pub fn meta_path(&self) -> PathBuf {
        self.data_dir.join("meta.db")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoreConfig {
    Embedded,
    Influxdb(Box<InfluxConfig>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    V1,
    V2,
}

/// An InfluxDB connection (primary or backup). `api: v1` needs `database`; `api: v2` needs
/// `org` and `bucket` (and usually `token_env`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfluxConfig {
    pub url: String,
    pub api: InfluxApi,
    pub database: Option<String>,
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub token_env: Option<String>,
    pub retention_policy: Option<String>,
    /// Request timeout in seconds (not in DESIGN §2; default 30).
    pub timeout_s: u64,
}

impl InfluxConfig {
    pub fn password(&self) -> Option<Secret> {
        secret_from_env(self.password_env.as_deref())
    }

    pub fn token(&self) -> Option<Secret> {
        secret_from_env(self.token_env.as_deref())
    }
}

/// A backup node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeConfig {
    pub name: String,
    pub target: NodeTarget,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NodeTarget {
    Influxdb(InfluxConfig),
    /// Another DMS, pushed to through `POST /api/v1/replication/apply`.
    Dms {
        url: String,
        token_env: Option<String>,
    },
    /// A local embedded store at `path`.
    Embedded {
        path: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ReplicationConfig {
    Primary,
    Replica {
        primary_url: String,
        token_env: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcesConfig {
    pub yahoo: YahooConfig,
    pub futu: FutuConfig,
    pub files: FilesConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct YahooConfig {
    pub base_url: String,
    /// 0 turns the limiter off (benchmarks against a local mock).
    pub requests_per_minute: u32,
    pub timeout_s: u64,
    pub max_retries: u32,
    /// Consecutive refusals (429) after which the source is paused.
    pub pause_after_refusals: u32,
    /// How long a paused source stays paused, in seconds.
    pub pause_s: u64,
    pub user_agent: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rehab {
    None,
    Forward,
    Backward,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FutuConfig {
    pub host: String,
    pub port: u16,
    pub requests_per_30s: u32,
    pub timeout_s: u64,
    pub max_retries: u32,
    pub pause_after_refusals: u32,
    pub pause_s: u64,
    /// Price adjustment asked of OpenD: `none` (default), `forward` or `backward`.
    pub rehab: Rehab,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilesConfig {
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryConfig {
    pub default_start_years: u32,
    pub revision_window_sessions: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheConfig {
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReaderConfig {
    pub max_bars_per_request: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Update,
    Verify,
    Sync,
    Repair,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    pub name: String,
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    pub task: TaskKind,
    #[serde(default)]
    pub markets: Vec<Market>,
    #[serde(default)]
    pub symbols: Vec<Symbol>,
    #[serde(default)]
    pub intervals: Vec<Interval>,
}

fn utc() -> String {
    "UTC".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    pub kind: AlertKind,
    /// Webhook, Slack or DingTalk URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Env var holding a URL or secret that must not appear in the config (e.g. a Slack hook).
    #[serde(default)]
    pub url_env: Option<String>,
    /// For `email`: SMTP server, sender and recipients.
    #[serde(default)]
    pub smtp: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Webhook,
    Slack,
    Dingtalk,
    Email,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggingConfig {
    pub dir: PathBuf,
    pub level: String,
    pub json: bool,
}

/// Every problem found while loading, each prefixed with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems(pub Vec<String>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

impl Config {
    /// Loads `path` with overrides from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigProblems> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigProblems(vec![format!("{}: cannot read: {e}", path.display())]))?;
        Config::from_yaml(&text, std::env::vars())
    }

    /// Parses YAML text with overrides from `env` (pairs of variable name and value; only
    /// `DMS__*` names are used).
    pub fn from_yaml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigProblems> {
        let mut tree: Value = if text.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_saphyr::from_str(text)
                .map_err(|e| ConfigProblems(vec![format!("invalid YAML: {e}")]))?
        };
        if tree.is_null() {
            tree = Value::Object(Map::new());
        }
        let mut d = Decoder::default();
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("DMS__"))
            .collect();
        overrides.sort();
        for (k, v) in overrides {
            apply_override(&mut tree, &k, &v, &mut d.problems);
        }
        let config = decode(&mut d, &tree);
        if d.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigProblems(d.problems))
        }
    }

    /// The defaults of DESIGN §2 (what an empty file gives).
    pub fn default_config() -> Config {
        Config::from_yaml("", std::iter::empty()).expect("defaults are valid")
    }

    /// The resolved configuration as YAML, with the state of each secret (`set` or `unset`),
    /// never its value: what `dms config check` prints.
    pub fn to_redacted_yaml(&self) -> String {
        let mut out =
            serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        let mut secrets = BTreeMap::new();
        let mut note = |var: &Option<String>| {
            if let Some(v) = var {
                let state = if secret_from_env(Some(v)).is_some() {
                    "set (redacted)"
                } else {
                    "unset"
                };
                secrets.insert(v.clone(), state);
            }
        };
        note(&Some(self.server.admin_token_env.clone()));
        note(&Some(self.server.read_token_env.clone()));
        let influx = |s: &StoreConfig| match s {
            StoreConfig::Influxdb(c) => Some((**c).clone()),
            StoreConfig::Embedded => None,
        };
        let mut influxes: Vec<InfluxConfig> = influx(&self.storage.primary).into_iter().collect();
        for b in &self.storage.backups {
            match &b.target {
                NodeTarget::Influxdb(c) => influxes.push(c.clone()),
                NodeTarget::Dms { token_env, .. } => note(token_env),
                NodeTarget::Embedded { .. } => {}
            }
        }
        for c in &influxes {
            note(&c.password_env);
            note(&c.token_env);
        }
        if let ReplicationConfig::Replica { token_env, .. } = &self.replication {
            note(token_env);
        }
        for a in &self.alerts {
            note(&a.url_env);
            note(&a.password_env);
        }
        out.push_str("# secrets (environment variables named by *_env keys):\n");
        for (k, v) in secrets {
            out.push_str(&format!("#   {k}: {v}\n"));
        }
        out
    }
}

/// Sets the key path of `DMS__A__B` in the tree.
fn apply_override(tree: &mut Value, var: &str, raw: &str, problems: &mut Vec<String>) {
    let path: Vec<String> = var["DMS__".len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|p| p.is_empty()) {
        problems.push(format!(
            "{var}: malformed override name (expected DMS__SECTION__KEY)"
        ));
        return;
    }
    // The value is a YAML scalar or flow collection; anything that does not parse is a string.
    let value: Value = serde_saphyr::from_str::<Value>(raw)
        .ok()
        .filter(|v| !v.is_null() || raw.trim() == "null" || raw.trim() == "~")
        .unwrap_or_else(|| Value::String(raw.to_string()));
    let mut node = tree;
    for (i, key) in path.iter().enumerate() {
        if !node.is_object() {
            problems.push(format!("{var}: {} is not a section", path[..i].join(".")));
            return;
        }
        let map = node.as_object_mut().expect("checked");
        if i == path.len() - 1 {
            map.insert(key.clone(), value);
            return;
        }
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Walks the tree, collecting problems.
#[derive(Default)]
struct Decoder {
    problems: Vec<String>,
}

/// A mapping being decoded: remembers which keys were read so the rest can be reported unknown.
struct Section<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    used: Vec<&'static str>,
}

impl Decoder {
    fn section<'a>(&mut self, path: &str, v: Option<&'a Value>) -> Section<'a> {
        let map = match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                self.problems
                    .push(format!("{path}: expected a mapping, found {}", kind(other)));
                None
            }
        };
        Section {
            path: path.to_string(),
            map,
            used: Vec::new(),
        }
    }

    /// Decodes `key` of `s`, or `default` when absent; records a problem (and returns the
    /// default) when present but invalid.
    fn field<T: DeserializeOwned>(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        default: T,
    ) -> T {
        self.opt(s, key).unwrap_or(default)
    }

    fn opt<T: DeserializeOwned>(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<T> {
        s.used.push(key);
        let v = s.map.and_then(|m| m.get(key))?;
        if v.is_null() {
            return None;
        }
        match serde_json::from_value(v.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problems.push(format!("{}{key}: {e}", prefix(&s.path)));
                None
            }
        }
    }

    fn required<T: DeserializeOwned>(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
    ) -> Option<T> {
        let present = s.map.and_then(|m| m.get(key)).is_some_and(|v| !v.is_null());
        if !present {
            s.used.push(key);
            self.problems
                .push(format!("{}{key}: missing", prefix(&s.path)));
            return None;
        }
        self.opt(s, key)
    }

    fn check(&mut self, ok: bool, s: &Section<'_>, key: &str, msg: impl fmt::Display) {
        if !ok {
            self.problems
                .push(format!("{}{key}: {msg}", prefix(&s.path)));
        }
    }

    /// Reports keys of `s` that were never read.
    fn finish(&mut self, s: Section<'_>) {
        if let Some(m) = s.map {
            for k in m.keys() {
                if !s.used.contains(&k.as_str()) {
                    self.problems.push(format!(
                        "{}{k}: unknown key (expected one of: {})",
                        prefix(&s.path),
                        s.used.join(", ")
                    ));
                }
            }
        }
    }

    /// Decodes a list whose items are typed serde structs, one problem per bad item.
    fn list<T: DeserializeOwned>(&mut self, path: &str, v: Option<&Value>) -> Vec<(usize, T)> {
        let items = match v {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.problems
                    .push(format!("{path}: expected a list, found {}", kind(other)));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match serde_json::from_value(item.clone()) {
                Ok(t) => out.push((i, t)),
                Err(e) => self.problems.push(format!("{path}[{i}]: {e}")),
            }
        }
        out
    }
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn decode(d: &mut Decoder, tree: &Value) -> Config {
    let mut root = d.section("", Some(tree));
    let get = |k: &str| tree.get(k);
    root.used.extend([
        "server",
        "storage",
        "replication",
        "sources",
        "universe",
        "history",
        "cache",
        "reader",
        "schedule",
        "alerts",
        "logging",
    ]);

    let mut s = d.section("server", get("server"));
    let server = ServerConfig {
        bind: d.field(&mut s, "bind", "127.0.0.1:11183".parse().expect("valid")),
        admin_token_env: d.field(&mut s, "admin_token_env", "DMS_ADMIN_TOKEN".to_string()),
        read_token_env: d.field(&mut s, "read_token_env", "DMS_READ_TOKEN".to_string()),
        max_body_bytes: d.field(&mut s, "max_body_bytes", 1 << 20),
        max_upload_bytes: d.field(&mut s, "max_upload_bytes", 4 << 30),
        allowed_hosts: d.field(&mut s, "allowed_hosts", Vec::new()),
    };
    d.finish(s);

    let mut s = d.section("storage", get("storage"));
    let data_dir: PathBuf = d.field(&mut s, "data_dir", PathBuf::from("data"));
    s.used.extend(["primary", "backups"]);
    let primary_tree = tree.get("storage").and_then(|x| x.get("primary"));
    let primary = decode_store(d, "storage.primary", primary_tree);
    let mut backups = Vec::new();
    match tree.get("storage").and_then(|x| x.get("backups")) {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(node) = decode_node(d, &format!("storage.backups[{i}]"), item) {
                    backups.push(node);
                }
            }
        }
        Some(other) => d.problems.push(format!(
            "storage.backups: expected a list, found {}",
            kind(other)
        )),
    }
    let mut names: Vec<&str> = backups
        .iter()
        .map(|b: &NodeConfig| b.name.as_str())
        .collect();
    names.sort_unstable();
    for w in names.windows(2) {
        if w[0] == w[1] {
            d.problems
                .push(format!("storage.backups: duplicate node name {:?}", w[0]));
        }
    }
    d.finish(s);
    let storage = StorageConfig {
        data_dir,
        primary,
        backups,
    };

    let mut s = d.section("replication", get("replication"));
    let role: String = d.field(&mut s, "role", "primary".to_string());
    let replication = match role.as_str() {
        "primary" => ReplicationConfig::Primary,
        "replica" => {
            let primary_url = d.required(&mut s, "primary_url").unwrap_or_default();
            ReplicationConfig::Replica {
                primary_url,
                token_env: d.opt(&mut s, "token_env"),
            }
        }
        other => {
            d.problems.push(format!(
                "replication.role: unknown role {other:?} (expected primary or replica)"
            ));
            ReplicationConfig::Primary
        }
    };
    if matches!(replication, ReplicationConfig::Primary) {
        s.used.extend(["primary_url", "token_env"]);
    }
    d.finish(s);

    let srcs = tree.get("sources");
    let mut s = d.section("sources", srcs);
    s.used.extend(["yahoo", "futu", "files"]);
    d.finish(s);
    let mut y = d.section("sources.yahoo", srcs.and_then(|x| x.get("yahoo")));
    let yahoo = YahooConfig {
        base_url: d.field(
            &mut y,
            "base_url",
            "https://query2.finance.yahoo.com".to_string(),
        ),
        requests_per_minute: d.field(&mut y, "requests_per_minute", 60),
        timeout_s: d.field(&mut y, "timeout_s", 20),
        max_retries: d.field(&mut y, "max_retries", 5),
        pause_after_refusals: d.field(&mut y, "pause_after_refusals", 5),
        pause_s: d.field(&mut y, "pause_s", 900),
        user_agent: d.field(&mut y, "user_agent", "Mozilla/5.0".to_string()),
    };
    d.check(
        url::Url::parse(&yahoo.base_url).is_ok(),
        &y,
        "base_url",
        "not a URL",
    );
    d.check(yahoo.timeout_s > 0, &y, "timeout_s", "must be positive");
    d.finish(y);
    let mut f = d.section("sources.futu", srcs.and_then(|x| x.get("futu")));
    let futu = FutuConfig {
        host: d.field(&mut f, "host", "127.0.0.1".to_string()),
        port: d.field(&mut f, "port", 11111),
        requests_per_30s: d.field(&mut f, "requests_per_30s", 60),
        timeout_s: d.field(&mut f, "timeout_s", 20),
        max_retries: d.field(&mut f, "max_retries", 5),
        pause_after_refusals: d.field(&mut f, "pause_after_refusals", 5),
        pause_s: d.field(&mut f, "pause_s", 900),
        rehab: d.field(&mut f, "rehab", Rehab::None),
    };
    d.check(futu.timeout_s > 0, &f, "timeout_s", "must be positive");
    d.finish(f);
    let mut fl = d.section("sources.files", srcs.and_then(|x| x.get("files")));
    let files = FilesConfig {
        dir: d.field(&mut fl, "dir", PathBuf::from("data/import")),
    };
    d.finish(fl);

    let universe: Vec<(usize, UniverseEntry)> = d.list("universe", get("universe"));
    let mut syms: Vec<&str> = universe.iter().map(|(_, u)| u.symbol.as_str()).collect();
    syms.sort_unstable();
    for w in syms.windows(2) {
        if w[0] == w[1] {
            d.problems
                .push(format!("universe: duplicate symbol {:?}", w[0]));
        }
    }
    for (i, u) in &universe {
        if u.market.is_none() && u.symbol.market().is_none() {
            d.problems.push(format!(
                "universe[{i}]: cannot derive a market from {:?}; set market",
                u.symbol.as_str()
            ));
        }
        if let Some(start) = &u.start
            && chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").is_err()
        {
            d.problems.push(format!(
                "universe[{i}].start: bad date {start:?} (expected YYYY-MM-DD)"
            ));
        }
        if u.intervals.is_empty() {
            d.problems.push(format!("universe[{i}].intervals: empty"));
        }
    }

    let mut s = d.section("history", get("history"));
    let history = HistoryConfig {
        default_start_years: d.field(&mut s, "default_start_years", 5),
        revision_window_sessions: d.field(&mut s, "revision_window_sessions", 3),
    };
    d.finish(s);

    let mut s = d.section("cache", get("cache"));
    let cache = CacheConfig {
        max_bytes: d.field(&mut s, "max_bytes", 536_870_912),
    };
    d.finish(s);

    let mut s = d.section("reader", get("reader"));
    let reader = ReaderConfig {
        max_bars_per_request: d.field(&mut s, "max_bars_per_request", 50_000_000),
    };
    d.check(
        reader.max_bars_per_request > 0,
        &s,
        "max_bars_per_request",
        "must be positive",
    );
    d.finish(s);

    let schedule: Vec<(usize, ScheduleEntry)> = d.list("schedule", get("schedule"));
    for (i, e) in &schedule {
        if e.timezone.parse::<chrono_tz::Tz>().is_err() {
            d.problems.push(format!(
                "schedule[{i}].timezone: unknown time zone {:?}",
                e.timezone
            ));
        }
        let fields = e.cron.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            d.problems.push(format!(
                "schedule[{i}].cron: {:?} has {fields} fields (expected 5, or 6 with seconds)",
                e.cron
            ));
        }
    }
    let alerts: Vec<(usize, AlertConfig)> = d.list("alerts", get("alerts"));
    for (i, a) in &alerts {
        let ok = match a.kind {
            AlertKind::Email => a.smtp.is_some() && !a.to.is_empty(),
            _ => a.url.is_some() || a.url_env.is_some(),
        };
        if !ok {
            d.problems.push(format!(
                "alerts[{i}]: {} needs {}",
                serde_json::to_string(&a.kind).unwrap_or_default(),
                if a.kind == AlertKind::Email {
                    "smtp and to"
                } else {
                    "url or url_env"
                }
            ));
        }
    }

    let mut s = d.section("logging", get("logging"));
    let logging = LoggingConfig {
        dir: d.field(&mut s, "dir", PathBuf::from("logs")),
        level: d.field(&mut s, "level", "info".to_string()),
        json: d.field(&mut s, "json", true),
    };
    d.check(
        tracing_subscriber::EnvFilter::try_new(&logging.level).is_ok(),
        &s,
        "level",
        format!("invalid level filter {:?}", logging.level),
    );
    d.finish(s);
    d.finish(root);

    Config {
        server,
        storage,
        replication,
        sources: SourcesConfig { yahoo, futu, files },
        universe: universe.into_iter().map(|(_, u)| u).collect(),
        history,
        cache,
        reader,
        schedule: schedule.into_iter().map(|(_, e)| e).collect(),
        alerts: alerts.into_iter().map(|(_, a)| a).collect(),
        logging,
    }
}

fn decode_store(d: &mut Decoder, path: &str, v: Option<&Value>) -> StoreConfig {
    let mut s = d.section(path, v);
    let kind: String = d.field(&mut s, "kind", "embedded".to_string());
    let out = match kind.as_str() {
        "embedded" => StoreConfig::Embedded,
        "influxdb" => StoreConfig::Influxdb(Box::new(decode_influx(d, &mut s))),
        other => {
            d.problems.push(format!(
                "{path}.kind: unknown store kind {other:?} (expected embedded or influxdb)"
            ));
            s.map = None;
            StoreConfig::Embedded
        }
    };
    d.finish(s);
    out
}

fn decode_node(d: &mut Decoder, path: &str, v: &Value) -> Option<NodeConfig> {
    let mut s = d.section(path, Some(v));
    let name: Option<String> = d.required(&mut s, "name");
    let kind: Option<String> = d.required(&mut s, "kind");
    let target = match kind.as_deref() {
        Some("influxdb") => Some(NodeTarget::Influxdb(decode_influx(d, &mut s))),
        Some("dms") => {
            let url: Option<String> = d.required(&mut s, "url");
            if let Some(u) = &url {
                d.check(url::Url::parse(u).is_ok(), &s, "url", "not a URL");
            }
            url.map(|url| NodeTarget::Dms {
                url,
                token_env: d.opt(&mut s, "token_env"),
            })
        }
        Some("embedded") => d
            .required(&mut s, "path")
            .map(|path| NodeTarget::Embedded { path }),
        Some(other) => {
            d.problems.push(format!(
                "{path}.kind: unknown node kind {other:?} (expected influxdb, dms or embedded)"
            ));
            s.map = None;
            None
        }
        None => {
            s.map = None;
            None
        }
    };
    d.finish(s);
    Some(NodeConfig {
        name: name?,
        target: target?,
    })
}

fn decode_influx(d: &mut Decoder, s: &mut Section<'_>) -> InfluxConfig {
    let url: String = d.required(s, "url").unwrap_or_default();
    if !url.is_empty() {
        d.check(url::Url::parse(&url).is_ok(), s, "url", "not a URL");
    }
    let c = InfluxConfig {
        url,
        api: d.opt(s, "api").unwrap_or(InfluxApi::V1),
        database: d.opt(s, "database"),
        org: d.opt(s, "org"),
        bucket: d.opt(s, "bucket"),
        username: d.opt(s, "username"),
        password_env: d.opt(s, "password_env"),
        token_env: d.opt(s, "token_env"),
        retention_policy: d.opt(s, "retention_policy"),
        timeout_s: d.field(s, "timeout_s", 30),
    };
    let api_valid = s
        .map
        .and_then(|m| m.get("api"))
        .is_none_or(|v| serde_json::from_value::<InfluxApi>(v.clone()).is_ok());
    match c.api {
        _ if !api_valid => {}
        InfluxApi::V1 => d.check(
            c.database.is_some(),
            s,
            "database",
            "missing (required with api: v1)",
        ),
        InfluxApi::V2 => {
            d.check(c.org.is_some(), s, "org", "missing (required with api: v2)");
            d.check(
                c.bucket.is_some(),
                s,
                "bucket",
                "missing (required with api: v2)",
            );
        }
    }
    for (key, var) in [
        ("password_env", &c.password_env),
        ("token_env", &c.token_env),
    ] {
        if let Some(v) = var {
            d.check(
                secret_from_env(Some(v)).is_some(),
                s,
                key,
                format!("environment variable {v} is not set"),
            );
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_file_gives_the_design_defaults() {
        let c = Config::default_config();
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:11183");
        assert_eq!(c.storage.primary, StoreConfig::Embedded);
        assert_eq!(c.storage.data_dir, PathBuf::from("data"));
        assert_eq!(c.sources.yahoo.requests_per_minute, 60);
        assert_eq!(c.sources.futu.port, 11111);
        assert_eq!(c.cache.max_bytes, 536_870_912);
        assert_eq!(c.reader.max_bars_per_request, 50_000_000);
        assert_eq!(c.history.revision_window_sessions, 3);
        assert_eq!(c.replication, ReplicationConfig::Primary);
        assert!(c.logging.json);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let yaml = r#"
server: { bind: "not an address", colour: blue }
storage:
  primary: { kind: influxdb, api: v3 }
  backups:
    - { name: b1, kind: tape }
    - { kind: dms }
cache: { max_bytes: -1 }
universe:
  - { symbol: "AAPL", source: yahoo, intervals: [1d, 7m] }
  - { symbol: "bad symbol", source: yahoo }
  - { symbol: "WSU.DE", source: yahoo }
schedule:
  - { name: eod, cron: "0 17 * *", timezone: Mars/Base, task: update }
logging: { level: "=[" }
extra: 1
"#;
        let problems = Config::from_yaml(yaml, vec![]).unwrap_err().0;
        let expect = [
            "server.bind:",
            "server.colour: unknown key",
            "storage.primary.url: missing",
            "storage.primary.api:",
            "storage.backups[0].kind: unknown node kind \"tape\"",
            "storage.backups[1].name: missing",
            "storage.backups[1].url: missing",
            "cache.max_bytes:",
            "universe[0]:",
            "universe[1]:",
            "universe[2]: cannot derive a market",
            "schedule[0].timezone",
            "schedule[0].cron",
            "logging.level",
            "extra: unknown key",
        ];
        for e in expect {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "missing {e:?} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let yaml = "server: { bind: 127.0.0.1:1 }\ncache: { max_bytes: 10 }\n";
        let c = Config::from_yaml(
            yaml,
            env(&[
                ("DMS__SERVER__BIND", "0.0.0.0:8080"),
                ("DMS__CACHE__MAX_BYTES", "2048"),
                ("DMS__LOGGING__JSON", "false"),
                ("DMS__STORAGE__PRIMARY__KIND", "embedded"),
                ("OTHER__CACHE__MAX_BYTES", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(c.cache.max_bytes, 2048);
        assert!(!c.logging.json);
        let err = Config::from_yaml(
            "",
            env(&[("DMS__CACHE__MAX_BYTES", "lots"), ("DMS__NOPE__X", "1")]),
        )
        .unwrap_err();
        assert!(
            err.0.iter().any(|p| p.starts_with("cache.max_bytes:")),
            "{err}"
        );
        assert!(
            err.0.iter().any(|p| p.starts_with("nope: unknown key")),
            "{err}"
        );
    }

    #[test]
    fn influx_needs_its_keys_and_set_secrets() {
        let yaml = r#"
storage:
  primary: { kind: influxdb, url: "http://127.0.0.1:8086", api: v2, token_env: DMS_TEST_SURELY_UNSET_TOKEN }
"#;
        let p = Config::from_yaml(yaml, vec![]).unwrap_err().0;
        assert!(p.iter().any(|x| x.contains("org: missing")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("bucket: missing")), "{p:?}");
        assert!(
            p.iter()
                .any(|x| x.contains("DMS_TEST_SURELY_UNSET_TOKEN is not set")),
            "{p:?}"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        let c = Config::default_config();
        assert!(!c.to_redacted_yaml().contains("hunter2"));
    }
}
