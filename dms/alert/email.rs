//! `email`: one plain-text message per notice over SMTP (`lettre` on tokio with rustls).
//!
//! The `smtp` URL chooses the transport, as lettre reads it: `smtp://host:port` is plain SMTP
//! (for a relay on loopback), `smtp://host:port?tls=required` upgrades with STARTTLS,
//! `smtps://host:port` is TLS from the first byte. A user name in the URL
//! (`smtp://alerts@host`) logs in with the password of `password_env`; a password written
//! into the URL itself is ignored, secrets belong in the environment.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Deliver, DeliveryError, Notice};
use crate::config::{AlertConfig, Secret};

pub(super) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub(super) fn new(
        c: &AlertConfig,
        password: Option<Secret>,
        timeout: Duration,
    ) -> Result<Email, String> {
        let smtp = c.smtp.as_deref().ok_or("smtp is required")?;
        let mut url = url::Url::parse(smtp).map_err(|_| "smtp is not a URL".to_string())?;
        let user = url.username().to_string();
        // Neither the user nor a stray password goes to lettre through the URL.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())
            .map_err(|e| format!("smtp: {e}"))?
            .timeout(Some(timeout));
        if let Some(pw) = password {
            let user = percent_decode(&user);
            builder = builder.credentials(Credentials::new(user, pw.expose().to_string()));
        }
        let from = c
            .from
            .as_deref()
            .ok_or("from is required")?
            .parse()
            .map_err(|e| format!("from: {e}"))?;
        let to =
            c.to.iter()
                .map(|t| t.parse().map_err(|e| format!("to {t:?}: {e}")))
                .collect::<Result<Vec<Mailbox>, String>>()?;
        if to.is_empty() {
            return Err("to is required".into());
        }
        Ok(Email {
            transport: builder.build(),
            from,
            to,
        })
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("u={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[async_trait]
impl Deliver for Email {
    async fn deliver(&self, notice: &Notice) -> Result<(), DeliveryError> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(notice.title());
        for t in &self.to {
            m = m.to(t.clone());
        }
        let details = serde_json::to_string_pretty(&notice.to_json()).unwrap_or_default();
        let message = m
            .header(ContentType::TEXT_PLAIN)
            .body(format!("{}\n\n{details}\n", notice.text()))
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!("smtp: {e}"))),
            Err(e) => Err(DeliveryError::Transient(format!("smtp: {e}"))),
        }
    }
}
