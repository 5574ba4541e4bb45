//! Emails about an order, queued in the outbox in the transaction of the change: the
//! location's primary and backup coordinators on approved (with reductions and why), denied,
//! returned, shipped (with carriers and tracking numbers) and received; the state too when
//! stock arrived damaged or out of range.

use sqlx::{AnyConnection, Row};

use crate::alerts::{outbox, About, Email, Recipient};
use crate::error::Result;

/// The location's coordinators, as the registry has them (whether or not they have accounts).
async fn coordinators(conn: &mut AnyConnection, code: &str) -> Result<Vec<Recipient>> {
    let Some(r) = sqlx::query(
        "SELECT primary_name, primary_email, backup_name, backup_email FROM location_contacts WHERE code = $1",
    )
    .bind(code)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(Vec::new());
    };
    let mut out = vec![Recipient::new(
        r.try_get::<String, _>("primary_name")?,
        r.try_get::<String, _>("primary_email")?,
    )];
    let backup = Recipient::new(
        r.try_get::<String, _>("backup_name")?,
        r.try_get::<String, _>("backup_email")?,
    );
    if !backup.email.eq_ignore_ascii_case(&out[0].email) {
        out.push(backup);
    }
    Ok(out)
}

/// Queues `subject`/`text` about order `order_id` at `code` to its coordinators (and the
/// program's state coordinators when `tell_state`).
pub async fn tell(
    conn: &mut AnyConnection,
    order_id: i64,
    code: &str,
    purpose: &str,
    subject: &str,
    text: &str,
    tell_state: bool,
) -> Result<()> {
    let mut to = coordinators(conn, code).await?;
    if tell_state {
        let program = crate::coldchain::settings::program_in(conn).await?;
        to.extend(
            program
                .state_coordinators
                .iter()
                .map(|p| Recipient::new(&p.name, &p.email)),
        );
    }
    for r in &to {
        let body = format!(
            "{name},\n\n{text}\n\nThe order: GET /api/v1/orders/{order_id} (page /orders/{order_id}).\n\n— vfc-monitor\n",
            name = r.name
        );
        outbox::enqueue(
            conn,
            &Email {
                about: About::Order(order_id),
                purpose,
                to: r,
                subject,
                body: &body,
            },
        )
        .await?;
    }
    Ok(())
}
