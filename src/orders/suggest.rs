//! Suggested quantities (README, "Ordering"): one line per brand of the order set and per public
//! funding, each showing every input of [`crate::domain::ordering::suggest`] so a clinic or a
//! reviewer can redo the arithmetic.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::profile::{self, Profile};
use crate::accounts::Caller;
use crate::domain::ordering::{self, LineInputs, OrderingSettings};
use crate::error::Result;
use crate::inventory::catalog::{self, Product};
use crate::inventory::usage::{self, Brand, BrandUse, Horizon};
use crate::inventory::{self, Place};
use crate::store::{now_millis, Db};

const DAY_MS: i64 = 86_400_000;

/// One line of a suggestion.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Line {
    /// The NDC the line orders: the brand's first in the order set.
    pub ndc: String,
    pub product: String,
    pub cvx: String,
    pub mvx: Option<String>,
    /// vfc | state
    pub funding: String,
    /// Doses per package of the NDC (1 when the catalog does not say).
    pub package: i64,
    /// Days since this location's first administration of the brand from this funding's stock.
    pub days_of_history: i64,
    /// min(12, max(1, ceil(days_of_history / 30.4375)))
    pub months: i64,
    /// Doses administered in the last 365 days, net of doses given back.
    pub administered_365: i64,
    /// administered_365 ÷ months
    pub monthly_use: f64,
    pub max_months: f64,
    /// ceil(monthly_use × max_months)
    pub max_stock: i64,
    /// Doses in lots not expired, not on hold, not expiring within the usable margin.
    pub usable_on_hand: i64,
    /// Doses on this location's submitted orders not yet received or closed.
    pub on_order: i64,
    /// max(0, max_stock − usable_on_hand − on_order), rounded up to whole packages.
    pub suggested: i64,
    /// no_usage_history | short_dated | other_brand_on_hand | high_wastage
    pub flags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestion {
    pub location: String,
    pub set: String,
    pub lines: Vec<Line>,
}

/// Doses on order per (NDC, funding) at `code`: lines of submitted orders not yet received or
/// closed, less what was received (and of a closed line, what shipped and was not received).
pub async fn on_order(conn: &mut AnyConnection, code: &str) -> Result<HashMap<(String, String), i64>> {
    // A closed line still has in transit what shipped and was not received.
    let rows = sqlx::query(&format!(
        "SELECT l.ndc, l.funding, COALESCE(l.approved_doses, l.doses) AS doses, \
         CASE WHEN l.closed_at IS NULL THEN 0 ELSE 1 END AS closed, \
         CAST(COALESCE((SELECT SUM(s.doses) FROM shipment_lines s WHERE s.order_line_id = l.id), 0) AS BIGINT) AS shipped, \
         CAST(COALESCE((SELECT SUM(r.doses_received) FROM order_receipts r WHERE r.order_line_id = l.id), 0) AS BIGINT) AS received \
         FROM order_lines l JOIN orders o ON o.id = l.order_id \
         WHERE o.location_code = $1 AND o.status IN {}",
        super::ON_ORDER_SQL
    ))
    .bind(code)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::new();
    for r in rows {
        let expected = if r.try_get::<i64, _>("closed")? == 1 {
            r.try_get::<i64, _>("shipped")?
        } else {
            r.try_get::<i64, _>("doses")?
        };
        let left = (expected - r.try_get::<i64, _>("received")?).max(0);
        *out.entry((r.try_get("ndc")?, r.try_get("funding")?)).or_insert(0) += left;
    }
    Ok(out)
}

