//! A lot's cumulative exposure: its time out of range across every excursion of every unit it
//! has been in, transfers included (docs/domain.md: the manufacturer judges viability on the total).
//!
//! Nothing is stored: the ledger says when the lot was in which unit (and where transferred
//! doses came from), the excursions say what those units went through. An excursion that
//! overlaps the lot's stay counts whole — the conservative reading for a viability call.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::Result;
use crate::store::now_millis;

/// One ledger row of the lot, as exposure needs it.
#[derive(Debug, Clone)]
pub struct Move {
    pub unit_id: i64,
    pub doses: i64,
    pub at: i64,
    /// A transfer in: the unit the doses came from.
    pub from_unit: Option<i64>,
}

/// One excursion of a unit the lot was in, as the cold chain records it.
pub type Episode = crate::coldchain::excursions::Span;

#[derive(Debug, Default, Clone, Serialize, ToSchema, PartialEq)]
pub struct UnitExposure {
    pub unit_id: i64,
    pub above_range_minutes: f64,
    pub below_range_minutes: f64,
    pub min_c: Option<f64>,
    pub max_c: Option<f64>,
    pub excursion_ids: Vec<i64>,
}

/// The total, and the same split per unit.
#[derive(Debug, Default, Clone, Serialize, ToSchema, PartialEq)]
pub struct Exposure {
    pub above_range_minutes: f64,
    pub below_range_minutes: f64,
    pub min_c: Option<f64>,
    pub max_c: Option<f64>,
    pub excursions: usize,
    pub by_unit: Vec<UnitExposure>,
}

/// When the lot had stock in `unit`: [from, to) spans, the last open until `now`.
fn stays(moves: &[Move], unit: i64, now: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let (mut on_hand, mut since) = (0i64, None);
    for m in moves.iter().filter(|m| m.unit_id == unit) {
        let before = on_hand;
        on_hand += m.doses;
        if before <= 0 && on_hand > 0 {
            since = Some(m.at);
        } else if before > 0 && on_hand <= 0 {
            out.push((since.take().unwrap_or(m.at), m.at));
        }
    }
    if let Some(s) = since {
        out.push((s, now));
    }
    out
}

/// The (unit, span) pairs the doses now in `unit` went through up to `until`, following
/// transfers back to where they came from.
fn path(moves: &[Move], unit: i64, until: i64, now: i64, depth: usize, out: &mut Vec<(i64, i64, i64)>) {
    if depth > 16 {
        return;
    }
    for (a, b) in stays(moves, unit, now) {
        if a <= until {
            out.push((unit, a, b.min(until)));
        }
    }
    for m in moves
        .iter()
        .filter(|m| m.unit_id == unit && m.at <= until && m.doses > 0)
    {
        if let Some(from) = m.from_unit.filter(|f| *f != unit) {
            path(moves, from, m.at, now, depth + 1, out);
        }
    }
}

/// The exposure of the lot's stock in `unit` (moves in time order).
pub fn compute(moves: &[Move], episodes: &[Episode], unit: i64, now: i64) -> Exposure {
    let mut spans = Vec::new();
    path(moves, unit, now, now, 0, &mut spans);
    let mut seen = HashSet::new();
    let mut per_unit: BTreeMap<i64, UnitExposure> = BTreeMap::new();
    let mut total = Exposure::default();
    for e in episodes {
        let overlaps = spans
            .iter()
            .any(|(u, a, b)| *u == e.unit_id && e.start <= *b && e.end >= *a);
        if !overlaps || !seen.insert(e.id) {
            continue;
        }
        let minutes = e.out_ms as f64 / 60_000.0;
        let u = per_unit.entry(e.unit_id).or_insert_with(|| UnitExposure {
            unit_id: e.unit_id,
            ..Default::default()
        });
        for x in [&mut u.above_range_minutes, &mut total.above_range_minutes] {
            if e.above {
                *x += minutes;
            }
        }
        for x in [&mut u.below_range_minutes, &mut total.below_range_minutes] {
            if !e.above {
                *x += minutes;
            }
        }
        for (min, max) in [(&mut u.min_c, &mut u.max_c), (&mut total.min_c, &mut total.max_c)] {
            *min = Some(min.map_or(e.min_c, |m| m.min(e.min_c)));
            *max = Some(max.map_or(e.max_c, |m| m.max(e.max_c)));
        }
        u.excursion_ids.push(e.id);
        total.excursions += 1;
    }
    total.by_unit = per_unit.into_values().collect();
    total
}

