//! What an excursion does to the vaccine in its unit, seen from the cold chain.
//!
//! The cold chain judges temperatures and knows nothing of lots; the inventory does
//! (`crate::inventory::holds`). So the cold chain states what it needs here, and the
//! composition root (`crate::app`) hands it the inventory's implementation. The calls run in
//! the cold chain's transaction: an excursion and its holds, a review and its determinations,
//! commit together or not at all.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::domain::Funding;
use crate::store::Db;

/// An excursion that met a rule, as the stock in its unit needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarmed {
    pub id: i64,
    pub unit_id: i64,
    pub location_code: String,
    pub started_at: i64,
    /// `None` while it lasts.
    pub ended_at: Option<i64>,
    pub above_range: bool,
}

/// A lot an excursion put on hold, as an email lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldLot {
    pub product: String,
    pub lot: String,
    /// `YYYY-MM-DD`
    pub expires_on: String,
    /// vfc | private | state
    pub funding: String,
    /// Doses on hand in the unit.
    pub doses: i64,
}

/// Whether the lot may still be used, as the manufacturer determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Viability {
    Viable,
    NotViable,
}

/// What becomes of a lot that is not viable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteOff {
    /// Unopened, back to the distributor (the default).
    Return,
    /// Disposed of on site.
    Waste,
}

/// One lot's determination in an excursion review.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Determination {
    /// The lot, by id (as in the inventory) …
    #[serde(default)]
    pub lot_id: Option<i64>,
    /// … or by lot number.
    #[serde(default)]
    pub lot: Option<String>,
    /// When a lot number is held with more than one funding.
    #[serde(default)]
    pub funding: Option<Funding>,
    pub determination: Viability,
    /// For not_viable: return (the default) or waste.
    #[serde(default)]
    pub action: Option<WriteOff>,
    #[serde(default)]
    pub case_number: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

pub trait ExposedStock: Send + Sync {
    /// Puts every lot that had stock in the unit while the excursion lasted on "Do Not Use"
    /// hold (docs/domain.md, "After an excursion"); returns how many holds are new. Holding
    /// again changes nothing.
    fn hold<'a>(&'a self, conn: &'a mut AnyConnection, excursion: &'a Alarmed) -> BoxFuture<'a, anyhow::Result<usize>>;

    /// The units that store vaccine now: a unit that does must be watched by a logger.
    fn stocked_units<'a>(&'a self, db: &'a Db) -> BoxFuture<'a, anyhow::Result<Vec<i64>>>;

    /// The lots an excursion holds now, as its emails list them (a coordinator phones the
    /// manufacturers with them).
    fn held<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        excursion_id: i64,
    ) -> BoxFuture<'a, anyhow::Result<Vec<HeldLot>>>;

    /// Acts on the manufacturer's determinations: viable releases a lot, not viable returns or
    /// wastes it. Every open hold of the excursion needs one; the error says which are missing.
    fn determine<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        excursion: &'a Alarmed,
        lots: &'a [Determination],
        actor: &'a str,
    ) -> BoxFuture<'a, crate::error::Result<()>>;
}