/// The suggestion for order set `set` of `place`.
pub async fn compute(
    conn: &mut AnyConnection,
    place: &Place,
    profile: &Profile,
    program: &OrderingSettings,
    set: &str,
    products: &[Product],
) -> Result<Vec<Line>> {
    let now = now_millis();
    let today = inventory::today(place.tz, now);
    let horizon = Horizon {
        since: now - 365 * DAY_MS,
        unusable_through: today + chrono::Duration::days(program.usable_margin_days),
        short_dated_through: today + chrono::Duration::days(program.short_dated_days),
        today,
    };
    let used: HashMap<(Brand, String), BrandUse> = usage::of_location(conn, &place.code, &horizon)
        .await?
        .into_iter()
        .collect();
    let pending = on_order(conn, &place.code).await?;
    let brand_of: HashMap<&str, Brand> = products
        .iter()
        .map(|p| {
            (
                p.ndc.as_str(),
                Brand {
                    cvx: p.cvx.clone(),
                    mvx: p.mvx.clone(),
                },
            )
        })
        .collect();
    // Each brand once, ordered by its first NDC in the set.
    let mut brands: Vec<(Brand, &Product)> = Vec::new();
    for p in profile.products_of(set, products)? {
        let b = brand_of[p.ndc.as_str()].clone();
        if !brands.iter().any(|(seen, _)| *seen == b) {
            brands.push((b, p));
        }
    }
    let mut lines = Vec::new();
    for (brand, product) in &brands {
        for funding in &program.fundings {
            let funding = funding.as_str().to_string();
            let u = used.get(&(brand.clone(), funding.clone())).cloned().unwrap_or_default();
            // On order: every NDC of the brand, at this funding.
            let on_order: i64 = pending
                .iter()
                .filter(|((ndc, f), _)| *f == funding && brand_of.get(ndc.as_str()) == Some(brand))
                .map(|(_, n)| *n)
                .sum();
            let days_of_history = u.first_administered_at.map_or(0, |at| ((now - at) / DAY_MS).max(0));
            let package = product.doses_per_package.filter(|n| *n > 0).unwrap_or(1);
            let max_months = profile.max_months_for(&product.ndc, program);
            let f = ordering::suggest(LineInputs {
                days_of_history,
                administered_365: u.administered,
                max_months,
                usable_on_hand: u.usable,
                on_order,
                package,
            });
            let mut flags = Vec::new();
            if u.first_administered_at.is_none() {
                flags.push("no_usage_history".to_string());
            }
            if u.short_dated > 0 && u.short_dated as f64 > f.monthly_use {
                flags.push("short_dated".to_string());
            }
            let other_brand = used
                .iter()
                .any(|((b, _), o)| b.cvx == brand.cvx && b != brand && o.usable > 0);
            if other_brand {
                flags.push("other_brand_on_hand".to_string());
            }
            if u.received > 0 && (u.wasted as f64) * 100.0 > program.high_wastage_pct * u.received as f64 {
                flags.push("high_wastage".to_string());
            }
            lines.push(Line {
                ndc: product.ndc.clone(),
                product: product.name.clone(),
                cvx: brand.cvx.clone(),
                mvx: brand.mvx.clone(),
                funding,
                package,
                days_of_history,
                months: f.months,
                administered_365: u.administered,
                monthly_use: (f.monthly_use * 100.0).round() / 100.0,
                max_months,
                max_stock: f.max_stock,
                usable_on_hand: u.usable,
                on_order,
                suggested: f.suggested,
                flags,
            });
        }
    }
    Ok(lines)
}

/// `GET /api/v1/locations/{code}/orders/suggestion?set=`.
pub async fn of_location(db: &Db, caller: &Caller, code: &str, set: Option<&str>) -> Result<Suggestion> {
    let products = catalog::list(db).await?;
    let mut conn = db.pool.acquire().await?;
    let place = inventory::place(&mut conn, &caller.scope, code).await?;
    let program = crate::coldchain::settings::program_in(&mut conn).await?.ordering;
    let (profile, _) = profile::stored(&mut conn, &place.code).await?;
    let set = set.unwrap_or(profile::ROUTINE);
    let lines = compute(&mut conn, &place, &profile, &program, set, &products).await?;
    Ok(Suggestion {
        location: place.code,
        set: set.to_string(),
        lines,
    })
}
