//! What a location's ledger says about its use of each brand, for orders (README, "Ordering"):
//! doses administered in the last year net of doses given back, the first administration,
//! usable and short-dated stock, wastage against receipts. Public stock only: private doses are
//! never ordered here and never counted in a suggestion.

use std::collections::BTreeSet;

use sqlx::{AnyConnection, Row};

use super::Result;
use crate::store::Db;

/// A brand is a vaccine (CVX) from one manufacturer (MVX), whatever its NDCs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Brand {
    pub cvx: String,
    pub mvx: Option<String>,
}

/// One brand and funding at one location.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrandUse {
    /// Doses administered since `since` (the last 365 days), net of doses given back.
    pub administered: i64,
    /// The first administration ever recorded here (epoch ms).
    pub first_administered_at: Option<i64>,
    /// Doses in lots not expired, not on hold and not expiring within the margin.
    pub usable: i64,
    /// Doses in lots (not expired, not on hold) expiring within the short-dated horizon.
    pub short_dated: i64,
    pub wasted: i64,
    pub received: i64,
}

/// What [`of_location`] reads against.
pub struct Horizon {
    /// Epoch ms: administrations, wastage and receipts from here on count (a year ago).
    pub since: i64,
    /// Lots expiring on or before this day are not usable (today + the usable margin).
    pub unusable_through: chrono::NaiveDate,
    /// Lots expiring on or before this day are short dated.
    pub short_dated_through: chrono::NaiveDate,
    pub today: chrono::NaiveDate,
}

/// Use per (brand, funding) at location `code`, public stock only.
pub async fn of_location(
    conn: &mut AnyConnection,
    code: &str,
    h: &Horizon,
) -> Result<Vec<((Brand, String), BrandUse)>> {
    let mut out: std::collections::BTreeMap<(Brand, String), BrandUse> = Default::default();
    // One pass over the location's administrations, wastage and receipts, each counted unless
    // a later row reversed it (a dose the EHR deleted, a receipt entered by mistake).
    let rows = sqlx::query(
        "SELECT p.cvx, p.mvx, l.funding, \
         CAST(SUM(CASE WHEN e.kind = 'administration' AND e.occurred_at >= $2 THEN -e.doses ELSE 0 END) AS BIGINT) AS given, \
         MIN(CASE WHEN e.kind = 'administration' THEN e.occurred_at END) AS first_at, \
         CAST(SUM(CASE WHEN e.kind = 'wastage' AND e.occurred_at >= $2 THEN -e.doses ELSE 0 END) AS BIGINT) AS wasted, \
         CAST(SUM(CASE WHEN e.kind = 'receipt' AND e.occurred_at >= $2 THEN e.doses ELSE 0 END) AS BIGINT) AS received \
         FROM stock_events e JOIN lots l ON l.id = e.lot_id JOIN products p ON p.ndc = l.ndc \
         WHERE e.location_code = $1 AND e.kind IN ('administration', 'wastage', 'receipt') AND l.funding <> 'private' \
         AND NOT EXISTS (SELECT 1 FROM stock_events r WHERE r.reverses = e.id) \
         GROUP BY p.cvx, p.mvx, l.funding",
    )
    .bind(code)
    .bind(h.since)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let key = (
            Brand {
                cvx: r.try_get("cvx")?,
                mvx: r.try_get("mvx")?,
            },
            r.try_get::<String, _>("funding")?,
        );
        let u = out.entry(key).or_default();
        u.administered = r.try_get("given")?;
        u.first_administered_at = r.try_get("first_at")?;
        u.wasted = r.try_get("wasted")?;
        u.received = r.try_get("received")?;
    }
    let stock = sqlx::query(
        "SELECT p.cvx, p.mvx, l.funding, l.expires_on, s.on_hand, \
         CAST((SELECT COUNT(*) FROM holds h WHERE h.unit_id = s.unit_id AND h.lot_id = s.lot_id AND h.ended_at IS NULL) AS BIGINT) AS held \
         FROM stock s JOIN lots l ON l.id = s.lot_id JOIN products p ON p.ndc = l.ndc \
         WHERE s.location_code = $1 AND s.on_hand > 0 AND l.funding <> 'private'",
    )
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    let (today, unusable, short) = (
        h.today.to_string(),
        h.unusable_through.to_string(),
        h.short_dated_through.to_string(),
    );
    for r in stock {
        let expires: String = r.try_get("expires_on")?;
        let held = r.try_get::<i64, _>("held")? > 0;
        if held || expires < today {
            continue;
        }
        let key = (
            Brand {
                cvx: r.try_get("cvx")?,
                mvx: r.try_get("mvx")?,
            },
            r.try_get::<String, _>("funding")?,
        );
        let on_hand: i64 = r.try_get("on_hand")?;
        let u = out.entry(key).or_default();
        if expires > unusable {
            u.usable += on_hand;
        }
        if expires <= short {
            u.short_dated += on_hand;
        }
    }
    Ok(out.into_iter().collect())
}

