//! The state's home (`/` for a person who sees the whole program): cards that each lead to a
//! paged list of what needs someone, and a search by PIN, location code or name.
//!
//! Every card reads a stored status — open excursions, "no data" episodes, open holds, orders
//! in review, each location's stored order prerequisites, calibration dates, gateways' last
//! contact — so the page stays fast with tens of thousands of locations: nothing is recomputed
//! per view.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use minijinja::{context, Value};

use super::{auth, AppState};

pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/", axum::routing::get(home))
}
use crate::accounts::people;

use crate::error::Result;
use crate::store::listing::{Attention, Listing, Window};
use crate::store::{now_millis, Db};

/// Rows on a card; a card's own list shows `PAGE` a page.
const ON_CARD: i64 = 5;
const PAGE: i64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    Excursions,
    NoData,
    Holds,
    Orders,
    NotReady,
    Calibration,
    Expiring,
    Gateways,
}

impl Card {
    pub const ALL: [Card; 8] = [
        Card::Excursions,
        Card::NoData,
        Card::Holds,
        Card::Orders,
        Card::NotReady,
        Card::Calibration,
        Card::Expiring,
        Card::Gateways,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Card::Excursions => "excursions",
            Card::NoData => "no-data",
            Card::Holds => "holds",
            Card::Orders => "orders",
            Card::NotReady => "prerequisites",
            Card::Calibration => "calibration",
            Card::Expiring => "expiring",
            Card::Gateways => "gateways",
        }
    }

    pub fn parse(s: &str) -> Option<Card> {
        Card::ALL.into_iter().find(|c| c.slug() == s)
    }

    fn title(self) -> &'static str {
        match self {
            Card::Excursions => "Open excursions",
            Card::NoData => "Units with no data",
            Card::Holds => "Lots on hold, waiting for a determination",
            Card::Orders => "Orders waiting for review",
            Card::NotReady => "Order prerequisites not met",
            Card::Calibration => "Logger calibration due within 30 days",
            Card::Expiring => "Lots expiring within 90 days",
            Card::Gateways => "Gateways silent or with a full spool",
        }
    }

    /// What `first` means on this card, in words (shown beside the flag).
    fn first_means(self) -> &'static str {
        match self {
            Card::Excursions => "not acknowledged",
            Card::NoData => "not acknowledged",
            Card::Holds => "after an excursion",
            Card::Orders => "urgent",
            Card::NotReady => "",
            Card::Calibration => "expired",
            Card::Expiring => "within 30 days",
            Card::Gateways => "silent",
        }
    }

    /// What the date column says, where the card has one.
    fn due_means(self) -> Option<&'static str> {
        match self {
            Card::Holds | Card::Expiring => Some("Lot expires"),
            Card::Calibration => Some("Calibration expires"),
            _ => None,
        }
    }

    async fn list(self, db: &Db, w: Window) -> Result<Listing> {
        let today = Utc::now().date_naive();
        let day = |d: i64| (today + Duration::days(d)).format("%Y-%m-%d").to_string();
        let mut l = match self {
            Card::Excursions => crate::coldchain::excursions::waiting::open(db, w).await?,
            Card::NoData => crate::coldchain::devices::waiting::no_data(db, w).await?,
            Card::Holds => crate::inventory::waiting::holds(db, w).await?,
            Card::Orders => crate::orders::waiting::in_review(db, w).await?,
            Card::NotReady => crate::orders::waiting::not_ready(db, w).await?,
            Card::Calibration => crate::registry::waiting::calibration_due(db, &day(0), &day(30), w).await?,
            Card::Expiring => crate::inventory::waiting::expiring(db, &day(0), &day(30), &day(90), w).await?,
            Card::Gateways => {
                crate::registry::waiting::troubled_gateways(
                    db,
                    now_millis() - crate::registry::gateways::SILENT_AFTER_MS,
                    w,
                )
                .await?
            }
        };
        // Lists that know only a code show the place's name beside it.
        let missing: Vec<String> = l
            .rows
            .iter()
            .filter(|r| r.place.is_none())
            .map(|r| r.location_code.clone())
            .collect();
        if !missing.is_empty() {
            let names = crate::registry::locations::names(db, &missing).await?;
            for r in &mut l.rows {
                if r.place.is_none() {
                    r.place = names.get(&r.location_code).cloned();
                }
            }
        }
        Ok(l)
    }

    /// The page that shows (and fixes) a row.
    fn href(self, r: &Attention) -> String {
        match self {
            Card::Excursions => format!("/excursions/{}", r.key),
            Card::NoData => format!("/units/{}", r.key),
            Card::Orders => format!("/orders/{}", r.key),
            Card::NotReady => format!("/locations/{}/orders", r.location_code),
            Card::Holds | Card::Expiring => format!("/locations/{}/inventory", r.location_code),
            Card::Calibration | Card::Gateways => format!("/locations/{}", r.location_code),
        }
    }
}

fn ago(since: Option<i64>, now: i64) -> Option<String> {
    since.map(|t| crate::coldchain::tiles::minutes(((now - t) / 60_000).max(0)))
}

fn rows(card: Card, l: &Listing) -> Vec<Value> {
    let now = now_millis();
    l.rows
        .iter()
        .map(|r| {
            context! {
                href => card.href(r),
                what => r.what.clone(),
                code => r.location_code.clone(),
                place => r.place.clone(),
                ago => ago(r.since, now),
                due => r.due.clone(),
                first => r.first,
            }
        })
        .collect()
}

fn card_view(card: Card, l: &Listing) -> Value {
    context! {
        slug => card.slug(),
        title => card.title(),
        total => l.total,
        first_means => card.first_means(),
        due_means => card.due_means(),
        rows => rows(card, l),
        more => l.total > l.rows.len() as i64,
    }
}

