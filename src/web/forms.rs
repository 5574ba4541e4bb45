//! What the pages' forms share: a form as it was sent (kept when it comes back with a mistake,
//! the error by its field), the readers of its fields, who may see or send a location's page,
//! which product a person means by what they typed, and a page of a list.

use std::collections::HashMap;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::{context, Value};

use super::error::ApiError;
use super::AppState;
use crate::accounts::Caller;
use crate::inventory::catalog::Product;
use crate::inventory::stock::StockLine;
use crate::registry::locations::Location;
use crate::store::Page;

/// A form as it was sent: what the person typed (kept when it comes back), and the error by its
/// field when there is one.
#[derive(Default)]
pub struct Sent {
    pub values: HashMap<String, String>,
    pub field: Option<String>,
    pub error: Option<String>,
}

impl Sent {
    pub fn of(f: &HashMap<String, String>) -> Sent {
        Sent {
            values: f
                .iter()
                .filter(|(k, _)| *k != "csrf_token")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..Sent::default()
        }
    }

    pub fn text(&self, k: &str) -> Option<String> {
        self.values
            .get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The form back with `error` by `field`.
    pub fn refused(mut self, field: Option<&str>, error: impl Into<String>) -> Sent {
        self.field = field.map(String::from);
        self.error = Some(error.into());
        self
    }

    /// The form back with the service's refusal, by the field it names in quotes (`"doses" must
    /// be …`) when the form has that field, else above the form.
    pub fn refused_by_service(self, e: &crate::error::Error) -> Sent {
        let msg = e.to_string();
        let field = msg
            .split('"')
            .nth(1)
            .filter(|k| self.values.contains_key(*k))
            .map(String::from);
        self.refused(field.as_deref(), msg)
    }

    pub fn status(&self) -> StatusCode {
        if self.error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        }
    }

    pub fn form(&self) -> Value {
        Value::from(minijinja::value::Serde(&self.values))
    }
}

/// A list whose rows each carry a form (a queue of doses to resolve, borrowing records to
/// complete), with the one row's form sent back with its error.
pub struct RowForms {
    refused: Option<(i64, Sent)>,
    empty: Sent,
}

impl RowForms {
    pub fn new(refused: Option<(i64, Sent)>) -> RowForms {
        RowForms {
            refused,
            empty: Sent::default(),
        }
    }

    /// The form of row `id`: as sent when it was refused, else empty.
    pub fn of(&self, id: i64) -> &Sent {
        match &self.refused {
            Some((row, sent)) if *row == id => sent,
            _ => &self.empty,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.refused.as_ref().map_or(StatusCode::OK, |(_, sent)| sent.status())
    }

    /// The refusal, also for above the list: the row may not be on this page any more.
    pub fn error(&self) -> Option<String> {
        self.refused.as_ref().and_then(|(_, sent)| sent.error.clone())
    }
}

/// A whole number of doses typed in a form, at least one.
pub fn doses_in(sent: &Sent, k: &str) -> Result<i64, String> {
    match sent.text(k).map(|v| v.parse::<i64>()) {
        Some(Ok(n)) if n > 0 => Ok(n),
        _ => Err("Give a whole number of doses, 1 or more.".into()),
    }
}

/// A stock line chosen in a form, as `{unit_id}:{lot_id}`.
pub fn stock_in(sent: &Sent, k: &str) -> Option<(i64, i64)> {
    let v = sent.text(k)?;
    let (unit, lot) = v.split_once(':')?;
    Some((unit.parse().ok()?, lot.parse().ok()?))
}

/// The stock lines as a form's choices, each `{unit_id}:{lot_id}` with the words a person picks
/// by.
pub fn stock_choices<'a>(lines: impl IntoIterator<Item = &'a StockLine>) -> Vec<Value> {
    lines
        .into_iter()
        .map(|l| {
            context! {
                value => format!("{}:{}", l.unit_id, l.lot_id),
                label => format!(
                    "{} · {} lot {} ({}, expires {}) · {} doses{}",
                    l.unit,
                    l.product,
                    l.lot,
                    l.funding.to_uppercase(),
                    l.expires_on,
                    l.on_hand,
                    if l.holds.is_empty() { "" } else { " · on hold" }
                ),
            }
        })
        .collect()
}

