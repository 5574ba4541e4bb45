//! Which stock a dose comes out of (docs/domain.md, "Doses administered over HL7"): the lot with
//! that number (any case) and vaccine at the location; the funding source, then eligibility,
//! picks VFC or private stock when a lot number exists as both; the location's unit for the
//! product comes first, then stock not on hold, then the unit holding the most.
//!
//! Choosing is a pure function ([`choose`]) over the candidate stock rows, which are read once
//! per HL7 batch ([`StockCache`]).

use chrono::NaiveDate;
use sqlx::{AnyConnection, Row};

use super::super::Place;
use super::report::{Flag, Unmatched};
use crate::domain::{Eligibility, Funding, FundingSource, LotNumber};
use crate::error::{Error, Result};

/// The stock a dose comes out of.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub unit_id: i64,
    pub lot_id: i64,
    pub lot: String,
    pub funding: Funding,
    pub expires_on: NaiveDate,
    pub held: bool,
}

/// Why a dose matched no stock, in words for the clinic.
pub type NoMatch = (Unmatched, String);

/// One stock row a dose could come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Cand {
    pub unit_id: i64,
    pub lot_id: i64,
    pub lot: String,
    pub on_hand: i64,
    pub funding: Funding,
    pub expires_on: NaiveDate,
    pub held: bool,
    /// The location's unit for this product.
    pub preferred: bool,
}

/// Stock rows a dose could come from, as read once per HL7 batch: a batch's doses mostly name
/// the same lots. The intake takes a dose off the cached row when it writes one, and drops the
/// cache when anything else writes.
pub type StockCache = std::collections::HashMap<String, Vec<Cand>>;

fn stock_key(place: &Place, lot: &LotNumber, ndcs: &[String]) -> String {
    format!("{}|{}|{}", place.code, lot.key(), ndcs.join(","))
}

/// Notes in the cache that a dose of `m` was written.
pub fn took(cache: &mut StockCache, place: &Place, lot: &LotNumber, ndcs: &[String], m: &Match) {
    if let Some(c) = cache
        .get_mut(&stock_key(place, lot, ndcs))
        .and_then(|cs| cs.iter_mut().find(|c| c.unit_id == m.unit_id && c.lot_id == m.lot_id))
    {
        c.on_hand -= 1;
    }
}

