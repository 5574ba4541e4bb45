//! Delivers the outbox: SMTP through lettre, or `.eml` files when no SMTP server is set.
//!
//! At least once: a row is marked sent only after the server accepted it (or the file is in
//! place). A crash between the two sends it again with the same Message-ID. A temporary
//! failure (server down) is retried with backoff for as long as it takes; a permanent
//! rejection (5xx, malformed address) is recorded on the row and not retried.
//! Rows are taken with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so two instances
//! never send the same row.
//!
//! [`Mailer::prepare`] checks the SMTP settings and the sender address before the service
//! touches its database, and [`Mailer::open_folder`] creates the `.eml` folder once it has: a
//! sender that cannot start stops the service at once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::future::join_all;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::outbox::{self, Delivery, Due};
use crate::config::Settings;
use crate::store::{now_millis, Db};

/// How mail goes out: checked once at start, shared by every run of the sender.
pub struct Mailer {
    pub transport: Transport,
    pub from: Mailbox,
    /// The host in Message-IDs.
    pub public_url: url::Url,
}

impl Mailer {
    /// The transport and sender address from the settings; touches nothing on disk, so a
    /// service whose settings are wrong stops before it writes anything.
    pub async fn prepare(settings: &Settings, public_url: url::Url) -> anyhow::Result<Mailer> {
        let transport = Transport::from_settings(settings)?;
        let from = settings
            .mail_from
            .parse()
            .map_err(|e| anyhow::anyhow!("VFC_MAIL_FROM={:?} is not a mailbox: {e}", settings.mail_from))?;
        Ok(Mailer {
            transport,
            from,
            public_url,
        })
    }

    /// Creates the `.eml` folder when there is no SMTP server (nothing to do otherwise).
    pub async fn open_folder(&self) -> anyhow::Result<()> {
        if let Transport::Files(dir) = &self.transport {
            crate::files::private_dir(dir).with_context(|| format!("creating the email folder {}", dir.display()))?;
            tracing::info!(folder = %dir.display(), "no VFC_SMTP_URL: alert emails are written as .eml files");
        }
        Ok(())
    }
}

/// Where email goes.
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

impl Transport {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let Some(url) = &settings.smtp_url else {
            return Ok(Transport::Files(settings.data_dir.join("outbox")));
        };
        let host = url.host_str().context("VFC_SMTP_URL has no host")?;
        let tls_required = url.query_pairs().any(|(k, v)| k == "tls" && v == "required");
        let creds = (!url.username().is_empty()).then(|| {
            let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            Credentials::new(dec(url.username()), dec(url.password().unwrap_or_default()))
        });
        let mut builder = match url.scheme() {
            "smtps" => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?.port(url.port().unwrap_or(465)),
            _ if tls_required => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?.port(url.port().unwrap_or(587)),
            _ if creds.is_some() => bail!(
                "VFC_SMTP_URL has a user and password but no TLS: use smtps://… or smtp://…?tls=required so the password is never sent in the clear"
            ),
            _ => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(url.port().unwrap_or(25)),
        };
        if let Some(c) = creds {
            builder = builder.credentials(c);
        }
        Ok(Transport::Smtp(builder.timeout(Some(Duration::from_secs(30))).build()))
    }
}

/// The Message-ID of an outbox row: the same on every attempt.
pub fn message_id(row_id: i64, public_url: &url::Url) -> String {
    format!(
        "<vfc-outbox-{row_id}@{}>",
        public_url.host_str().unwrap_or("vfc-monitor")
    )
}

/// Sends due rows until cancelled; a pass that fails on the database is an error the
/// supervisor restarts the task on.
pub async fn run(
    db: Db,
    mailer: std::sync::Arc<Mailer>,
    nudge: std::sync::Arc<Notify>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let sent = send_due(&db, &mailer).await?;
        if sent == 0 {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = nudge.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        } else if cancel.is_cancelled() {
            return Ok(());
        }
    }
}

/// How long a taken row is reserved for its sender: after a crash mid-send, it is due again.
const LEASE_MS: i64 = 60_000;

/// Sends what is due now; returns how many rows it handled.
///
/// Rows are taken with a short lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two instances
/// take different rows), sent outside any transaction, up to 20 in flight at once over lettre's
/// pooled connections, then recorded together.
pub async fn send_due(db: &Db, mailer: &Mailer) -> anyhow::Result<usize> {
    let now = now_millis();
    let due = outbox::take_due(db, now, LEASE_MS).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let outcomes = join_all(due.iter().map(|d| deliver(d, mailer))).await;
    let mut tx = db.begin().await?;
    for (d, outcome) in due.iter().zip(outcomes) {
        outbox::record(&mut tx, d.id, outcome, d.attempts + 1, now_millis()).await?;
    }
    tx.commit().await?;
    Ok(due.len())
}

async fn deliver(d: &Due, mailer: &Mailer) -> Delivery {
    let (id, attempts) = (d.id, d.attempts + 1);
    let outcome = match compose(d, mailer) {
        Err(e) => Delivery::Permanent(e),
        Ok(message) => match &mailer.transport {
            Transport::Files(dir) => {
                // One file per row, replaced atomically: a repeat writes the same file.
                let tmp = dir.join(format!(".{id}.eml.tmp"));
                let path = dir.join(format!("{id:08}.eml"));
                // 0600: an .eml file carries live acknowledgement links.
                match crate::files::write_private_async(tmp.clone(), message.formatted())
                    .await
                    .and(tokio::fs::rename(&tmp, &path).await)
                {
                    Ok(()) => Delivery::Sent,
                    Err(e) => Delivery::Retry(format!("writing {}: {e}", path.display())),
                }
            }
            Transport::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Delivery::Sent,
                Err(e) if e.is_permanent() => Delivery::Permanent(e.to_string()),
                Err(e) => Delivery::Retry(e.to_string()),
            },
        },
    };
    match &outcome {
        Delivery::Sent => {
            metrics::counter!("vfc_emails_sent_total").increment(1);
            tracing::info!(outbox_id = id, "alert email delivered")
        }
        Delivery::Retry(e) => {
            tracing::warn!(outbox_id = id, attempts, error = %e, "email not delivered yet; will retry")
        }
        Delivery::Permanent(e) => {
            metrics::counter!("vfc_emails_failed_total").increment(1);
            tracing::error!(outbox_id = id, error = %e, "email permanently refused")
        }
    }
    outcome
}

fn compose(d: &Due, mailer: &Mailer) -> Result<Message, String> {
    let to = Mailbox::new(
        Some(d.recipient_name.clone()),
        d.recipient_email
            .parse()
            .map_err(|e| format!("recipient {:?}: {e}", d.recipient_email))?,
    );
    let builder = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(&d.subject)
        .message_id(Some(message_id(d.id, &mailer.public_url)));
    match &d.chart_png {
        None => builder
            .header(ContentType::TEXT_PLAIN)
            .body(d.body.clone())
            .map_err(|e| e.to_string()),
        // The text first, then the chart as an inline image: a reader without images still
        // has every fact in the text.
        Some(png) => builder
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(d.body.clone()))
                    .singlepart(
                        Attachment::new_inline("chart".to_string())
                            .body(png.clone(), ContentType::parse("image/png").map_err(|e| e.to_string())?),
                    ),
            )
            .map_err(|e| e.to_string()),
    }
}
