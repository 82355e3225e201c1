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

use chrono_tz::Tz;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::domain::{Interval, Market, Symbol};
use crate::events::EventKind;
use crate::schedule::cron::CronExpr;
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
    /// Per market, days added to the published holiday tables (`calendars:`).
    pub calendars: BTreeMap<Market, CalendarOverrides>,
    pub cache: CacheConfig,
    pub reader: ReaderConfig,
    pub schedule: Vec<ScheduleEntry>,
    pub alerts: Vec<AlertConfig>,
    /// The periodic health checks of `dms serve` (`checks:`, not in DESIGN §2).
    pub checks: ChecksConfig,
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

/// One market's entry of `calendars:` (`HK: { closures: [2026-09-15], half_days: [...] }`):
/// full-day closures and half days the published tables do not have yet (a typhoon day, a
/// newly announced holiday), applied without a release. A closure wins over the tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CalendarOverrides {
    pub closures: Vec<chrono::NaiveDate>,
    pub half_days: Vec<chrono::NaiveDate>,
}

impl CalendarOverrides {
    pub fn to_overrides(&self) -> crate::domain::Overrides {
        crate::domain::Overrides {
            closures: self.closures.clone(),
            half_days: self.half_days.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheConfig {
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReaderConfig {
    pub max_bars_per_request: u64,
}

/// `checks: { interval_s: 300 }`: how often `dms serve` looks for stale series, open gaps and
/// ending holiday tables (`crate::ops`), besides once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChecksConfig {
    pub interval_s: u64,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig { interval_s: 300 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Update,
    Verify,
    Sync,
    Repair,
}

/// One `schedule:` entry (DESIGN §2): a cron expression read on `timezone`'s wall clock and
/// the task it starts. Decoded field by field (`decode_schedule`), so the cron and the
/// time zone are already parsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleEntry {
    /// Unique among the entries; `[A-Za-z0-9._-]+`, so it can sit in a URL path.
    pub name: String,
    pub cron: CronExpr,
    /// The exchange-local zone the cron is read in (default `UTC`).
    #[serde(serialize_with = "tz_name")]
    pub timezone: Tz,
    pub task: TaskKind,
    pub markets: Vec<Market>,
    pub symbols: Vec<Symbol>,
    pub intervals: Vec<Interval>,
}

impl ScheduleEntry {
    /// An entry without market, symbol or interval filters (tests, built-in schedules).
    pub fn new(name: &str, cron: &str, timezone: &str, task: TaskKind) -> Result<Self, String> {
        Ok(ScheduleEntry {
            name: name.to_string(),
            cron: CronExpr::parse(cron).map_err(|e| e.to_string())?,
            timezone: timezone
                .parse()
                .map_err(|_| format!("unknown time zone {timezone:?}"))?,
            task,
            markets: Vec::new(),
            symbols: Vec::new(),
            intervals: Vec::new(),
        })
    }
}

fn tz_name<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// One `alerts:` entry: a channel, the events it takes and its thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertConfig {
    pub kind: AlertKind,
    /// Webhook, Slack or DingTalk URL (one of `url`, `url_env`).
    pub url: Option<String>,
    /// Env var holding the URL, for hooks whose URL is itself the credential (Slack).
    pub url_env: Option<String>,
    /// DingTalk: env var holding the robot's signing secret (`SEC...`); when set, requests
    /// carry `timestamp` and `sign`.
    pub secret_env: Option<String>,
    /// Email: `smtp://host:port` (plain), `smtp://host:port?tls=required` (STARTTLS) or
    /// `smtps://host:port` (TLS); a user name may precede the host (`smtp://user@host`).
    pub smtp: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
    /// Email: env var holding the SMTP password (used with the URL's user name).
    pub password_env: Option<String>,
    /// The events this channel takes; every event when the key is absent.
    pub events: Vec<EventKind>,
    /// A condition still raised is repeated at most once per `throttle_s` (default 3600).
    pub throttle_s: u64,
    /// Per-attempt delivery timeout (default 10).
    pub timeout_s: u64,
    /// Delivery retries after the first attempt, with exponential backoff (default 5).
    pub retries: u32,
    #[serde(flatten)]
    pub thresholds: AlertThresholds,
}

impl AlertConfig {
    /// The URL of a webhook, Slack or DingTalk channel: `url`, or the value of `url_env`.
    pub fn resolved_url(&self) -> Option<Secret> {
        self.url
            .clone()
            .map(Secret::new)
            .or_else(|| secret_from_env(self.url_env.as_deref()))
    }

    pub fn secret(&self) -> Option<Secret> {
        secret_from_env(self.secret_env.as_deref())
    }

    pub fn password(&self) -> Option<Secret> {
        secret_from_env(self.password_env.as_deref())
    }
}

/// When a measurement becomes an alert (each key of an `alerts:` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlertThresholds {
    /// `backup_lag` raises when a node is more than this many changes behind (default 10000),
    pub backup_lag_changes: u64,
    /// ... or its oldest unshipped change is older than this (default 3600 s).
    pub backup_lag_seconds: u64,
    /// `series_stale` raises when a series is this long past its expected bar (default 3600 s).
    pub stale_after_s: u64,
    /// `calendar_ending` raises when a market's calendar table ends within this many days
    /// (default 30).
    pub calendar_ending_days: u32,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            backup_lag_changes: 10_000,
            backup_lag_seconds: 3600,
            stale_after_s: 3600,
            calendar_ending_days: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Webhook,
    Slack,
    Dingtalk,
    Email,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Webhook => "webhook",
            AlertKind::Slack => "slack",
            AlertKind::Dingtalk => "dingtalk",
            AlertKind::Email => "email",
        }
    }
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
            note(&a.secret_env);
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
        "calendars",
        "cache",
        "reader",
        "schedule",
        "alerts",
        "checks",
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

    let calendars = decode_calendars(d, get("calendars"));

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

    let schedule = decode_items(d, "schedule", get("schedule"), decode_schedule);
    let mut names: Vec<&str> = schedule.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    for w in names.windows(2) {
        if w[0] == w[1] {
            d.problems
                .push(format!("schedule: duplicate name {:?}", w[0]));
        }
    }
    let alerts = decode_items(d, "alerts", get("alerts"), decode_alert);

    let mut s = d.section("checks", get("checks"));
    let checks = ChecksConfig {
        interval_s: d.field(&mut s, "interval_s", ChecksConfig::default().interval_s),
    };
    d.check(checks.interval_s > 0, &s, "interval_s", "must be positive");
    d.finish(s);

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
        calendars,
        cache,
        reader,
        schedule,
        alerts,
        checks,
        logging,
    }
}