/// The stock rows of lot `lot` of the products `ndcs` at the location; none: why not.
async fn load(
    conn: &mut AnyConnection,
    place: &Place,
    ndcs: &[String],
    lot: &LotNumber,
    vaccine: &str,
) -> Result<std::result::Result<Vec<Cand>, NoMatch>> {
    // NDCs come from the catalog, normalised to digits and dashes: safe to write in place.
    let list = ndcs
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "")))
        .collect::<Vec<_>>()
        .join(",");
    let rows = sqlx::query(&format!(
        "SELECT s.unit_id, s.lot_id, s.on_hand, l.funding, l.expires_on, l.ndc, l.lot_number, \
         (SELECT COUNT(*) FROM holds h WHERE h.unit_id = s.unit_id AND h.lot_id = s.lot_id AND h.ended_at IS NULL) AS held, \
         (SELECT COUNT(*) FROM location_product_units p WHERE p.location_code = s.location_code AND p.ndc = l.ndc AND p.unit_id = s.unit_id) AS preferred \
         FROM stock s JOIN lots l ON l.id = s.lot_id WHERE s.location_code = $1 AND l.lot_key = $2 AND l.ndc IN ({list})"
    ))
    .bind(&place.code)
    .bind(lot.key())
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        // Elsewhere in this PIN only: another provider's stock is not told.
        let anywhere = sqlx::query(&format!(
            "SELECT 1 FROM stock s JOIN lots l ON l.id = s.lot_id JOIN unit_places c ON c.unit_id = s.unit_id \
             WHERE l.lot_key = $1 AND l.ndc IN ({list}) AND c.pin = $2"
        ))
        .bind(lot.key())
        .bind(&place.pin)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
        return Ok(Err(if anywhere {
            (
                Unmatched::LotNotHere,
                format!("lot {} of {vaccine} is not stocked at {}", lot.as_str(), place.code),
            )
        } else {
            (
                Unmatched::UnknownLot,
                format!("lot {} of {vaccine} is not in this provider's inventory", lot.as_str()),
            )
        }));
    }
    let cands = rows
        .iter()
        .map(|r| {
            let lot_id: i64 = r.try_get("lot_id")?;
            let funding: String = r.try_get("funding")?;
            let expires: String = r.try_get("expires_on")?;
            Ok(Cand {
                unit_id: r.try_get("unit_id")?,
                lot_id,
                lot: r.try_get("lot_number")?,
                on_hand: r.try_get("on_hand")?,
                funding: Funding::parse(&funding).map_err(|e| Error::unreadable("lots", lot_id, e))?,
                expires_on: NaiveDate::parse_from_str(&expires, "%Y-%m-%d")
                    .map_err(|_| Error::unreadable("lots", lot_id, format!("expires_on {expires:?}")))?,
                held: r.try_get::<i64, _>("held")? > 0,
                preferred: r.try_get::<i64, _>("preferred")? > 0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Ok(cands))
}

/// What a dose says of itself that decides where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The products its vaccine names; empty when the catalog does not know it.
    pub ndcs: &'a [String],
    pub lot: Option<&'a LotNumber>,
    pub eligibility: Option<Eligibility>,
    pub funding_source: Option<FundingSource>,
    /// How messages name the vaccine: "CVX 116", "NDC 00006-4047-41".
    pub vaccine: &'a str,
}

/// The stock a dose comes out of, or why there is none; a database failure is an `Err`.
pub async fn find(
    conn: &mut AnyConnection,
    place: &Place,
    w: &Wanted<'_>,
    cache: Option<&mut StockCache>,
) -> Result<std::result::Result<Match, NoMatch>> {
    if w.ndcs.is_empty() {
        return Ok(Err((
            Unmatched::UnknownVaccine,
            format!(
                "{} is not in the vaccine catalog (load CDC's files with `vfc catalog import`)",
                w.vaccine
            ),
        )));
    }
    let Some(lot) = w.lot else {
        return Ok(Err((
            Unmatched::NoLot,
            "the dose has no lot number (RXA-15)".to_string(),
        )));
    };
    let key = stock_key(place, lot, w.ndcs);
    let cands = match cache.as_ref().and_then(|c| c.get(&key).cloned()) {
        Some(c) => c,
        None => match load(conn, place, w.ndcs, lot, w.vaccine).await? {
            Err(why) => return Ok(Err(why)),
            Ok(c) => {
                if let Some(cache) = cache {
                    cache.insert(key, c.clone());
                }
                c
            }
        },
    };
    Ok(choose(cands, place, lot, w))
}

/// Picks the stock row a dose comes out of (see the module's rules), or says why none fits.
pub fn choose(
    mut cands: Vec<Cand>,
    place: &Place,
    lot: &LotNumber,
    w: &Wanted<'_>,
) -> std::result::Result<Match, NoMatch> {
    let mut fundings: Vec<Funding> = cands.iter().map(|c| c.funding).collect();
    fundings.sort_by_key(|f| f.as_str());
    fundings.dedup();
    if fundings.len() > 1 {
        // docs/domain.md: funding source (30963-3) first, then eligibility (64994-7).
        let fits = |f: Funding| match (w.funding_source, w.eligibility) {
            (Some(source), _) => Some(source.funding() == f),
            (None, Some(e)) => Some(e.is_public() == f.is_public()),
            (None, None) => None,
        };
        if fits(Funding::Vfc).is_none() {
            return Err((
                Unmatched::AmbiguousFunding,
                format!(
                    "lot {} is held as {} stock and the dose says neither its funding source nor its eligibility",
                    lot.as_str(),
                    fundings.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(" and ")
                ),
            ));
        }
        cands.retain(|c| fits(c.funding) == Some(true));
        if cands.is_empty() {
            return Err((
                Unmatched::LotNotHere,
                format!(
                    "lot {} is not stocked at {} with the funding the dose names",
                    lot.as_str(),
                    place.code
                ),
            ));
        }
    }
    cands.sort_by_key(|c| (!c.preferred, c.held, -c.on_hand));
    let Some(c) = cands.into_iter().find(|c| c.on_hand > 0) else {
        return Err((
            Unmatched::NoStock,
            format!(
                "no doses of lot {} are left at {} (the ledger shows 0 on hand)",
                lot.as_str(),
                place.code
            ),
        ));
    };
    Ok(Match {
        unit_id: c.unit_id,
        lot_id: c.lot_id,
        lot: c.lot,
        funding: c.funding,
        expires_on: c.expires_on,
        held: c.held,
    })
}

/// Why a dose from this stock goes on the revaccination review list: the flags and the stored
/// words. A dose given from an expired or held lot did leave the shelf; the clinic reviews it.
pub fn review_flags(m: &Match, given_on: NaiveDate) -> (Vec<Flag>, Option<String>) {
    let mut flags = Vec::new();
    if m.expires_on < given_on {
        flags.push(Flag::ExpiredLot(m.expires_on));
    }
    if m.held {
        flags.push(Flag::HeldLot);
    }
    let words: Vec<&str> = flags
        .iter()
        .map(|f| match f {
            Flag::ExpiredLot(_) => "expired_lot",
            _ => "lot_on_hold",
        })
        .collect();
    let review = (!words.is_empty()).then(|| words.join(","));
    (flags, review)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> Place {
        Place {
            code: "012345A".into(),
            pin: "012345".into(),
            tz: chrono_tz::America::New_York,
            last_count_at: None,
        }
    }

    fn cand(unit_id: i64, funding: Funding, on_hand: i64) -> Cand {
        Cand {
            unit_id,
            lot_id: unit_id * 10,
            lot: "X1".into(),
            on_hand,
            funding,
            expires_on: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
            held: false,
            preferred: false,
        }
    }

    fn wanted(e: Option<Eligibility>, f: Option<FundingSource>) -> Wanted<'static> {
        Wanted {
            ndcs: &[],
            lot: None,
            eligibility: e,
            funding_source: f,
            vaccine: "CVX 116",
        }
    }

    #[test]
    fn funding_source_then_eligibility_picks_public_or_private_stock() {
        let lot = LotNumber::parse("X1").unwrap();
        let both = || vec![cand(1, Funding::Vfc, 5), cand(2, Funding::Private, 5)];
        let pick = |e, f| choose(both(), &place(), &lot, &wanted(e, f)).map(|m| m.funding);
        let table = [
            (None, Some(FundingSource::Public), Ok(Funding::Vfc)),
            (
                Some(Eligibility::V02),
                Some(FundingSource::Private),
                Ok(Funding::Private),
            ),
            (Some(Eligibility::V01), None, Ok(Funding::Private)),
            (Some(Eligibility::V03), None, Ok(Funding::Vfc)),
            (Some(Eligibility::V07), None, Ok(Funding::Vfc)),
        ];
        for (e, f, want) in table {
            assert_eq!(pick(e, f), want, "{e:?} {f:?}");
        }
        assert_eq!(pick(None, None).unwrap_err().0, Unmatched::AmbiguousFunding);
        assert_eq!(
            pick(None, Some(FundingSource::State)).unwrap_err().0,
            Unmatched::LotNotHere
        );
    }

    #[test]
    fn one_funding_needs_no_word_and_the_preferred_unit_comes_first() {
        let lot = LotNumber::parse("X1").unwrap();
        let mut preferred = cand(3, Funding::Vfc, 1);
        preferred.preferred = true;
        let cands = vec![cand(1, Funding::Vfc, 9), preferred];
        let m = choose(cands, &place(), &lot, &wanted(None, None)).unwrap();
        assert_eq!(m.unit_id, 3);
        let empty = choose(vec![cand(1, Funding::Vfc, 0)], &place(), &lot, &wanted(None, None));
        assert_eq!(empty.unwrap_err().0, Unmatched::NoStock);
    }

    #[test]
    fn a_dose_from_an_expired_or_held_lot_is_flagged_for_review() {
        let mut m = Match {
            unit_id: 1,
            lot_id: 1,
            lot: "X1".into(),
            funding: Funding::Vfc,
            expires_on: NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
            held: true,
        };
        let (flags, words) = review_flags(&m, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert_eq!(flags.len(), 2);
        assert_eq!(words.as_deref(), Some("expired_lot,lot_on_hold"));
        m.held = false;
        let (flags, words) = review_flags(&m, NaiveDate::from_ymd_opt(2026, 11, 29).unwrap());
        assert!(flags.is_empty() && words.is_none(), "usable through its expiry day");
    }
}
