//! The historical K-line quota: how many *distinct* securities the account may download in
//! OpenD's rolling window (research §4.2). Repeats of a security already in the window, at any
//! interval, are free.
//!
//! [`QuotaTracker`] keeps what Qot_RequestHistoryKLQuota (3104) last said — used, remaining and
//! the securities already downloaded — and accounts locally for new securities in between, so
//! a batch of new securities costs one 3104 request per [`QUOTA_TTL`] rather than one each.
//! A new security is *reserved* (remaining − 1) before its first page is sent, so concurrent
//! downloads cannot overrun the quota between two checks. An exhausted quota fails new
//! securities fast with a [`SourceError::Remote`] until a later check (the quota is released
//! on a rolling basis) finds room again; securities already in the window keep working.
//! Concurrent downloads that all need a check share one 3104 request: the first leads, the
//! others wait for its outcome.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::proto::{common::Security, history_kl_quota};
use crate::domain::{SourceKind, time};
use crate::source::SourceError;

/// How long a 3104 answer is trusted for new securities.
pub const QUOTA_TTL: Duration = Duration::from_secs(300);

/// What `FutuSource::quota` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuotaStatus {
    /// Distinct securities used in the window, by OpenD's last count plus local reservations.
    pub used: u32,
    pub remaining: u32,
    /// Securities known to be in the window (free to download again).
    pub securities: usize,
    /// When OpenD was last asked (RFC 3339).
    pub checked_at: String,
}

/// The outcome of asking whether a security may be downloaded.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// In the window already, or reserved now.
    Admitted,
    /// The cached answer is missing or stale: ask OpenD (3104) and try again.
    Refresh,
    Refused(SourceError),
}

#[derive(Debug, Default)]
struct State {
    known: HashSet<String>,
    used: i64,
    remaining: i64,
    checked: Option<(Instant, i64)>,
    /// A 3104 request is on its way.
    refreshing: bool,
}

/// Who asks OpenD when several downloads need a check at once.
pub enum Refresh<'a> {
    /// This caller asks; the others wait until the guard is dropped.
    Lead(RefreshGuard<'a>),
    /// Someone else is asking: wait for the next change, then look again.
    Follow(watch::Receiver<u64>),
}

/// Ends a lead refresh when dropped (also when the request fails or is cancelled).
pub struct RefreshGuard<'a>(&'a QuotaTracker);

impl Drop for RefreshGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().refreshing = false;
        self.0.refreshed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Shared by every download of one source.
#[derive(Debug)]
pub struct QuotaTracker {
    /// A std `Mutex`: never held across an `.await`.
    state: Mutex<State>,
    /// Bumped when a refresh ends, waking the callers that waited for it.
    refreshed: watch::Sender<u64>,
}

impl Default for QuotaTracker {
    fn default() -> QuotaTracker {
        QuotaTracker {
            state: Mutex::new(State::default()),
            refreshed: watch::channel(0).0,
        }
    }
}

impl QuotaTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides who asks OpenD after [`Admission::Refresh`].
    pub fn begin_refresh(&self) -> Refresh<'_> {
        let mut st = self.lock();
        if st.refreshing {
            // Subscribed under the lock, so the leader's bump cannot be missed.
            Refresh::Follow(self.refreshed.subscribe())
        } else {
            st.refreshing = true;
            Refresh::Lead(RefreshGuard(self))
        }
    }

    /// Admits `code` (`HK.00700`) or says why not. `stale_ok` accepts a cached answer of any age
    /// (used right after a refresh).
    pub fn admit(&self, code: &str, stale_ok: bool) -> Admission {
        let mut st = self.lock();
        if st.known.contains(code) {
            return Admission::Admitted;
        }
        let fresh = st
            .checked
            .is_some_and(|(at, _)| stale_ok || at.elapsed() < QUOTA_TTL);
        if !fresh {
            return Admission::Refresh;
        }
        if st.remaining > 0 {
            st.remaining -= 1;
            st.used += 1;
            st.known.insert(code.to_string());
            tracing::debug!(
                source = "futu",
                code,
                remaining = st.remaining,
                "history quota reserved"
            );
            return Admission::Admitted;
        }
        Admission::Refused(SourceError::Remote {
            src: SourceKind::Futu,
            message: format!(
                "history k-line quota exhausted (used {}, remaining 0): {code} is not among the \
                 securities downloaded in the quota window",
                st.used
            ),
        })
    }

    /// Records OpenD's answer to 3104.
    pub fn update(&self, s2c: &history_kl_quota::S2c, now_utc: i64) {
        let known: HashSet<String> = s2c
            .detail_list
            .iter()
            .map(|d| code_of(&d.security))
            .collect();
        let mut st = self.lock();
        st.used = i64::from(s2c.used_quota.max(0));
        st.remaining = i64::from(s2c.remain_quota.max(0));
        st.known = known;
        st.checked = Some((Instant::now(), now_utc));
        if st.remaining == 0 {
            tracing::warn!(
                source = "futu",
                used = st.used,
                securities = st.known.len(),
                "history k-line quota exhausted: only securities already in the window can be downloaded"
            );
        } else {
            tracing::info!(
                source = "futu",
                used = st.used,
                remaining = st.remaining,
                securities = st.known.len(),
                "history k-line quota checked"
            );
        }
    }

    /// OpenD refused a download for quota: nothing new until the next check.
    pub fn mark_exhausted(&self, now_utc: i64) {
        let mut st = self.lock();
        st.remaining = 0;
        st.checked = Some((Instant::now(), now_utc));
        tracing::warn!(
            source = "futu",
            used = st.used,
            "opend refused a download for history k-line quota"
        );
    }

    pub fn status(&self) -> Option<QuotaStatus> {
        let st = self.lock();
        let (_, at) = st.checked?;
        Some(QuotaStatus {
            used: st.used.clamp(0, i64::from(u32::MAX)) as u32,
            remaining: st.remaining.clamp(0, i64::from(u32::MAX)) as u32,
            securities: st.known.len(),
            checked_at: time::rfc3339(at),
        })
    }
}