/// `calendars:`: a mapping from market name to `{ closures: [dates], half_days: [dates] }`.
fn decode_calendars(d: &mut Decoder, v: Option<&Value>) -> BTreeMap<Market, CalendarOverrides> {
    let mut out = BTreeMap::new();
    let s = d.section("calendars", v);
    let Some(map) = s.map else {
        return out;
    };
    for (name, entry) in map {
        let path = format!("calendars.{name}");
        let market = match name.parse::<Market>() {
            Ok(m) => Some(m),
            Err(e) => {
                d.problems.push(format!("{path}: {e}"));
                None
            }
        };
        let mut e = d.section(&path, Some(entry));
        let closures = decode_dates(d, &mut e, "closures");
        let half_days = decode_dates(d, &mut e, "half_days");
        for day in &half_days {
            d.check(
                !closures.contains(day),
                &e,
                "half_days",
                format!("{day} is also a closure"),
            );
        }
        d.finish(e);
        if let Some(m) = market {
            if out.contains_key(&m) {
                d.problems
                    .push(format!("{path}: {m} is listed more than once"));
            }
            out.insert(
                m,
                CalendarOverrides {
                    closures,
                    half_days,
                },
            );
        }
    }
    out
}

/// A list of `YYYY-MM-DD` dates, one problem per bad item.
fn decode_dates(d: &mut Decoder, s: &mut Section<'_>, key: &'static str) -> Vec<chrono::NaiveDate> {
    let items: Vec<Value> = d.field(s, key, Vec::new());
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let date = item
            .as_str()
            .and_then(|t| chrono::NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d").ok());
        match date {
            Some(day) => out.push(day),
            None => d.problems.push(format!(
                "{}{key}[{i}]: bad date {item} (expected YYYY-MM-DD)",
                prefix(&s.path)
            )),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Decodes each item of a list with `item`, which reports its own problems.
fn decode_items<T>(
    d: &mut Decoder,
    path: &str,
    v: Option<&Value>,
    item: fn(&mut Decoder, &str, &Value) -> Option<T>,
) -> Vec<T> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| item(d, &format!("{path}[{i}]"), v))
            .collect(),
        Some(other) => {
            d.problems
                .push(format!("{path}: expected a list, found {}", kind(other)));
            Vec::new()
        }
    }
}