/// Every card with its first rows.
pub async fn cards(db: &Db) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for card in Card::ALL {
        let l = card
            .list(
                db,
                Window {
                    limit: ON_CARD,
                    offset: 0,
                },
            )
            .await?;
        out.push(card_view(card, &l));
    }
    Ok(out)
}

/// One card's list, a page at a time (`page` from 1).
pub async fn one_list(db: &Db, card: Card, page: i64) -> Result<Value> {
    let page = page.max(1);
    let l = card
        .list(
            db,
            Window {
                limit: PAGE,
                offset: (page - 1) * PAGE,
            },
        )
        .await?;
    let pages = ((l.total + PAGE - 1) / PAGE).max(1);
    Ok(context! {
        card => card_view(card, &l),
        page,
        pages,
        previous => (page > 1).then(|| format!("/?list={}&page={}", card.slug(), page - 1)),
        next => (page < pages).then(|| format!("/?list={}&page={}", card.slug(), page + 1)),
    })
}

/// Locations matching a search, a page at a time.
pub async fn search(db: &Db, scope: &crate::accounts::Scope, q: &str, page: i64) -> Result<Value> {
    let page = page.max(1);
    let (total, found) = crate::registry::locations::search(
        db,
        scope,
        q,
        Window {
            limit: PAGE,
            offset: (page - 1) * PAGE,
        },
    )
    .await?;
    let pages = ((total + PAGE - 1) / PAGE).max(1);
    let enc = percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC).to_string();
    Ok(context! {
        q,
        total,
        found => found.iter().map(|l| context! { code => l.code.clone(), name => l.name.clone(), pin => l.pin.clone() }).collect::<Vec<_>>(),
        page,
        pages,
        previous => (page > 1).then(|| format!("/?q={enc}&page={}", page - 1)),
        next => (page < pages).then(|| format!("/?q={enc}&page={}", page + 1)),
    })
}

#[derive(serde::Deserialize, Default)]
pub struct HomeQuery {
    /// One card's whole list (`excursions`, `orders`…).
    list: Option<String>,
    /// A search by PIN, location code or name.
    q: Option<String>,
    page: Option<i64>,
}

/// The state's home: the cards, one card's list, or a search's results.
pub async fn page(
    s: &AppState,
    caller: &crate::accounts::Caller,
    csrf_token: Option<String>,
    account: Option<people::Account>,
    hq: HomeQuery,
) -> Response {
    let page = hq.page.unwrap_or(1);
    let q = hq.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let (view, title) = match (q, hq.list.as_deref()) {
        (Some(q), _) => (
            search(&s.db, &caller.scope, q, page)
                .await
                .map(|v| context! { search => v }),
            format!("Locations matching “{q}”"),
        ),
        (None, Some(list)) => match Card::parse(list) {
            Some(card) => (
                one_list(&s.db, card, page).await.map(|v| context! { list => v }),
                "Program".to_string(),
            ),
            None => return super::pages::not_found(),
        },
        (None, None) => (
            cards(&s.db).await.map(|c| context! { cards => c }),
            "Program".to_string(),
        ),
    };
    match view {
        Ok(v) => super::pages::render(
            StatusCode::OK,
            "state_home.html",
            context! {
                ..v,
                ..context! {
                    title,
                    account => account.as_ref().map(|a| Value::from(minijinja::value::Serde(a))),
                    csrf_token,
                    q => hq.q.clone().unwrap_or_default(),
                    wide => true,
                }
            },
        ),
        Err(e) => super::error::ApiError::from(e).into_response(),
    }
}

/// `/`: the state's home for a person (or a token) of the whole program; a clinic person's own
/// home (their places, roles and second factor) otherwise.
async fn home(State(s): State<AppState>, headers: HeaderMap, Query(hq): Query<HomeQuery>) -> Response {
    let live = match auth::session_of(&s, &headers).await {
        Ok(Some(l)) => l,
        // A token of the whole program (a wall display in the state's office) sees the cards.
        Ok(None) => {
            return match auth::page_caller(&s, &headers).await {
                Ok(Some(c)) if matches!(c.scope, crate::accounts::Scope::Program) => page(&s, &c, None, None, hq).await,
                Ok(_) => super::pages::to_login("/"),
                Err(e) => e.into_response(),
            }
        }
        Err(e) => return e.into_response(),
    };
    if live.must_enrol {
        return Redirect::to("/me/totp").into_response();
    }
    let Some(id) = live.caller.account_id() else {
        return super::pages::to_login("/");
    };
    let account = match people::me(&s.db, id).await {
        Ok(a) => a,
        Err(e) => return super::error::ApiError::from(e).into_response(),
    };
    // The places the person works at, to go to; the whole program is reached by its cards and
    // its search.
    let program = matches!(live.caller.scope, crate::accounts::Scope::Program);
    if program {
        return page(&s, &live.caller, Some(live.csrf_token.clone()), Some(account), hq).await;
    }
    let places = if program {
        Vec::new()
    } else {
        match crate::registry::locations::list(&s.db, &live.caller.scope).await {
            Ok(l) => l
                .into_iter()
                .take(200)
                .map(|l| context! { code => l.code, name => l.name })
                .collect(),
            Err(e) => return super::error::ApiError::from(e).into_response(),
        }
    };
    super::pages::render(
        StatusCode::OK,
        "home.html",
        context! {
            title => "Home",
            account => Value::from(minijinja::value::Serde(&account)),
            csrf_token => live.csrf_token,
            places,
            program,
        },
    )
}
