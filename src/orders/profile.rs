//! A location's ordering profile (`GET/PUT /api/v1/locations/{code}/ordering`): how often and
//! when it orders, what each order set holds, how many months of use an order may bring it up
//! to, and where and when deliveries go. The state sets it; the clinic reads it. A location
//! without one orders as needed, every catalog product in its `routine` set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::accounts::audit::{self, Who};
use crate::accounts::Caller;
use crate::domain::ordering::{Frequency, OrderingSettings, Window};
use crate::domain::Ndc;
use crate::error::{Error, Result};
use crate::inventory::catalog::{self, Product};
use crate::inventory::{self, usage};
use crate::store::{now_millis, rfc3339, Db};

/// An order set: the products it holds (`null`: every product of the catalog) and its own
/// window, if it has one (influenza is pre-booked in its own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderSet {
    #[serde(default)]
    pub products: Option<Vec<String>>,
    #[serde(default)]
    pub window: Option<Window>,
}

/// The profile as stored and as `PUT` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub frequency: Frequency,
    /// The months and half of the month this location orders in; none when `as_needed`.
    #[serde(default)]
    pub window: Option<Window>,
    /// Order sets by name; `routine` always exists.
    #[serde(default)]
    pub sets: BTreeMap<String, OrderSet>,
    /// Months of use an order may bring stock up to (default: the program's, 3).
    #[serde(default)]
    pub max_months: Option<f64>,
    /// Per product (NDC), overriding `max_months`.
    #[serde(default)]
    pub max_months_by_product: BTreeMap<String, f64>,
    #[serde(default)]
    pub ship_to: Option<String>,
    /// mon, tue, wed, thu, fri, sat, sun
    #[serde(default)]
    pub delivery_days: Vec<String>,
    /// e.g. "08:00-16:30"
    #[serde(default)]
    pub delivery_hours: Option<String>,
    /// For the carrier, at most 35 characters.
    #[serde(default)]
    pub instructions: Option<String>,
}

impl Default for Profile {
    fn default() -> Self {
        let mut sets = BTreeMap::new();
        sets.insert(ROUTINE.to_string(), OrderSet::default());
        Profile {
            frequency: Frequency::AsNeeded,
            window: None,
            sets,
            max_months: None,
            max_months_by_product: BTreeMap::new(),
            ship_to: None,
            delivery_days: Vec::new(),
            delivery_hours: None,
            instructions: None,
        }
    }
}

