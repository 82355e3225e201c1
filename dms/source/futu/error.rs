//! OpenD refusals (`retType != 0`) and what they mean for DMS.
//!
//! OpenD publishes no catalogue of `errCode`s ("errCode is only for logging"), so refusals are
//! classified on `retMsg` substrings, in both languages because the text follows OpenD's `lang`
//! setting (research §4.3). The Chinese texts are quoted verbatim in several public clients;
//! the English ones are reconstructed and UNCONFIRMED against a live OpenD, so the matching is
//! deliberately loose (`too frequent`, `quota`).

use std::time::Duration;

use super::proto::ret_type;
use crate::domain::SourceKind;
use crate::source::SourceError;

/// How long to wait after OpenD says "too frequent": its window is 30 s.
pub const RATE_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// `获取历史K线频率太高，请求失败，每30秒最多60次。` — retried after the window.
    RateLimited,
    /// `历史K线额度不足…` — the distinct-securities quota is used up; not retried.
    QuotaExhausted,
    /// The security does not exist.
    UnknownSecurity,
    /// OpenD timed out or lost its own connection (`retType` -100, -200); retried.
    Transient,
    Other,
}

/// A `Response` whose `retType` is not 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub proto: &'static str,
    pub ret_type: i32,
    pub ret_msg: String,
    pub err_code: Option<i32>,
}

impl Refusal {
    pub fn kind(&self) -> RefusalKind {
        if self.ret_type == ret_type::TIME_OUT || self.ret_type == ret_type::DISCONNECT {
            return RefusalKind::Transient;
        }
        let msg = self.ret_msg.to_lowercase();
        let has = |needles: &[&str]| needles.iter().any(|n| msg.contains(n));
        if has(&["额度不足", "额度", "quota"]) {
            RefusalKind::QuotaExhausted
        } else if has(&[
            "频率太高",
            "频率",
            "too frequent",
            "frequency",
            "rate limit",
            "too many requests",
        ]) {
            RefusalKind::RateLimited
        } else if has(&[
            "未知股票",
            "未知的股票",
            "股票不存在",
            "unknown stock",
            "unknown security",
            "security does not exist",
            "stock does not exist",
        ]) {
            RefusalKind::UnknownSecurity
        } else {
            RefusalKind::Other
        }
    }

    /// The [`SourceError`] for this refusal; `symbol` names the security for
    /// [`SourceError::UnknownSymbol`].
    pub fn into_error(self, symbol: Option<&str>) -> SourceError {
        let src = SourceKind::Futu;
        let detail = || {
            let code = self
                .err_code
                .map(|c| format!(", errCode {c}"))
                .unwrap_or_default();
            let msg = if self.ret_msg.is_empty() {
                "no message".to_string()
            } else {
                self.ret_msg.clone()
            };
            format!("retType {}{code}: {msg}", self.ret_type)
        };
        match self.kind() {
            RefusalKind::RateLimited => SourceError::RateLimited {
                src,
                retry_after: Some(RATE_LIMIT_RETRY_AFTER),
            },
            RefusalKind::QuotaExhausted => SourceError::Remote {
                src,
                message: format!("history k-line quota exhausted ({})", detail()),
            },
            RefusalKind::UnknownSecurity => match symbol {
                Some(s) => SourceError::UnknownSymbol {
                    src,
                    symbol: s.to_string(),
                },
                None => SourceError::Remote {
                    src,
                    message: format!("{} refused: {}", self.proto, detail()),
                },
            },
            RefusalKind::Transient if self.ret_type == ret_type::TIME_OUT => SourceError::Timeout {
                src,
                message: format!("{} timed out inside opend: {}", self.proto, detail()),
            },
            RefusalKind::Transient => SourceError::transient(
                src,
                format!("{} failed inside opend: {}", self.proto, detail()),
            ),
            RefusalKind::Other => SourceError::Remote {
                src,
                message: format!("{} refused: {}", self.proto, detail()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(ret_type: i32, msg: &str) -> Refusal {
        Refusal {
            proto: "Qot_RequestHistoryKL",
            ret_type,
            ret_msg: msg.into(),
            err_code: None,
        }
    }

    #[test]
    fn classifies_rate_limit_messages_in_both_languages() {
        for msg in [
            "获取历史K线频率太高，请求失败，每30秒最多60次。",
            "Request history candlestick too frequently, at most 60 per 30 seconds",
            "Requests are too frequent",
        ] {
            assert_eq!(refusal(-1, msg).kind(), RefusalKind::RateLimited, "{msg}");
            let e = refusal(-1, msg).into_error(None);
            assert!(e.is_retryable());
            assert_eq!(e.to_string(), "futu: rate limited, retry in 30s");
        }
    }

    #[test]
    fn classifies_quota_messages_as_final() {
        for msg in [
            "历史K线额度不足，请求失败。额度会滚动释放，直至30天后全部释放。",
            "历史K线额度不足，请求失败（已用正股额度：100/100，期权额度：0/20）。",
            "Insufficient historical candlestick quota",
        ] {
            assert_eq!(
                refusal(-1, msg).kind(),
                RefusalKind::QuotaExhausted,
                "{msg}"
            );
            let e = refusal(-1, msg).into_error(None);
            assert!(!e.is_retryable());
            assert!(
                e.to_string()
                    .starts_with("futu: history k-line quota exhausted (retType -1: "),
                "{e}"
            );
        }
    }

    #[test]
    fn other_refusals_keep_opend_s_message() {
        let e = Refusal {
            err_code: Some(42),
            ..refusal(-1, "参数错误")
        }
        .into_error(Some("0700.HK"));
        assert_eq!(
            e.to_string(),
            "futu: Qot_RequestHistoryKL refused: retType -1, errCode 42: 参数错误"
        );
        assert!(!e.is_retryable());
        let e = refusal(-1, "未知股票").into_error(Some("0700.HK"));
        assert_eq!(e.to_string(), "futu: symbol 0700.HK not found");
        let e = refusal(ret_type::DISCONNECT, "").into_error(None);
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().ends_with("retType -200: no message"), "{e}");
    }
}
