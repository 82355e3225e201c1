//! `dingtalk`: a custom robot webhook, `{"msgtype":"text","text":{"content":...}}`.
//!
//! With `secret_env` set, each request is signed as the robot's "加签" (signature) setting
//! documents: `sign = urlencode(base64(HMAC-SHA256(key = secret, msg = "{timestamp}\n{secret}")))`
//! with `timestamp` in milliseconds, both added to the query of the webhook URL (which already
//! holds `access_token`). DingTalk refuses a timestamp more than an hour off its clock.
//!
//! DingTalk answers HTTP 200 with `{"errcode":0,"errmsg":"ok"}`; any other `errcode` is a
//! refusal (bad signature, keyword missing) and is not retried, except 130101 ("send too fast",
//! the robot's rate limit of 20 a minute), which is.

use async_trait::async_trait;
use aws_lc_rs::hmac;
use base64::Engine;

use super::{Deliver, DeliveryError, Notice, post_json};
use crate::config::Secret;

/// The "send too fast" error code.
const TOO_FAST: i64 = 130_101;

pub(super) struct Dingtalk {
    client: reqwest::Client,
    /// Holds the access token: never logged.
    url: url::Url,
    secret: Option<Secret>,
}

impl Dingtalk {
    pub(super) fn new(client: reqwest::Client, url: url::Url, secret: Option<Secret>) -> Dingtalk {
        Dingtalk {
            client,
            url,
            secret,
        }
    }
}

/// The `sign` value for `timestamp_ms` (base64, before URL encoding; the query encoder
/// percent-encodes it).
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[async_trait]
impl Deliver for Dingtalk {
    async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let mut url = self.url.clone();
        if let Some(secret) = &self.secret {
            let ts = chrono::Utc::now().timestamp_millis();
            url.query_pairs_mut()
                .append_pair("timestamp", &ts.to_string())
                .append_pair("sign", &sign(secret.expose(), ts));
        }
        let body = serde_json::json!({
            "msgtype": "text",
            "text": { "content": notice.text() },
        });
        let answer = post_json(&self.client, url, &body).await?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&answer) else {
            // Not DingTalk's JSON (a proxy?): the POST itself succeeded.
            return Ok(());
        };
        match v.get("errcode").and_then(serde_json::Value::as_i64) {
            None | Some(0) => Ok(()),
            Some(code) => {
                let msg = v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("");
                let e = format!("dingtalk errcode {code}: {msg}");
                if code == TOO_FAST {
                    Err(DeliveryError::Transient(e))
                } else {
                    Err(DeliveryError::Permanent(e))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_matches_an_independent_hmac_sha256() {
        // Computed with Python's hmac + hashlib + base64 from DingTalk's sample code.
        assert_eq!(
            super::sign("SECabc", 1_700_000_000_000),
            "jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM="
        );
        assert_ne!(
            super::sign("SECabc", 1_700_000_000_001),
            super::sign("SECabc", 1_700_000_000_000)
        );
    }
}
