//! What an excursion does to the vaccine in its unit, seen from the cold chain.
//!
//! The cold chain judges temperatures and knows nothing of lots; the inventory does
//! (`crate::inventory::holds`). So the cold chain states what it needs here, and the
//! composition root (`crate::app`) hands it the inventory's implementation. The calls run in
//! the cold chain's transaction: an excursion and its holds, a review and its determinations,
//! commit together or not at all.

use futures_util::future::BoxFuture;
use sqlx::AnyConnection;

use super::excursions::record::Alarmed;
use super::excursions::review::Determination;

pub trait ExposedStock: Send + Sync {
    /// Puts every lot that had stock in the unit while the excursion lasted on "Do Not Use"
    /// hold (docs/domain.md, "After an excursion"); returns how many holds are new. Holding
    /// again changes nothing.
    fn hold<'a>(&'a self, conn: &'a mut AnyConnection, excursion: &'a Alarmed) -> BoxFuture<'a, anyhow::Result<usize>>;

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