fn decode_schedule(d: &mut Decoder, path: &str, v: &Value) -> Option<ScheduleEntry> {
    let mut s = d.section(path, Some(v));
    s.map?;
    let name: Option<String> = d.required(&mut s, "name");
    if let Some(n) = &name {
        let ok = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        d.check(ok, &s, "name", format!("{n:?} is not [A-Za-z0-9._-]+"));
    }
    let cron = d
        .required::<String>(&mut s, "cron")
        .and_then(|c| match CronExpr::parse(&c) {
            Ok(c) => Some(c),
            Err(e) => {
                d.problems.push(format!("{path}.cron: {e}"));
                None
            }
        });
    let tz_text: String = d.field(&mut s, "timezone", "UTC".to_string());
    let timezone = match tz_text.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            d.problems
                .push(format!("{path}.timezone: unknown time zone {tz_text:?}"));
            None
        }
    };
    let task: Option<TaskKind> = d.required(&mut s, "task");
    let markets = d.field(&mut s, "markets", Vec::new());
    let symbols = d.field(&mut s, "symbols", Vec::new());
    let intervals = d.field(&mut s, "intervals", Vec::new());
    d.finish(s);
    Some(ScheduleEntry {
        name: name?,
        cron: cron?,
        timezone: timezone?,
        task: task?,
        markets,
        symbols,
        intervals,
    })
}