/// The location a form page is for, and who looks; otherwise the page to show instead.
pub async fn place_and_viewer(
    s: &AppState,
    headers: &HeaderMap,
    code: &str,
    path: &str,
) -> Result<(Caller, Option<String>, Location), Response> {
    let (caller, csrf) = super::pages::viewer(s, headers, path).await?;
    match crate::registry::locations::get(&s.db, &caller.scope, code).await {
        Ok(l) => Ok((caller, csrf, l)),
        Err(crate::error::Error::NotFound(_)) => Err(super::pages::not_found()),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// A form about a location, as received: who sends it, the location (in their scope), the
/// page's CSRF token to render it again with, and what was typed.
pub struct Posted {
    pub caller: Caller,
    pub place: Location,
    pub csrf: Option<String>,
    pub sent: Sent,
}

/// Who sends a form about a location they may see, with the location and the form; otherwise
/// the page that says why.
pub async fn writer_at(
    s: &AppState,
    headers: &HeaderMap,
    f: &HashMap<String, String>,
    code: &str,
    back: &str,
) -> Result<Posted, Response> {
    let csrf = f.get("csrf_token").cloned();
    let caller = super::pages::form_writer(s, headers, csrf.as_deref(), back).await?;
    match crate::registry::locations::get(&s.db, &caller.scope, code).await {
        Ok(place) => Ok(Posted {
            caller,
            place,
            csrf,
            sent: Sent::of(f),
        }),
        Err(crate::error::Error::NotFound(_)) => Err(super::pages::not_found()),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// Which product a person means by what they typed: a product's NDC (with or without dashes),
/// the choice of the list as offered (`NDC · name`), or a part of one name or NDC that no other
/// product has. Several or none is said with what to type.
pub fn product_for<'a>(products: &'a [Product], typed: &str) -> Result<&'a Product, String> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Err("Type part of the product's name or NDC, then pick it from the list.".into());
    }
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let head = typed.split(" · ").next().unwrap_or(typed).trim();
    if let Some(p) = products
        .iter()
        .find(|p| p.ndc == head || (digits(head).len() == 11 && digits(&p.ndc) == digits(head)))
    {
        return Ok(p);
    }
    let lower = typed.to_lowercase();
    let typed_digits = digits(typed);
    let number_like = typed.chars().all(|c| c.is_ascii_digit() || c == '-') && typed_digits.len() >= 3;
    let matches: Vec<&Product> = products
        .iter()
        .filter(|p| p.name.to_lowercase().contains(&lower) || (number_like && digits(&p.ndc).contains(&typed_digits)))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "No product in the catalog matches \"{typed}\". Type part of its name (such as \"rota\") or its NDC."
        )),
        many => Err(format!(
            "{} products match \"{typed}\": {}. Type more of the name, or the NDC.",
            many.len(),
            many.iter()
                .take(5)
                .map(|p| match p.doses_per_package {
                    Some(n) if n > 0 => format!("{} ({}, {n} doses a package)", p.name, p.ndc),
                    _ => format!("{} ({})", p.name, p.ndc),
                })
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

#[derive(serde::Deserialize, Default)]
pub struct ListQuery {
    pub done: Option<String>,
    /// The last id of the previous page.
    pub after: Option<i64>,
}

pub fn page_after(after: Option<i64>) -> Page {
    Page {
        after,
        limit: Page::DEFAULT,
    }
}

/// A time as the location's clock reads it.
pub fn local(t: &str, tz: chrono_tz::Tz) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| t.to_string())
}

pub fn zone(place: &Location) -> chrono_tz::Tz {
    place.timezone.parse().unwrap_or(chrono_tz::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(ndc: &str, name: &str) -> Product {
        Product {
            ndc: ndc.into(),
            name: name.into(),
            cvx: "116".into(),
            mvx: None,
            doses_per_package: Some(10),
            use_ndcs: Vec::new(),
        }
    }

    #[test]
    fn a_product_is_found_by_part_of_its_name_or_ndc() {
        let catalog = [
            product("00006-4047-41", "RotaTeq (rotavirus, pentavalent)"),
            product("58160-0854-52", "Rotarix (rotavirus, monovalent)"),
            product("49281-0400-10", "Adacel (Tdap)"),
        ];
        assert_eq!(product_for(&catalog, "rotateq").unwrap().ndc, "00006-4047-41");
        assert_eq!(
            product_for(&catalog, "4047").unwrap().name,
            "RotaTeq (rotavirus, pentavalent)"
        );
        assert_eq!(product_for(&catalog, "00006404741").unwrap().ndc, "00006-4047-41");
        assert_eq!(
            product_for(&catalog, "58160-0854-52 · Rotarix (rotavirus, monovalent)")
                .unwrap()
                .ndc,
            "58160-0854-52"
        );
        let many = product_for(&catalog, "rota").unwrap_err();
        assert!(many.contains("2 products match") && many.contains("Rotarix"), "{many}");
        assert!(product_for(&catalog, "measles").unwrap_err().contains("No product"));
    }

    #[test]
    fn a_chosen_stock_line_is_its_unit_and_lot() {
        let mut sent = Sent::default();
        sent.values.insert("stock".into(), "7:12".into());
        assert_eq!(stock_in(&sent, "stock"), Some((7, 12)));
        sent.values.insert("stock".into(), "7".into());
        assert_eq!(stock_in(&sent, "stock"), None);
    }
}
