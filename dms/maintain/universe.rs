//! The universe: which series DMS maintains (DESIGN §2 `universe`, §4
//! `/api/v1/universe`).
//!
//! Two layers: the entries of the config file, and entries added or replaced through the API,
//! persisted in the metadata database. An API entry for a symbol the config also names wins
//! (so an operator can change a config entry's intervals without a restart); removing it
//! reverts to the config's. A config entry itself can only be removed by editing the config —
//! the API says so instead of pretending.

use std::sync::{Arc, RwLock};

use crate::domain::{Interval, Market, SeriesKey, SourceKind, Symbol};
use crate::store::meta::{MetaDb, MetaError, UniverseEntry};

/// The effective universe. Cheap to clone; every clone sees API changes at once.
#[derive(Clone)]
pub struct Universe {
    config: Arc<Vec<UniverseEntry>>,
    meta: MetaDb,
    /// The effective entries, rebuilt after each change. A std lock: never held across an
    /// `.await`.
    effective: Arc<RwLock<Vec<UniverseEntry>>>,
    /// Symbols whose effective entry was stored through the API.
    from_api: Arc<RwLock<std::collections::HashSet<Symbol>>>,
}

/// What removing an entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// The API entry is gone (the config's entry for the symbol, if any, applies again).
    Removed {
        reverted_to_config: bool,
    },
    NotFound,
    /// Only the config names it.
    InConfig,
}

impl Universe {
    pub async fn load(config: Vec<UniverseEntry>, meta: MetaDb) -> Result<Universe, MetaError> {
        let u = Universe {
            config: Arc::new(config),
            meta,
            effective: Arc::default(),
            from_api: Arc::default(),
        };
        u.rebuild().await?;
        Ok(u)
    }

    async fn rebuild(&self) -> Result<(), MetaError> {
        let stored = self.meta.universe().await?;
        let mut all: Vec<UniverseEntry> = self
            .config
            .iter()
            .filter(|c| !stored.iter().any(|s| s.symbol == c.symbol))
            .cloned()
            .collect();
        *self.from_api.write().unwrap_or_else(|p| p.into_inner()) =
            stored.iter().map(|e| e.symbol.clone()).collect();
        all.extend(stored);
        all.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        *self.effective.write().unwrap_or_else(|p| p.into_inner()) = all;
        Ok(())
    }

    /// Every entry, sorted by symbol.
    pub fn entries(&self) -> Vec<UniverseEntry> {
        self.effective
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn get(&self, symbol: &Symbol) -> Option<UniverseEntry> {
        self.effective
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|e| &e.symbol == symbol)
            .cloned()
    }

    /// Where the effective entry of `symbol` comes from: `"api"` or `"config"`.
    pub fn origin(&self, symbol: &Symbol) -> &'static str {
        if self
            .from_api
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(symbol)
        {
            "api"
        } else {
            "config"
        }
    }

    /// Whether the config file names `symbol`.
    pub fn in_config(&self, symbol: &Symbol) -> bool {
        self.config.iter().any(|e| &e.symbol == symbol)
    }

    /// Adds or replaces an entry (persisted); returns whether the symbol was new.
    pub async fn upsert(&self, entry: &UniverseEntry) -> Result<bool, MetaError> {
        let was = self.get(&entry.symbol).is_some();
        self.meta.upsert_universe(entry).await?;
        self.rebuild().await?;
        Ok(!was)
    }

    /// Removes the API entry of `symbol`.
    pub async fn remove(&self, symbol: &Symbol) -> Result<Removed, MetaError> {
        if self.meta.remove_universe(symbol).await? {
            self.rebuild().await?;
            return Ok(Removed::Removed {
                reverted_to_config: self.in_config(symbol),
            });
        }
        Ok(if self.in_config(symbol) {
            Removed::InConfig
        } else {
            Removed::NotFound
        })
    }
}

/// Which maintained series a task covers: the universe, narrowed by symbols, market and
/// interval (DESIGN §3 `dms update [--symbols] [--interval] [--market]`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// Empty: every symbol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<Symbol>,
    /// Empty: every interval of each entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<Interval>,
    /// Empty: every market.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markets: Vec<Market>,
}

