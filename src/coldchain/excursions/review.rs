//! The excursion worksheet (docs/domain.md, "After an excursion"): what happened, what was
//! done, and the manufacturer's determination for every lot the excursion put on hold.
//!
//! A review is a record: written once, never replaced. The write itself checks that the
//! excursion is still closed and unreviewed (`… AND status = 'closed'`), so of two reviews sent
//! at once exactly one is recorded — and the holds are determined once.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{visible_in, Excursion, Status};
use crate::accounts::audit::{self, Who};
use crate::accounts::Scope;
use crate::coldchain::stock::{Alarmed, Determination, ExposedStock};
use crate::error::{Error, Result};
use crate::store::{now_millis, rfc3339, Db};

/// Body of `POST /api/v1/excursions/{id}/review`. Every lot the excursion put on hold needs
/// its determination: viable releases it, not viable returns or wastes it (7A/7B).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// Who reviewed (name, title).
    pub reviewed_by: String,
    /// What happened.
    pub cause: String,
    /// When the excursion was found (RFC 3339).
    #[serde(default)]
    pub found_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[serde(default)]
    pub temp_when_found_c: Option<f64>,
    #[serde(default)]
    pub room_temp_c: Option<f64>,
    pub corrective_action: String,
    /// Who was contacted (manufacturers, the program).
    #[serde(default)]
    pub contacted: Vec<String>,
    #[serde(default)]
    pub manufacturer_case_number: Option<String>,
    /// One entry per affected lot (by `lot_id`, or `lot` number with `funding`).
    #[serde(default)]
    pub lot_determinations: Vec<Determination>,
    #[serde(default)]
    pub preventive_action: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

impl Review {
    fn check(&self) -> Result<()> {
        if let Some(t) = self.found_at {
            crate::domain::check_instant("found_at", t.timestamp_millis())?;
        }
        for (name, v, lo, hi) in [
            ("temp_when_found_c", self.temp_when_found_c, -100.0, 100.0),
            ("room_temp_c", self.room_temp_c, -40.0, 60.0),
        ] {
            if v.is_some_and(|t| !(lo..=hi).contains(&t)) {
                return Err(Error::Invalid(format!("\"{name}\" must be between {lo} and {hi} °C")));
            }
        }
        for (name, v) in [
            ("reviewed_by", &self.reviewed_by),
            ("cause", &self.cause),
            ("corrective_action", &self.corrective_action),
        ] {
            if v.trim().is_empty() {
                return Err(Error::Invalid(format!("\"{name}\" is required")));
            }
        }
        if let Some(d) = self
            .lot_determinations
            .iter()
            .find(|d| d.lot_id.is_none() && d.lot.as_deref().is_none_or(|l| l.trim().is_empty()))
        {
            return Err(Error::Invalid(format!(
                "each lot determination names its \"lot_id\" or \"lot\" (one names neither: {:?})",
                d.determination
            )));
        }
        Ok(())
    }
}

/// Records the review of an excursion the scope covers, and the determinations' effect on the
/// stock, in one transaction. The excursion must be back in range and not reviewed yet.
pub async fn record(
    db: &Db,
    scope: &Scope,
    id: i64,
    review: &Review,
    who: &Who,
    stock: &dyn ExposedStock,
) -> Result<Excursion> {
    let actor = who.actor.as_str();
    review.check()?;
    let mut tx = db.begin().await?;
    // SQLite: be the one writer before reading, or a review that read while another committed
    // could not write at all (its snapshot is outdated) instead of finding it reviewed.
    super::record::claim_writer(&mut tx).await?;
    let e = visible_in(&mut tx, scope, id).await?;
    let mut stored = serde_json::to_value(review).expect("a review serialises");
    stored["recorded_by"] = serde_json::Value::String(actor.to_string());
    stored["recorded_at"] = serde_json::Value::String(rfc3339(now_millis()));
    // Only a closed excursion is reviewed, and only once: the condition is part of the write,
    // so a second review sent at the same moment finds nothing to write (PostgreSQL waits on
    // the row lock; SQLite on its one writer) and is told why below.
    let written = sqlx::query(
        "UPDATE excursions SET review = $1, status = 'reviewed', updated_at = $2 WHERE id = $3 AND status = 'closed'",
    )
    .bind(stored.to_string())
    .bind(now_millis())
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if written == 0 {
        let now = sqlx::query("SELECT status, review FROM excursions WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let status: String = now.try_get("status")?;
        return Err(
            match Status::parse(&status).map_err(|e| Error::unreadable("excursions", id, e))? {
                Status::Open => {
                    Error::Conflict("the unit is still out of range: review once it is back in range".into())
                }
                _ => {
                    let by = now
                        .try_get::<Option<String>, _>("review")?
                        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
                        .and_then(|r| r["reviewed_by"].as_str().map(String::from))
                        .unwrap_or_else(|| "someone".into());
                    Error::Conflict(format!(
                        "excursion {id} was already reviewed by {by}; a review is a record and is not replaced"
                    ))
                }
            },
        );
    }
    let f = super::facts(&mut tx, e.id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no excursion {id}")))?;
    let alarmed = Alarmed {
        id,
        unit_id: f.unit_id,
        location_code: f.location_code,
        started_at: f.started_at,
        ended_at: f.ended_at,
        above_range: f.above_range,
    };
    // The manufacturer's determinations act on the holds in the same transaction as the review.
    stock
        .determine(&mut tx, &alarmed, &review.lot_determinations, actor)
        .await?;
    let reviewed = visible_in(&mut tx, scope, id).await?;
    let entry = audit::Entry::new("excursion.review", "excursion", [id])
        .changed("cause", serde_json::Value::Null, review.cause.as_str())
        .changed(
            "lot_determinations",
            serde_json::Value::Null,
            review.lot_determinations.len(),
        );
    crate::registry::units::audited(&mut tx, who, entry, alarmed.unit_id).await?;
    tx.commit().await?;
    Ok(reviewed)
}
