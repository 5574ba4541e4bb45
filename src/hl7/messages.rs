//! Every HL7 message taken, keyed as its sender keys it — (MSH-3, MSH-4, MSH-10) within what
//! the sender may report for — with the ACK it got: a message sent again gets the same ACK and
//! changes nothing, and another PIN's sender can neither collide with it nor read its ACK. This
//! module owns `hl7_messages`.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use crate::store::now_millis;

/// An ACK to keep, so that the same message sent again gets it back.
pub struct Kept {
    pub key: Key,
    pub sender: String,
    pub code: &'static str,
    pub ack: String,
}

/// A message is (MSH-3, MSH-4, MSH-10) within what its sender may report for.
pub type Key = (String, String, String, String);

/// The ACKs already kept for these message keys.
pub async fn kept(conn: &mut AnyConnection, keys: &[Key]) -> anyhow::Result<HashMap<Key, String>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let cond = (0..keys.len())
        .map(|i| {
            let b = 4 * i;
            format!(
                "(sender_scope = ${} AND sending_app = ${} AND sending_facility = ${} AND control_id = ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql =
        format!("SELECT sender_scope, sending_app, sending_facility, control_id, ack FROM hl7_messages WHERE {cond}");
    let mut q = sqlx::query(&sql);
    for (s, a, f, c) in keys {
        q = q.bind(s).bind(a).bind(f).bind(c);
    }
    let mut out = HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        let k = (
            r.try_get("sender_scope")?,
            r.try_get("sending_app")?,
            r.try_get("sending_facility")?,
            r.try_get("control_id")?,
        );
        out.insert(k, r.try_get("ack")?);
    }
    Ok(out)
}

pub async fn store(conn: &mut AnyConnection, rows: &[Kept]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let last = 7 * rows.len() + 1;
    let values = (0..rows.len())
        .map(|i| {
            let b = 7 * i;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${last})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO hl7_messages (sender_scope, sending_app, sending_facility, control_id, sender, ack_code, ack, received_at) \
         VALUES {values}"
    );
    let mut q = sqlx::query(&sql);
    for k in rows {
        q = q
            .bind(&k.key.0)
            .bind(&k.key.1)
            .bind(&k.key.2)
            .bind(&k.key.3)
            .bind(&k.sender)
            .bind(k.code)
            .bind(&k.ack);
    }
    q.bind(now_millis()).execute(&mut *conn).await?;
    Ok(())
}