/// A maintained series with what is needed to fetch it.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintained {
    pub series: SeriesKey,
    pub source: SourceKind,
    pub market: Option<Market>,
    pub futu_code: Option<String>,
    /// The entry's first date to fetch, as epoch seconds, when it names one.
    pub start: Option<i64>,
}

impl Maintained {
    pub fn of(entry: &UniverseEntry, interval: Interval) -> Maintained {
        Maintained {
            series: SeriesKey::new(entry.symbol.clone(), interval),
            source: entry.source,
            market: entry.market.or_else(|| entry.symbol.market()),
            futu_code: entry.futu_code.clone(),
            start: entry
                .start
                .as_deref()
                .and_then(|s| crate::domain::time::parse_instant(s).ok()),
        }
    }
}

impl Selection {
    /// Checks the selection against the universe: every named symbol must be in it.
    pub fn check(&self, universe: &Universe) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .symbols
            .iter()
            .filter(|s| universe.get(s).is_none())
            .map(|s| s.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "symbols: {} not in the universe (add them with POST /api/v1/universe, or backfill them)",
                unknown.join(", ")
            ));
        }
        let selected = self.resolve(universe);
        if selected.is_empty() {
            return Err("the selection names no series of the universe".into());
        }
        Ok(())
    }

    /// The series selected, in universe order.
    pub fn resolve(&self, universe: &Universe) -> Vec<Maintained> {
        let mut out = Vec::new();
        for e in universe.entries() {
            if !self.symbols.is_empty() && !self.symbols.contains(&e.symbol) {
                continue;
            }
            let market = e.market.or_else(|| e.symbol.market());
            if !self.markets.is_empty() && !market.is_some_and(|m| self.markets.contains(&m)) {
                continue;
            }
            for &i in &e.intervals {
                if self.intervals.is_empty() || self.intervals.contains(&i) {
                    out.push(Maintained::of(&e, i));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> UniverseEntry {
        serde_json::from_str(json).unwrap()
    }

    #[tokio::test]
    async fn api_entries_override_config_ones_and_removal_reverts() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaDb::open(&dir.path().join("meta.db")).unwrap();
        let config = vec![
            entry(r#"{"symbol":"AAPL","source":"yahoo","intervals":["1d"]}"#),
            entry(r#"{"symbol":"0700.HK","source":"futu","intervals":["1d","1m"]}"#),
        ];
        let u = Universe::load(config, meta.clone()).await.unwrap();
        assert_eq!(u.entries().len(), 2);
        let aapl = Symbol::parse("AAPL").unwrap();
        let wider = entry(r#"{"symbol":"AAPL","source":"yahoo","intervals":["1d","1h"]}"#);
        assert!(!u.upsert(&wider).await.unwrap(), "AAPL was there already");
        assert_eq!(u.get(&aapl).unwrap().intervals.len(), 2);
        let msft = entry(r#"{"symbol":"MSFT","source":"yahoo"}"#);
        assert!(u.upsert(&msft).await.unwrap());
        // A reload sees the same (persisted).
        let again = Universe::load(u.config.to_vec(), meta).await.unwrap();
        assert_eq!(again.entries(), u.entries());

        let sel = Selection {
            markets: vec![Market::Hk],
            ..Selection::default()
        };
        let hk: Vec<_> = sel.resolve(&u).into_iter().map(|m| m.series).collect();
        assert_eq!(hk.len(), 2);
        let sel = Selection {
            intervals: vec![Interval::H1],
            ..Selection::default()
        };
        assert_eq!(sel.resolve(&u).len(), 1);
        let bad = Selection {
            symbols: vec![Symbol::parse("NOPE").unwrap()],
            ..Selection::default()
        };
        assert!(bad.check(&u).unwrap_err().contains("NOPE"));

        assert_eq!(
            u.remove(&aapl).await.unwrap(),
            Removed::Removed {
                reverted_to_config: true
            }
        );
        assert_eq!(u.get(&aapl).unwrap().intervals, [Interval::D1]);
        assert_eq!(u.remove(&aapl).await.unwrap(), Removed::InConfig);
        let msft_sym = Symbol::parse("MSFT").unwrap();
        assert_eq!(
            u.remove(&msft_sym).await.unwrap(),
            Removed::Removed {
                reverted_to_config: false
            }
        );
        assert_eq!(u.remove(&msft_sym).await.unwrap(), Removed::NotFound);
    }
}
