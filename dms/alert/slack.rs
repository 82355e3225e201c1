//! `slack`: an incoming webhook, `{"text": ...}` (Slack answers `200 ok`; an invalid payload
//! or a revoked hook is a 4xx, which is not retried). `&`, `<` and `>` are escaped as Slack's
//! message formatting asks, so a symbol or error text can never turn into a link or mention.

use async_trait::async_trait;

use super::{Deliver, DeliveryError, Notice, post_json};

pub(super) struct Slack {
    client: reqwest::Client,
    /// The hook URL is the credential: never logged.
    url: url::Url,
}

impl Slack {
    pub(super) fn new(client: reqwest::Client, url: url::Url) -> Slack {
        Slack { client, url }
    }
}

/// Slack's three control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[async_trait]
impl Deliver for Slack {
    async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let body = serde_json::json!({ "text": escape(&notice.text()) });
        post_json(&self.client, self.url.clone(), &body)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::escape("a<b> & c"), "a&lt;b&gt; &amp; c");
    }
}