/// Loads what [`compute`] needs for `lot_id` and answers for each unit asked.
pub async fn for_lot(conn: &mut AnyConnection, lot_id: i64, units: &[i64]) -> Result<BTreeMap<i64, Exposure>> {
    // Only the units these doses went through: the asked ones, and where transfers brought
    // them from — not every clinic that ever held the lot.
    let mut wanted: Vec<i64> = units.to_vec();
    let mut unit_ids: Vec<i64> = Vec::new();
    let mut rows: Vec<(i64, Move)> = Vec::new();
    while let Some(u) = wanted.pop() {
        if unit_ids.contains(&u) {
            continue;
        }
        unit_ids.push(u);
        let found = sqlx::query(
            "SELECT id, unit_id, doses, occurred_at, from_unit_id FROM stock_events \
             WHERE lot_id = $1 AND unit_id = $2 AND doses <> 0",
        )
        .bind(lot_id)
        .bind(u)
        .fetch_all(&mut *conn)
        .await?;
        for r in found {
            let m = Move {
                unit_id: r.try_get("unit_id")?,
                doses: r.try_get("doses")?,
                at: r.try_get("occurred_at")?,
                from_unit: r.try_get("from_unit_id")?,
            };
            if let Some(from) = m.from_unit {
                wanted.push(from);
            }
            rows.push((r.try_get("id")?, m));
        }
    }
    rows.sort_by_key(|(id, m)| (m.at, *id));
    let moves: Vec<Move> = rows.into_iter().map(|(_, m)| m).collect();
    let mut episodes = Vec::new();
    for u in &unit_ids {
        episodes.extend(crate::coldchain::excursions::spans_of_unit(conn, *u).await?);
    }
    let now = now_millis();
    Ok(units
        .iter()
        .map(|u| (*u, compute(&moves, &episodes, *u, now)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn ep(id: i64, unit: i64, start: i64, hours: i64, above: bool, t: f64) -> Episode {
        Episode {
            id,
            unit_id: unit,
            start,
            end: start + hours * H,
            out_ms: hours * H,
            above,
            min_c: t,
            max_c: t,
        }
    }

    #[test]
    fn exposure_adds_up_across_excursions_and_follows_a_transfer() {
        // 10 doses into unit 1 at 0 h; 4 move to unit 2 at 10 h.
        let moves = vec![
            Move {
                unit_id: 1,
                doses: 10,
                at: 0,
                from_unit: None,
            },
            Move {
                unit_id: 1,
                doses: -4,
                at: 10 * H,
                from_unit: None,
            },
            Move {
                unit_id: 2,
                doses: 4,
                at: 10 * H,
                from_unit: Some(1),
            },
        ];
        let episodes = vec![
            ep(1, 1, 2 * H, 2, true, 11.0),   // unit 1 before the transfer: both stocks saw it
            ep(2, 1, 20 * H, 1, false, -1.0), // unit 1 after the transfer: only unit 1's doses
            ep(3, 2, 30 * H, 3, true, 9.0),   // unit 2
            ep(4, 2, -5 * H, 1, true, 15.0),  // unit 2 before the doses arrived
        ];
        let in_2 = compute(&moves, &episodes, 2, 40 * H);
        assert_eq!(in_2.excursions, 2);
        assert_eq!(in_2.above_range_minutes, 300.0);
        assert_eq!(in_2.below_range_minutes, 0.0);
        assert_eq!(in_2.max_c, Some(11.0));
        assert_eq!(in_2.by_unit.iter().map(|u| u.unit_id).collect::<Vec<_>>(), vec![1, 2]);
        let in_1 = compute(&moves, &episodes, 1, 40 * H);
        assert_eq!((in_1.above_range_minutes, in_1.below_range_minutes), (120.0, 60.0));
        assert_eq!(in_1.min_c, Some(-1.0));
    }

    #[test]
    fn a_lot_used_up_before_an_excursion_was_not_exposed_to_it() {
        let moves = vec![
            Move {
                unit_id: 1,
                doses: 2,
                at: 0,
                from_unit: None,
            },
            Move {
                unit_id: 1,
                doses: -2,
                at: H,
                from_unit: None,
            },
        ];
        assert_eq!(
            compute(&moves, &[ep(1, 1, 2 * H, 1, true, 9.0)], 1, 5 * H).excursions,
            0
        );
    }
}
