//! `webhook`: the notice as JSON ([`Notice::to_json`]) POSTed to the configured URL.

use async_trait::async_trait;

use super::{Deliver, DeliveryError, Notice, post_json};

pub(super) struct Webhook {
    client: reqwest::Client,
    /// May carry a token: never logged.
    url: url::Url,
}

impl Webhook {
    pub(super) fn new(client: reqwest::Client, url: url::Url) -> Webhook {
        Webhook { client, url }
    }
}

#[async_trait]
impl Deliver for Webhook {
    async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        post_json(&self.client, self.url.clone(), &notice.to_json())
            .await
            .map(drop)
    }
}