/// `HK.00700` for `{1, "00700"}`; markets DMS has no prefix for keep their number (`M31.D05`).
pub fn code_of(s: &Security) -> String {
    use super::proto::qot_market::*;
    let prefix = match s.market {
        HK_SECURITY => "HK".to_string(),
        US_SECURITY => "US".to_string(),
        CNSH_SECURITY => "SH".to_string(),
        CNSZ_SECURITY => "SZ".to_string(),
        m => format!("M{m}"),
    };
    format!("{prefix}.{}", s.code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::futu::proto::history_kl_quota::DetailItem;

    fn answer(used: i32, remain: i32, codes: &[(i32, &str)]) -> history_kl_quota::S2c {
        history_kl_quota::S2c {
            used_quota: used,
            remain_quota: remain,
            detail_list: codes
                .iter()
                .map(|(m, c)| DetailItem {
                    security: Security {
                        market: *m,
                        code: c.to_string(),
                    },
                    request_time: "2024-01-02 10:00:00".into(),
                    request_time_stamp: None,
                    name: None,
                })
                .collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reserves_new_securities_and_refuses_once_exhausted() {
        let q = QuotaTracker::default();
        assert_eq!(q.admit("HK.00700", false), Admission::Refresh);
        q.update(&answer(1, 1, &[(1, "00700")]), 0);
        assert_eq!(q.admit("HK.00700", false), Admission::Admitted);
        assert_eq!(q.admit("US.AAPL", false), Admission::Admitted);
        assert_eq!(
            q.admit("US.AAPL", false),
            Admission::Admitted,
            "free once reserved"
        );
        let Admission::Refused(e) = q.admit("SH.600519", false) else {
            panic!("expected a refusal")
        };
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("SH.600519"), "{e}");
        let st = q.status().unwrap();
        assert_eq!((st.used, st.remaining, st.securities), (2, 0, 2));
        // The cached answer goes stale: the next new security asks OpenD again.
        tokio::time::advance(QUOTA_TTL).await;
        assert_eq!(q.admit("SH.600519", false), Admission::Refresh);
        assert_eq!(q.admit("HK.00700", false), Admission::Admitted);
    }

    #[tokio::test]
    async fn one_caller_leads_a_refresh_and_the_others_wait_for_it() {
        let q = QuotaTracker::default();
        let lead = match q.begin_refresh() {
            Refresh::Lead(g) => g,
            Refresh::Follow(_) => panic!("nobody was refreshing"),
        };
        let Refresh::Follow(mut rx) = q.begin_refresh() else {
            panic!("a refresh is in progress")
        };
        q.update(&answer(0, 5, &[]), 0);
        drop(lead);
        rx.changed().await.unwrap();
        assert_eq!(q.admit("HK.00700", true), Admission::Admitted);
        assert!(matches!(q.begin_refresh(), Refresh::Lead(_)));
    }

    #[test]
    fn names_codes_like_futu() {
        let s = |m, c: &str| Security {
            market: m,
            code: c.into(),
        };
        assert_eq!(code_of(&s(1, "00700")), "HK.00700");
        assert_eq!(code_of(&s(11, "AAPL")), "US.AAPL");
        assert_eq!(code_of(&s(21, "600519")), "SH.600519");
        assert_eq!(code_of(&s(22, "000001")), "SZ.000001");
        assert_eq!(code_of(&s(31, "D05")), "M31.D05");
    }
}