/// Public doses administered at `code` since `since` (epoch ms), net of doses given back: the
/// yearly figure the order frequency tier reads.
pub async fn administered_since(conn: &mut AnyConnection, code: &str, since: i64) -> Result<i64> {
    Ok(sqlx::query(
        "SELECT CAST(COALESCE(SUM(-e.doses), 0) AS BIGINT) AS n FROM stock_events e JOIN lots l ON l.id = e.lot_id \
         WHERE e.location_code = $1 AND e.kind = 'administration' AND e.occurred_at >= $2 AND l.funding <> 'private' \
         AND NOT EXISTS (SELECT 1 FROM stock_events r WHERE r.reverses = e.id)",
    )
    .bind(code)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?)
}

/// The storage units of `code` that held stock at any time since `since` (epoch ms): those
/// with doses now, and those whose ledger moved since.
pub async fn units_that_held_stock(conn: &mut AnyConnection, code: &str, since: i64) -> Result<Vec<i64>> {
    let mut units = BTreeSet::new();
    for r in
        sqlx::query("SELECT DISTINCT unit_id FROM stock WHERE location_code = $1 AND (on_hand > 0 OR updated_at >= $2)")
            .bind(code)
            .bind(since)
            .fetch_all(&mut *conn)
            .await?
    {
        units.insert(r.try_get::<i64, _>("unit_id")?);
    }
    Ok(units.into_iter().collect())
}

/// Doses administered at `code` per calendar month of `tz`, for each product named in
/// `products`, over the `months` months that end with this one: the months' labels
/// (`2026-11`, oldest first) and each product's counts in the same order. Doses given back
/// (reversed) are not counted, as in the suggestion's year of use.
pub async fn monthly(
    db: &Db,
    code: &str,
    products: &[String],
    tz: chrono_tz::Tz,
    months: u32,
) -> Result<(Vec<String>, std::collections::BTreeMap<String, Vec<i64>>)> {
    use chrono::{Datelike, TimeZone};
    let now = chrono::Utc::now().with_timezone(&tz);
    let mut starts = Vec::new();
    let (mut y, mut m) = (now.year(), now.month());
    for _ in 0..months.max(1) {
        starts.push((y, m));
        (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    }
    starts.reverse();
    let labels: Vec<String> = starts.iter().map(|(y, m)| format!("{y}-{m:02}")).collect();
    let (y0, m0) = starts[0];
    let from = tz
        .with_ymd_and_hms(y0, m0, 1, 0, 0, 0)
        .earliest()
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    let rows = sqlx::query(
        "SELECT pr.name, e.occurred_at, e.doses FROM stock_events e JOIN lots l ON l.id = e.lot_id \
         JOIN products pr ON pr.ndc = l.ndc \
         WHERE e.location_code = $1 AND e.kind = 'administration' AND e.occurred_at >= $2",
    )
    .bind(code)
    .bind(from)
    .fetch_all(&db.pool)
    .await?;
    let mut out: std::collections::BTreeMap<String, Vec<i64>> =
        products.iter().map(|p| (p.clone(), vec![0; labels.len()])).collect();
    for r in rows {
        let name: String = r.try_get("name")?;
        let Some(counts) = out.get_mut(&name) else {
            continue;
        };
        let at: i64 = r.try_get("occurred_at")?;
        let Some(t) = tz.timestamp_millis_opt(at).single() else {
            continue;
        };
        let label = format!("{}-{:02}", t.year(), t.month());
        if let Some(i) = labels.iter().position(|l| *l == label) {
            counts[i] += -r.try_get::<i64, _>("doses")?;
        }
    }
    Ok((labels, out))
}