fn decode_alert(d: &mut Decoder, path: &str, v: &Value) -> Option<AlertConfig> {
    let mut s = d.section(path, Some(v));
    s.map?;
    let kind: Option<AlertKind> = d.required(&mut s, "kind");
    let url: Option<String> = d.opt(&mut s, "url");
    let url_env: Option<String> = d.opt(&mut s, "url_env");
    let secret_env: Option<String> = d.opt(&mut s, "secret_env");
    let smtp: Option<String> = d.opt(&mut s, "smtp");
    let from: Option<String> = d.opt(&mut s, "from");
    // `to` takes one address or a list.
    let to: Vec<String> = match s.map.and_then(|m| m.get("to")) {
        Some(Value::String(one)) => {
            s.used.push("to");
            vec![one.clone()]
        }
        _ => d.field(&mut s, "to", Vec::new()),
    };
    let password_env: Option<String> = d.opt(&mut s, "password_env");
    let events = match d.opt::<Vec<String>>(&mut s, "events") {
        None => EventKind::ALL.to_vec(),
        Some(names) => {
            if names.is_empty() {
                d.problems.push(format!(
                    "{path}.events: empty (omit the key to take every event)"
                ));
            }
            let mut out = Vec::new();
            for n in names {
                match n.parse::<EventKind>() {
                    Ok(k) if !out.contains(&k) => out.push(k),
                    Ok(_) => {}
                    Err(e) => d.problems.push(format!("{path}.events: {e}")),
                }
            }
            out
        }
    };
    let dt = AlertThresholds::default();
    let thresholds = AlertThresholds {
        backup_lag_changes: d.field(&mut s, "backup_lag_changes", dt.backup_lag_changes),
        backup_lag_seconds: d.field(&mut s, "backup_lag_seconds", dt.backup_lag_seconds),
        stale_after_s: d.field(&mut s, "stale_after_s", dt.stale_after_s),
        calendar_ending_days: d.field(&mut s, "calendar_ending_days", dt.calendar_ending_days),
    };
    let throttle_s = d.field(&mut s, "throttle_s", 3600);
    let timeout_s = d.field(&mut s, "timeout_s", 10);
    let retries = d.field(&mut s, "retries", 5);
    d.check(timeout_s > 0, &s, "timeout_s", "must be positive");

    // Keys that belong to another kind, then what each kind needs.
    let present = |k: &str| {
        s.map
            .is_some_and(|m| m.get(k).is_some_and(|v| !v.is_null()))
    };
    let foreign: &[&str] = match kind {
        Some(AlertKind::Email) => &["url", "url_env", "secret_env"],
        Some(AlertKind::Dingtalk) => &["smtp", "from", "to", "password_env"],
        Some(_) => &["secret_env", "smtp", "from", "to", "password_env"],
        None => &[],
    };
    for k in foreign {
        if present(k) {
            d.problems.push(format!(
                "{path}.{k}: not used by kind {}",
                kind.map(AlertKind::as_str).unwrap_or_default()
            ));
        }
    }
    let env_set = |d: &mut Decoder, key: &str, var: &Option<String>| {
        if let Some(v) = var
            && secret_from_env(Some(v)).is_none()
        {
            d.problems
                .push(format!("{path}.{key}: environment variable {v} is not set"));
        }
    };
    match kind {
        Some(AlertKind::Email) => {
            match &smtp {
                None => d
                    .problems
                    .push(format!("{path}.smtp: missing (required by email)")),
                Some(u) => match url::Url::parse(u) {
                    Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some() => {}
                    _ => d.problems.push(format!(
                        "{path}.smtp: not an smtp:// or smtps:// URL with a host"
                    )),
                },
            }
            match &from {
                None => d
                    .problems
                    .push(format!("{path}.from: missing (required by email)")),
                Some(f) => {
                    if let Err(e) = f.parse::<lettre::message::Mailbox>() {
                        d.problems.push(format!("{path}.from: {f:?}: {e}"));
                    }
                }
            }
            if to.is_empty() {
                d.problems
                    .push(format!("{path}.to: missing (required by email)"));
            }
            for t in &to {
                if let Err(e) = t.parse::<lettre::message::Mailbox>() {
                    d.problems.push(format!("{path}.to: {t:?}: {e}"));
                }
            }
            env_set(d, "password_env", &password_env);
        }
        Some(k) => {
            match (&url, &url_env) {
                (None, None) => d
                    .problems
                    .push(format!("{path}: {} needs url or url_env", k.as_str())),
                (Some(_), Some(_)) => d
                    .problems
                    .push(format!("{path}: set url or url_env, not both")),
                (Some(u), None) => {
                    if !is_http_url(u) {
                        d.problems.push(format!("{path}.url: not an http(s) URL"));
                    }
                }
                (None, Some(var)) => match secret_from_env(Some(var)) {
                    None => d.problems.push(format!(
                        "{path}.url_env: environment variable {var} is not set"
                    )),
                    // The value is a secret: say what is wrong, never what it is.
                    Some(v) if !is_http_url(v.expose()) => d.problems.push(format!(
                        "{path}.url_env: environment variable {var} does not hold an http(s) URL"
                    )),
                    Some(_) => {}
                },
            }
            env_set(d, "secret_env", &secret_env);
        }
        None => {}
    }
    d.finish(s);
    Some(AlertConfig {
        kind: kind?,
        url,
        url_env,
        secret_env,
        smtp,
        from,
        to,
        password_env,
        events,
        throttle_s,
        timeout_s,
        retries,
        thresholds,
    })
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
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
    fn calendar_overrides_decode_and_every_problem_is_listed() {
        let yaml = r#"
calendars:
  HK: { closures: [2026-09-15, "2026-09-16"], half_days: [2026-12-24] }
  us: { closures: [2026-07-02] }
"#;
        let c = Config::from_yaml(yaml, vec![]).unwrap();
        let hk = &c.calendars[&Market::Hk];
        assert_eq!(hk.closures.len(), 2);
        assert_eq!(hk.half_days[0].to_string(), "2026-12-24");
        assert_eq!(
            c.calendars[&Market::Us].closures[0].to_string(),
            "2026-07-02"
        );
        assert!(Config::default_config().calendars.is_empty());
        let bad = r#"
calendars:
  MARS: { closures: [2026-01-01] }
  HK: { closures: [2026-13-01, tomorrow], half_days: [2026-09-15], typhoons: [] }
  SH: [2026-01-01]
  SZ: { closures: [2026-10-01], half_days: [2026-10-01] }
"#;
        let problems = Config::from_yaml(bad, vec![]).unwrap_err().0;
        let expect = [
            "calendars.MARS: unknown market",
            "calendars.HK.closures[0]: bad date",
            "calendars.HK.closures[1]: bad date",
            "calendars.HK.typhoons: unknown key",
            "calendars.SH: expected a mapping",
            "calendars.SZ.half_days: 2026-10-01 is also a closure",
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
    fn the_shipped_config_schedules_the_after_market_updates() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dms.yaml"))
                .unwrap();
        let c = Config::from_yaml(&text, vec![]).unwrap();
        let us = &c.schedule[0];
        assert_eq!(us.name, "us-after-market");
        assert_eq!(us.cron.as_str(), "0 30 17 * * Mon-Fri");
        assert_eq!(us.timezone, chrono_tz::America::New_York);
        assert_eq!(us.task, TaskKind::Update);
        assert_eq!(us.markets, vec![Market::Us]);
        assert_eq!(c.schedule[1].timezone, chrono_tz::Asia::Hong_Kong);
        let yaml = c.to_redacted_yaml();
        assert!(yaml.contains("timezone: America/New_York"), "{yaml}");
    }

    #[test]
    fn every_schedule_problem_is_listed_at_once() {
        let yaml = r#"
schedule:
  - { name: a, cron: "0 30 25 * * *", timezone: Mars/Base, task: nap, markets: [US, XX], colour: red }
  - { name: "a b", cron: "0 0 30 2 *", task: verify }
  - { cron: "* * * * *", task: sync }
  - { name: d, cron: "0 17 * * Mon-Fri", task: update }
  - { name: d, cron: "0 17 * * Mon-Fri", task: update }
"#;
        let problems = Config::from_yaml(yaml, vec![]).unwrap_err().0;
        let expect = [
            "schedule[0].cron: \"0 30 25 * * *\":",
            "schedule[0].timezone: unknown time zone \"Mars/Base\"",
            "schedule[0].task:",
            "schedule[0].markets:",
            "schedule[0].colour: unknown key",
            "schedule[1].name: \"a b\" is not",
            "schedule[1].cron: \"0 0 30 2 *\" never fires",
            "schedule[2].name: missing",
            "schedule: duplicate name \"d\"",
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
    fn alerts_decode_with_defaults_and_every_event_when_none_are_named() {
        let yaml = r#"
alerts:
  - { kind: slack, url: "http://127.0.0.1:9/hook" }
  - { kind: dingtalk, url: "https://oapi.example/robot/send?access_token=x", secret_env: PATH,
      events: [backup_lag, job_failed], throttle_s: 60, backup_lag_changes: 5 }
  - { kind: email, smtp: "smtp://mail.example:2525", from: "DMS <dms@example.com>", to: ops@example.com }
"#;
        let c = Config::from_yaml(yaml, vec![]).unwrap();
        assert_eq!(c.alerts[0].events, EventKind::ALL.to_vec());
        assert_eq!(c.alerts[0].throttle_s, 3600);
        assert_eq!(c.alerts[0].thresholds, AlertThresholds::default());
        let d = &c.alerts[1];
        assert_eq!(d.events, vec![EventKind::BackupLag, EventKind::JobFailed]);
        assert_eq!(d.throttle_s, 60);
        assert_eq!(d.thresholds.backup_lag_changes, 5);
        assert_eq!(d.secret_env.as_deref(), Some("PATH"));
        assert!(d.secret().is_some());
        assert_eq!(c.alerts[2].to, vec!["ops@example.com".to_string()]);
        let yaml = c.to_redacted_yaml();
        assert!(yaml.contains("PATH: set (redacted)"), "{yaml}");
        assert!(yaml.contains("backup_lag_changes: 5"), "{yaml}");
        assert!(yaml.contains("- job_failed"), "{yaml}");
    }

    #[test]
    fn every_alert_problem_is_listed_at_once() {
        let yaml = r#"
alerts:
  - { kind: webhook }
  - { kind: slack, url: "ftp://x", url_env: DMS_TEST_SURELY_UNSET_HOOK }
  - { kind: slack, url_env: DMS_TEST_SURELY_UNSET_HOOK, events: [job_failed, jobs_exploded] }
  - { kind: dingtalk, url: "https://x.example/robot", secret_env: DMS_TEST_SURELY_UNSET_SECRET, smtp: "smtp://x" }
  - { kind: email, from: "not an address", to: [], secret_env: PATH }
  - { kind: email, smtp: "http://mail.example", from: dms@example.com, to: [ok@example.com, "bad@"], password_env: DMS_TEST_SURELY_UNSET_PW }
  - { kind: pager, url: "http://x.example", events: [] }
  - { kind: webhook, url: "http://x.example", throttle_s: soon, timeout_s: 0 }
"#;
        let problems = Config::from_yaml(yaml, vec![]).unwrap_err().0;
        let expect = [
            "alerts[0]: webhook needs url or url_env",
            "alerts[1]: set url or url_env, not both",
            "alerts[2].events: unknown event \"jobs_exploded\"",
            "alerts[2].url_env: environment variable DMS_TEST_SURELY_UNSET_HOOK is not set",
            "alerts[3].smtp: not used by kind dingtalk",
            "alerts[3].secret_env: environment variable DMS_TEST_SURELY_UNSET_SECRET is not set",
            "alerts[4].secret_env: not used by kind email",
            "alerts[4].smtp: missing",
            "alerts[4].from: \"not an address\"",
            "alerts[4].to: missing",
            "alerts[5].smtp: not an smtp:// or smtps:// URL",
            "alerts[5].to: \"bad@\"",
            "alerts[5].password_env: environment variable DMS_TEST_SURELY_UNSET_PW is not set",
            "alerts[6].kind:",
            "alerts[6].events: empty",
            "alerts[7].throttle_s:",
            "alerts[7].timeout_s: must be positive",
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
    fn a_url_held_in_the_environment_is_checked_but_never_printed() {
        // HOME is set in every test environment and is not a URL.
        let yaml = "alerts:\n  - { kind: slack, url_env: HOME }\n";
        let problems = Config::from_yaml(yaml, vec![]).unwrap_err().0;
        assert_eq!(
            problems,
            vec!["alerts[0].url_env: environment variable HOME does not hold an http(s) URL"]
        );
        let home = std::env::var("HOME").unwrap();
        assert!(!problems[0].contains(&home));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        let c = Config::default_config();
        assert!(!c.to_redacted_yaml().contains("hunter2"));
    }
}
