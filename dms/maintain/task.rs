//! [`Task`]: every kind of maintenance work, as one type — what `POST /api/v1/jobs`, the CLI
//! and the scheduler create, what a job persists and resumes, and what the runner dispatches.
//! [`JobSpec`] is the request as users write it (DESIGN §4); [`Task::parse`] checks it against
//! the universe and the sources before anything is created.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::MaintainEnv;
use super::backfill::{self, BackfillParams};
use super::universe::Selection;
use crate::domain::{Interval, Market, Symbol};
use crate::replicate::Role;
use crate::source::FetchRequest;

/// A job request, as `POST /api/v1/jobs` takes it (DESIGN §4), plus `source` for backfills,
/// `market` for updates and `node` for verify and sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// `update`, `backfill`, `full`, `repair`, `verify` or `sync`.
    pub task: String,
    #[serde(default)]
    pub symbols: Vec<String>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// Backfill: `yahoo`, `futu` or `files` instead of each symbol's universe source.
    #[serde(default)]
    pub source: Option<String>,
    /// Update, full: only the universe's series of this market (`US`, `HK`, ...).
    #[serde(default)]
    pub market: Option<String>,
    /// Sync, verify: only this backup node (a `storage.backups` name) instead of every one.
    #[serde(default)]
    pub node: Option<String>,
}

/// A validated job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Task {
    Backfill(BackfillParams),
    Update(Selection),
    Full(Selection),
    Repair(Selection),
    Verify(VerifyParams),
    Sync(SyncParams),
}

/// What a `verify` re-validates and compares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyParams {
    /// Only this backup node (`None`: every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Stored series re-validated: of these symbols (empty: every stored series) ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<Symbol>,
    /// ... of these intervals (empty: every interval) ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<Interval>,
    /// ... and of these markets (empty: every market).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markets: Vec<Market>,
}

/// Which nodes a `sync` ships to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncParams {
    /// Only this backup node (`None`: every one, and on a replica a pull from its primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The symbols, interval and market a spec narrows its task to.
fn selection_of(spec: &JobSpec) -> Result<Selection, String> {
    Ok(Selection {
        symbols: parse_symbol_list(&spec.symbols)?,
        intervals: spec
            .interval
            .as_deref()
            .map(str::parse::<Interval>)
            .transpose()?
            .into_iter()
            .collect(),
        markets: spec
            .market
            .as_deref()
            .map(str::parse::<Market>)
            .transpose()?
            .into_iter()
            .collect(),
    })
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Backfill(_) => "backfill",
            Task::Update(_) => "update",
            Task::Full(_) => "full",
            Task::Repair(_) => "repair",
            Task::Verify(_) => "verify",
            Task::Sync(_) => "sync",
        }
    }

    /// Checks a request; the message says what is wrong.
    pub fn parse(spec: &JobSpec, env: &MaintainEnv) -> Result<Task, String> {
        if spec.node.is_some() && !matches!(spec.task.as_str(), "verify" | "sync") {
            return Err(format!(
                "node: not a parameter of {} (only verify and sync take one)",
                spec.task
            ));
        }
        let task = match spec.task.as_str() {
            "backfill" => {
                if spec.market.is_some() {
                    return Err("market: not a backfill parameter (name the symbols)".into());
                }
                let p = backfill::parse_params(
                    &spec.symbols,
                    spec.interval.as_deref(),
                    spec.start.as_deref(),
                    spec.end.as_deref(),
                    spec.source.as_deref(),
                )?;
                check_sources(env, &p)?;
                Task::Backfill(p)
            }
            t @ ("update" | "full" | "repair") => {
                for (k, v) in [
                    ("start", &spec.start),
                    ("end", &spec.end),
                    ("source", &spec.source),
                ] {
                    if v.is_some() {
                        return Err(format!(
                            "{k}: not a parameter of {t} (it fetches each series from its latest bar or its start; use backfill for a range)"
                        ));
                    }
                }
                let selection = selection_of(spec)?;
                selection.check(&env.universe)?;
                match t {
                    "update" => Task::Update(selection),
                    "full" => Task::Full(selection),
                    _ => Task::Repair(selection),
                }
            }
            t @ ("verify" | "sync") => {
                let mut not_ours = vec![
                    ("start", spec.start.is_some()),
                    ("end", spec.end.is_some()),
                    ("source", spec.source.is_some()),
                ];
                if t == "sync" {
                    not_ours.push(("symbols", !spec.symbols.is_empty()));
                    not_ours.push(("interval", spec.interval.is_some()));
                    not_ours.push(("market", spec.market.is_some()));
                }
                if let Some((k, _)) = not_ours.into_iter().find(|(_, set)| *set) {
                    return Err(format!("{k}: not a parameter of {t}"));
                }
                let nodes = env.replicator.node_names();
                if let Some(n) = &spec.node
                    && !nodes.contains(n)
                {
                    return Err(format!(
                        "node: no backup node named {n:?} (configured: {})",
                        if nodes.is_empty() {
                            "none".to_string()
                        } else {
                            nodes.join(", ")
                        }
                    ));
                }
                let is_replica = matches!(env.replicator.role(), Role::Replica { .. });
                if t == "sync" && nodes.is_empty() && !is_replica {
                    return Err(
                        "sync: no backup nodes are configured (storage.backups) and this instance is not a replica"
                            .into(),
                    );
                }
                match t {
                    "sync" => Task::Sync(SyncParams {
                        node: spec.node.clone(),
                    }),
                    _ => {
                        // Stored series, listed in the universe or not: no universe check.
                        let Selection {
                            symbols,
                            intervals,
                            markets,
                        } = selection_of(spec)?;
                        Task::Verify(VerifyParams {
                            node: spec.node.clone(),
                            symbols,
                            intervals,
                            markets,
                        })
                    }
                }
            }
            t => {
                return Err(format!(
                    "unknown task {t:?} (expected update, backfill, full, repair, verify or sync)"
                ));
            }
        };
        Ok(task)
    }
}

/// Refuses a backfill a source would refuse before sending anything (a range outside the
/// source's window, such as Yahoo's 30 days of 1-minute bars): better a 400 now than a job
/// that fails.
fn check_sources(env: &MaintainEnv, p: &BackfillParams) -> Result<(), String> {
    let now = env.clock.now();
    let range = p
        .range(now)
        .ok_or_else(|| "start: in the future".to_string())?;
    for t in p.targets(env) {
        let Some(source) = env.sources.get(&t.source) else {
            return Err(format!("source: no {} source is configured", t.source));
        };
        let req = FetchRequest {
            series: t.series.clone(),
            range,
            market: t.market,
            futu_code: t.futu_code.clone(),
            now,
        };
        source
            .check(&req)
            .map_err(|e| format!("{}: {e}", t.series.symbol))?;
    }
    Ok(())
}

/// Symbols from a list whose items may themselves be comma-separated, de-duplicated in order
/// (linear), each checked against the symbol pattern.
pub fn parse_symbol_list(items: &[String]) -> Result<Vec<Symbol>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for s in items
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let sym = Symbol::parse(s).map_err(|e| e.to_string())?;
        if seen.insert(sym.clone()) {
            out.push(sym);
        }
    }
    Ok(out)
}