pub const ROUTINE: &str = "routine";
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Profile {
    /// Checks the profile against the catalog; NDCs come back in their 5-4-2 form.
    fn checked(mut self, products: &[Product]) -> Result<Profile> {
        match (self.frequency, &self.window) {
            (Frequency::AsNeeded, Some(_)) => {
                return Err(Error::Invalid(
                    "an as_needed location has no \"window\": leave it out, or choose a frequency".into(),
                ))
            }
            (f, None) if f != Frequency::AsNeeded => {
                return Err(Error::Invalid(format!(
                    "a {} location orders in a \"window\" such as {{\"months\":[1,4,7,10],\"half\":\"first\"}}",
                    f.as_str()
                )))
            }
            (_, Some(w)) => w.check().map_err(Error::Invalid)?,
            _ => {}
        }
        self.sets.entry(ROUTINE.to_string()).or_default();
        for (name, set) in self.sets.iter_mut() {
            if name.trim().is_empty()
                || name.len() > 40
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(Error::Invalid(format!(
                    "order set name {name:?}: letters, digits, _ and -, at most 40"
                )));
            }
            if let Some(w) = &set.window {
                w.check()
                    .map_err(|e| Error::Invalid(format!("sets.{name}.window: {e}")))?;
            }
            if let Some(list) = set.products.as_mut() {
                if list.is_empty() {
                    return Err(Error::Invalid(format!(
                        "sets.{name}.products is empty; list at least one NDC, or null for the whole catalog"
                    )));
                }
                for ndc in list.iter_mut() {
                    *ndc = known(products, ndc).map_err(|e| Error::Invalid(format!("sets.{name}.products: {e}")))?;
                }
            }
        }
        let mut by_product = BTreeMap::new();
        for (ndc, m) in &self.max_months_by_product {
            if !(0.5..=12.0).contains(m) {
                return Err(Error::Invalid(format!("max_months_by_product.{ndc} must be 0.5 to 12")));
            }
            by_product.insert(known(products, ndc).map_err(Error::Invalid)?, *m);
        }
        self.max_months_by_product = by_product;
        if self.max_months.is_some_and(|m| !(0.5..=12.0).contains(&m)) {
            return Err(Error::Invalid("max_months must be 0.5 to 12".into()));
        }
        for d in self.delivery_days.iter_mut() {
            *d = d.trim().to_ascii_lowercase();
            if !DAYS.contains(&d.as_str()) {
                return Err(Error::Invalid(format!(
                    "delivery_days: {d:?} is not one of {}",
                    DAYS.join(", ")
                )));
            }
        }
        if let Some(i) = &self.instructions {
            if i.chars().count() > 35 {
                return Err(Error::Invalid(format!(
                    "instructions are at most 35 characters (the distributor's field); these are {}",
                    i.chars().count()
                )));
            }
        }
        for (name, v) in [("ship_to", &self.ship_to), ("delivery_hours", &self.delivery_hours)] {
            if v.as_ref()
                .is_some_and(|v| v.chars().count() > 200 || v.contains(['\n', '\r']))
            {
                return Err(Error::Invalid(format!("{name} is one line of at most 200 characters")));
            }
        }
        Ok(self)
    }

    /// The window a set orders in: its own, else the location's; none when as needed.
    pub fn window_for(&self, set: &str) -> Option<&Window> {
        self.sets
            .get(set)
            .and_then(|s| s.window.as_ref())
            .or(self.window.as_ref())
    }

    pub fn max_months_for(&self, ndc: &str, program: &OrderingSettings) -> f64 {
        self.max_months_by_product
            .get(ndc)
            .copied()
            .or(self.max_months)
            .unwrap_or(program.max_months)
    }

    /// The products of set `name`, in the set's order (the catalog's, by NDC, for a whole
    /// catalog set); `Invalid` for a set the location does not have.
    pub fn products_of<'a>(&self, name: &str, catalog: &'a [Product]) -> Result<Vec<&'a Product>> {
        let set = self.sets.get(name).ok_or_else(|| {
            Error::Invalid(format!(
                "this location has no order set {name:?}; its sets are {}",
                self.sets.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        Ok(match &set.products {
            // The whole catalog: by NDC, those whose package size is known first, so a
            // brand's line orders an NDC that packs a known number of doses.
            None => {
                let mut all: Vec<&Product> = catalog.iter().collect();
                all.sort_by_key(|p| (p.doses_per_package.unwrap_or(0) <= 0, p.ndc.clone()));
                all
            }
            Some(list) => list
                .iter()
                .filter_map(|n| catalog.iter().find(|p| &p.ndc == n))
                .collect(),
        })
    }
}

fn known(products: &[Product], raw: &str) -> std::result::Result<String, String> {
    let ndc = Ndc::parse(raw).map_err(|e| e.0)?;
    if products.iter().any(|p| p.ndc == ndc.as_str()) {
        Ok(ndc.as_str().to_string())
    } else {
        Err(format!(
            "NDC {ndc} is not a unit-of-sale NDC of the catalog (GET /api/v1/catalog/products)"
        ))
    }
}

/// The profile as `GET` shows it: the stored one (or the defaults) with the tier the last 12
/// months call for beside it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    pub location: String,
    #[serde(flatten)]
    pub profile: Profile,
    /// What the location's doses of the last 12 months call for (the economic order quantity
    /// tiers in the program's `ordering.tiers`).
    pub computed_frequency: Frequency,
    pub doses_last_12_months: i64,
    /// Months of use when no product overrides it.
    pub effective_max_months: f64,
    /// False: nobody set a profile yet; these are the defaults.
    pub set_by_state: bool,
    pub updated_by: Option<String>,
    pub updated_at: Option<String>,
}

/// The stored profile of `code`, or the defaults.
pub async fn stored(conn: &mut AnyConnection, code: &str) -> Result<(Profile, Option<(String, i64)>)> {
    let Some(r) = sqlx::query("SELECT profile, updated_by, updated_at FROM ordering_profiles WHERE location_code = $1")
        .bind(code)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok((Profile::default(), None));
    };
    let raw: String = r.try_get("profile")?;
    let mut p: Profile = serde_json::from_str(&raw).map_err(|e| {
        Error::unreadable(
            "ordering_profiles",
            code,
            format!("{e}; set it again with PUT /api/v1/locations/{code}/ordering"),
        )
    })?;
    p.sets.entry(ROUTINE.to_string()).or_default();
    Ok((p, Some((r.try_get("updated_by")?, r.try_get("updated_at")?))))
}

pub async fn view(db: &Db, caller: &Caller, code: &str) -> Result<ProfileView> {
    let mut conn = db.pool.acquire().await?;
    let place = inventory::place(&mut conn, &caller.scope, code).await?;
    let program = crate::coldchain::settings::program_in(&mut conn).await?.ordering;
    view_in(&mut conn, &place.code, &program).await
}

async fn view_in(conn: &mut AnyConnection, code: &str, program: &OrderingSettings) -> Result<ProfileView> {
    let (profile, by) = stored(conn, code).await?;
    let year_ago = now_millis() - 365 * 86_400_000;
    let doses = usage::administered_since(conn, code, year_ago).await?;
    Ok(ProfileView {
        location: code.to_string(),
        computed_frequency: program.tiers.frequency(doses),
        doses_last_12_months: doses,
        effective_max_months: profile.max_months.unwrap_or(program.max_months),
        set_by_state: by.is_some(),
        updated_by: by.as_ref().map(|(b, _)| b.clone()),
        updated_at: by.map(|(_, at)| rfc3339(at)),
        profile,
    })
}

/// Sets a location's profile (state coordinators).
pub async fn save(db: &Db, caller: &Caller, code: &str, body: Profile) -> Result<ProfileView> {
    let products = catalog::list(db).await?;
    let profile = body.checked(&products)?;
    let mut tx = db.begin().await?;
    let place = inventory::place(&mut tx, &caller.scope, code).await?;
    let (before, _) = stored(&mut tx, &place.code).await?;
    let json = serde_json::to_string(&profile).expect("plain data");
    sqlx::query(
        "INSERT INTO ordering_profiles (location_code, profile, updated_by, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (location_code) DO UPDATE SET profile = excluded.profile, updated_by = excluded.updated_by, \
         updated_at = excluded.updated_at",
    )
    .bind(&place.code)
    .bind(&json)
    .bind(caller.actor())
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    let entry = audit::Entry::new("ordering.profile", "location", [&place.code])
        .at(Some(&place.pin), Some(&place.code))
        .changed(
            "profile",
            serde_json::to_value(&before).expect("plain data"),
            serde_json::to_value(&profile).expect("plain data"),
        );
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    let program = crate::coldchain::settings::program_in(&mut tx).await?.ordering;
    let view = view_in(&mut tx, &place.code, &program).await?;
    tx.commit().await?;
    Ok(view)
}
