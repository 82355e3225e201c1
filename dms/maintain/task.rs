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
use crate::source::FetchRequest;

/// A job request, as `POST /api/v1/jobs` takes it (DESIGN §4), plus `source` for backfills
/// and `market` for updates.
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
}

/// A validated job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Task {
    Backfill(BackfillParams),
    Update(Selection),
    Full(Selection),
    Repair(Selection),
}

impl Task {
    pub fn name(&self) -> &'static str {
        match self {
            Task::Backfill(_) => "backfill",
            Task::Update(_) => "update",
            Task::Full(_) => "full",
            Task::Repair(_) => "repair",
        }
    }

    /// Checks a request; the message says what is wrong.
    pub fn parse(spec: &JobSpec, env: &MaintainEnv) -> Result<Task, String> {
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
                let selection = Selection {
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
                };
                selection.check(&env.universe)?;
                match t {
                    "update" => Task::Update(selection),
                    "full" => Task::Full(selection),
                    _ => Task::Repair(selection),
                }
            }
            t @ ("verify" | "sync") => {
                return Err(format!("task {t:?} is not available in this version"));
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
