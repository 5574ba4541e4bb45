//! A location's past ledger written in bulk — receipts and monthly totals of doses
//! administered per lot — with on hand kept equal to what the rows add up to. For `vfc bench
//! orders`, which needs years of ledger at thousands of locations; the service's own writes go
//! through [`super::ledger::record`], one row per change.

use sqlx::AnyConnection;

use super::lots::lot_for;
use super::Result;
use crate::domain::{Funding, LotNumber};
use crate::store::{now_millis, Dialect};

/// One past change to a lot in a unit.
#[derive(Debug, Clone)]
pub struct Past {
    /// `receipt` (doses > 0) or `administration` (doses < 0).
    pub kind: &'static str,
    pub doses: i64,
    pub occurred_at: i64,
}

/// A lot's history in one unit.
#[derive(Debug, Clone)]
pub struct LotHistory {
    pub ndc: String,
    pub lot: String,
    pub funding: Funding,
    pub expires_on: chrono::NaiveDate,
    pub events: Vec<Past>,
}

/// Rows per INSERT statement (9 parameters each).
const ROWS: usize = 300;

/// Writes `lots` into unit `unit_id` of location `code` in the caller's transaction; refuses a
/// history whose on hand would go below zero.
pub async fn write(conn: &mut AnyConnection, code: &str, unit_id: i64, lots: &[LotHistory], actor: &str) -> Result<()> {
    let dialect = Dialect::of(conn);
    let now = now_millis();
    let mut rows: Vec<(i64, &Past)> = Vec::new();
    for l in lots {
        let lot_id = lot_for(conn, &l.ndc, &LotNumber::parse(&l.lot)?, l.funding, l.expires_on).await?;
        let mut events: Vec<&Past> = l.events.iter().collect();
        events.sort_by_key(|e| e.occurred_at);
        let mut on_hand = 0i64;
        for e in &events {
            on_hand += e.doses;
            if on_hand < 0 {
                return Err(super::Error::Invalid(format!(
                    "lot {}'s history takes on hand below zero",
                    l.lot
                )));
            }
        }
        let first = events.first().map_or(now, |e| e.occurred_at);
        sqlx::query(
            "INSERT INTO stock (unit_id, lot_id, location_code, on_hand, first_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (unit_id, lot_id) DO UPDATE SET on_hand = stock.on_hand + excluded.on_hand",
        )
        .bind(unit_id)
        .bind(lot_id)
        .bind(code)
        .bind(on_hand)
        .bind(first)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        rows.extend(events.into_iter().map(|e| (lot_id, e)));
    }
    for chunk in rows.chunks(ROWS) {
        let mut sql = String::from(
            "INSERT INTO stock_events (location_code, unit_id, lot_id, kind, doses, source, occurred_at, recorded_at, actor) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let p = |k: usize| dialect.param(i * 9 + k);
            sql.push_str(&format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8),
                p(9)
            ));
        }
        let mut q = sqlx::query(&sql);
        for (lot_id, e) in chunk {
            q = q
                .bind(code)
                .bind(unit_id)
                .bind(*lot_id)
                .bind(e.kind)
                .bind(e.doses)
                .bind("history")
                .bind(e.occurred_at)
                .bind(now)
                .bind(actor);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
