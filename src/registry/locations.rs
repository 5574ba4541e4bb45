//! Locations: a PIN plus an optional suffix, each with its own name, time zone, address and
//! primary and backup vaccine coordinators (docs/domain.md: "every location must have both").

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::{Error, Result};
use crate::accounts::audit::{self, Entry, Who};
use crate::accounts::{Caller, Scope};
use crate::domain::{LocationCode, VfcPin};
use crate::store::{is_unique_violation, now_millis, rfc3339, Db};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    /// The account with this email, if the person has one (shown, never sent: alerts reach the
    /// contact whether or not they sign in).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub account_id: Option<i64>,
}

impl Contact {
    /// The contact as the audit compares it (who, not which account).
    fn audited(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "email": self.email, "phone": self.phone})
    }
}

/// A change of a location's primary or backup VFC coordinator. States require such a change
/// reported to them within 10 business days (docs/domain.md); the watcher reports it at once.
pub struct CoordinatorChange<'a> {
    pub code: &'a str,
    pub location_name: &'a str,
    /// `primary` or `backup`.
    pub role: &'static str,
    pub before: &'a Contact,
    pub after: &'a Contact,
    pub actor: &'a str,
    pub at: i64,
}

/// Who is told of a coordinator change, in the change's own transaction.
pub trait ContactsWatcher: Send + Sync {
    fn coordinator_changed<'a>(
        &'a self,
        tx: &'a mut sqlx::AnyConnection,
        change: CoordinatorChange<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<()>>;
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contacts {
    /// Receives alerts first.
    pub primary: Contact,
    /// Receives alerts when the primary has not acknowledged.
    pub backup: Contact,
}

/// Body of `POST /api/v1/locations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLocation {
    /// VFC PIN, 4-8 digits, e.g. "012345".
    pub pin: String,
    /// Optional alpha suffix of this office, e.g. "A".
    #[serde(default)]
    pub suffix: Option<String>,
    pub name: String,
    /// IANA time zone, e.g. "America/New_York".
    pub timezone: String,
    #[serde(default)]
    pub address: Option<String>,
    pub contacts: Contacts,
}

/// Body of `PUT /api/v1/locations/{code}`: what a location may change about itself.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationUpdate {
    pub name: String,
    pub timezone: String,
    #[serde(default)]
    pub address: Option<String>,
    pub contacts: Contacts,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Location {
    /// PIN followed by the suffix, e.g. "012345A".
    pub code: String,
    pub pin: String,
    pub suffix: Option<String>,
    pub name: String,
    pub timezone: String,
    pub address: Option<String>,
    pub contacts: Contacts,
    pub created_at: String,
}

/// Whether the part of the program a scope names exists: a registered location, or a PIN with
/// at least one.
pub async fn scope_exists(db: &Db, scope: &Scope) -> Result<bool> {
    let (cond, param) = scope.sql_filter("pin", "code", 1);
    let sql = format!("SELECT COUNT(*) FROM locations WHERE {cond}");
    let mut q = sqlx::query_scalar::<_, i64>(&sql);
    if let Some(p) = param {
        q = q.bind(p);
    }
    let n = q.fetch_one(&db.pool).await?;
    Ok(matches!(scope, Scope::Program) || n > 0)
}

/// A location as other capabilities look it up by code, in their own transaction.
#[derive(Debug, Clone)]
pub struct Found {
    pub code: String,
    pub pin: String,
    pub timezone: String,
}

impl Found {
    pub fn tz(&self) -> Result<chrono_tz::Tz> {
        self.timezone.parse().map_err(|_| {
            Error::unreadable(
                "locations",
                &self.code,
                format!("time zone {:?} is not an IANA zone", self.timezone),
            )
        })
    }
}

/// The location with this code (as stored: upper case), whatever the scope.
pub async fn find_in(conn: &mut sqlx::AnyConnection, code: &str) -> Result<Option<Found>> {
    let row = sqlx::query("SELECT code, pin, timezone FROM locations WHERE code = $1")
        .bind(code)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        Ok(Found {
            code: r.try_get("code")?,
            pin: r.try_get("pin")?,
            timezone: r.try_get("timezone")?,
        })
    })
    .transpose()
}

impl Location {
    /// The location's time zone, in which its days, its HL7 times and its emails are read.
    pub fn tz(&self) -> Result<chrono_tz::Tz> {
        self.timezone.parse().map_err(|_| {
            Error::unreadable(
                "locations",
                &self.code,
                format!(
                    "time zone {:?} is not an IANA zone; fix it with PUT /api/v1/locations/{}",
                    self.timezone, self.code
                ),
            )
        })
    }
}

fn check_contact(which: &str, c: &Contact) -> Result<Contact> {
    let name = c.name.trim();
    if name.is_empty() {
        return Err(Error::Invalid(format!("contacts.{which}.name is required")));
    }
    let email = c.email.trim();
    let valid = email.split_once('@').is_some_and(|(l, d)| {
        !l.is_empty() && d.contains('.') && !d.starts_with('.') && !email.contains(char::is_whitespace)
    });
    if !valid {
        return Err(Error::Invalid(format!(
            "contacts.{which}.email {:?} is not an email address such as coordinator@clinic.org",
            c.email
        )));
    }
    Ok(Contact {
        name: name.to_string(),
        email: email.to_string(),
        phone: c
            .phone
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from),
        account_id: None,
    })
}

fn check_details(name: &str, timezone: &str, contacts: &Contacts) -> Result<(String, String, Contacts)> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::Invalid(
            "name is required (e.g. \"Bayview Pediatrics – Main St\")".into(),
        ));
    }
    let tz: chrono_tz::Tz = timezone.parse().map_err(|_| {
        Error::Invalid(format!(
            "timezone {timezone:?} is not an IANA time zone such as \"America/New_York\""
        ))
    })?;
    let contacts = Contacts {
        primary: check_contact("primary", &contacts.primary)?,
        backup: check_contact("backup", &contacts.backup)?,
    };
    Ok((name.to_string(), tz.name().to_string(), contacts))
}

const COLUMNS: &str = "code, pin, suffix, name, timezone, address, primary_name, primary_email, primary_phone, \
                       backup_name, backup_email, backup_phone, created_at";

fn from_row(r: &AnyRow) -> std::result::Result<Location, sqlx::Error> {
    Ok(Location {
        code: r.try_get("code")?,
        pin: r.try_get("pin")?,
        suffix: r.try_get("suffix")?,
        name: r.try_get("name")?,
        timezone: r.try_get("timezone")?,
        address: r.try_get("address")?,
        contacts: Contacts {
            primary: Contact {
                name: r.try_get("primary_name")?,
                email: r.try_get("primary_email")?,
                phone: r.try_get("primary_phone")?,
                account_id: None,
            },
            backup: Contact {
                name: r.try_get("backup_name")?,
                email: r.try_get("backup_email")?,
                phone: r.try_get("backup_phone")?,
                account_id: None,
            },
        },
        created_at: rfc3339(r.try_get("created_at")?),
    })
}

pub async fn create(db: &Db, caller: &Caller, new: &NewLocation) -> Result<Location> {
    let pin = VfcPin::parse(&new.pin)?;
    let code = LocationCode::new(pin.clone(), new.suffix.as_deref())?;
    if !caller.scope.covers_pin(pin.as_str()) {
        return Err(Error::Forbidden(format!(
            "you may not add locations to PIN {pin}; ask the state VFC coordinator"
        )));
    }
    let (name, tz, contacts) = check_details(&new.name, &new.timezone, &new.contacts)?;
    let now = now_millis();
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO organisations (pin, created_at) VALUES ($1, $2) ON CONFLICT (pin) DO NOTHING")
        .bind(pin.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO locations (code, pin, suffix, name, timezone, address, primary_name, primary_email, \
         primary_phone, backup_name, backup_email, backup_phone, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(code.to_string())
    .bind(pin.as_str())
    .bind(code.suffix().map(String::from))
    .bind(&name)
    .bind(&tz)
    .bind(
        new.address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from),
    )
    .bind(&contacts.primary.name)
    .bind(&contacts.primary.email)
    .bind(contacts.primary.phone.clone())
    .bind(&contacts.backup.name)
    .bind(&contacts.backup.email)
    .bind(contacts.backup.phone.clone())
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if is_unique_violation(&e) => {
            return Err(Error::Conflict(format!("location {code} already exists")));
        }
        other => other?,
    };
    let entry = Entry::new("location.create", "location", [code.to_string()])
        .at(Some(pin.as_str()), Some(&code.to_string()))
        .changed("name", serde_json::Value::Null, name.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    get(db, &caller.scope, &code.to_string()).await
}

/// Changes a location's details; a change of its primary or backup coordinator (another
/// person: name or email) goes to `watcher` in the same transaction.
pub async fn update(
    db: &Db,
    caller: &Caller,
    code: &str,
    upd: &LocationUpdate,
    watcher: &dyn ContactsWatcher,
) -> Result<Location> {
    let scope = &caller.scope;
    let existing = get(db, scope, code).await?;
    let (name, tz, contacts) = check_details(&upd.name, &upd.timezone, &upd.contacts)?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE locations SET name = $1, timezone = $2, address = $3, primary_name = $4, primary_email = $5, \
         primary_phone = $6, backup_name = $7, backup_email = $8, backup_phone = $9, updated_at = $10 \
         WHERE code = $11",
    )
    .bind(&name)
    .bind(&tz)
    .bind(
        upd.address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from),
    )
    .bind(&contacts.primary.name)
    .bind(&contacts.primary.email)
    .bind(contacts.primary.phone.clone())
    .bind(&contacts.backup.name)
    .bind(&contacts.backup.email)
    .bind(contacts.backup.phone.clone())
    .bind(now_millis())
    .bind(&existing.code)
    .execute(&mut *tx)
    .await?;
    let mut entry = Entry::new("location.update", "location", [existing.code.clone()])
        .at(Some(&existing.pin), Some(&existing.code))
        .changed("name", existing.name.as_str(), name.as_str())
        .changed("timezone", existing.timezone.as_str(), tz.as_str());
    for (field, before, after) in [
        ("primary", &existing.contacts.primary, &contacts.primary),
        ("backup", &existing.contacts.backup, &contacts.backup),
    ] {
        entry = entry.changed(field, before.audited(), after.audited());
    }
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    let now = now_millis();
    for (role, before, after) in [
        ("primary", &existing.contacts.primary, &contacts.primary),
        ("backup", &existing.contacts.backup, &contacts.backup),
    ] {
        let same_person =
            before.name.trim() == after.name.trim() && before.email.eq_ignore_ascii_case(after.email.trim());
        if !same_person {
            let change = CoordinatorChange {
                code: &existing.code,
                location_name: &name,
                role,
                before,
                after,
                actor: &caller.actor(),
                at: now,
            };
            watcher.coordinator_changed(&mut tx, change).await?;
        }
    }
    tx.commit().await?;
    // The time zone reads HL7 times; lookups kept by the HL7 intake are dropped.
    super::directory_changed();
    get(db, scope, code).await
}

pub async fn list(db: &Db, scope: &Scope) -> Result<Vec<Location>> {
    let (cond, param) = scope.sql_filter("pin", "code", 1);
    let sql = format!("SELECT {COLUMNS} FROM locations WHERE {cond} ORDER BY code");
    let mut q = sqlx::query(&sql);
    if let Some(p) = param {
        q = q.bind(p);
    }
    let rows = q.fetch_all(&db.pool).await?;
    Ok(rows.iter().map(from_row).collect::<std::result::Result<_, _>>()?)
}

/// Links each contact to the account with its email, if any (the API shows both sides).
pub async fn link_accounts(db: &Db, locations: &mut [Location]) -> Result<()> {
    let emails: Vec<String> = locations
        .iter()
        .flat_map(|l| [&l.contacts.primary.email, &l.contacts.backup.email])
        .cloned()
        .collect();
    let ids = crate::accounts::contacts::ids_by_email(db, &emails).await?;
    for l in locations {
        for c in [&mut l.contacts.primary, &mut l.contacts.backup] {
            c.account_id = ids.get(&c.email.trim().to_lowercase()).copied();
        }
    }
    Ok(())
}

/// A location the caller may see, by code; `NotFound` when absent or out of scope alike.
pub async fn get(db: &Db, scope: &Scope, code: &str) -> Result<Location> {
    let not_found = || Error::NotFound(format!("no location {code}"));
    let code = LocationCode::parse(code).map_err(|_| not_found())?;
    if !scope.covers(&code) {
        return Err(not_found());
    }
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM locations WHERE code = $1"))
        .bind(code.to_string())
        .fetch_optional(&db.pool)
        .await?
        .ok_or_else(not_found)?;
    Ok(from_row(&row)?)
}

/// The names of locations by code (codes not found are left out): lists that know only a code
/// show the place's name beside it.
pub async fn names(db: &Db, codes: &[String]) -> Result<std::collections::HashMap<String, String>> {
    if codes.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT code, name FROM locations WHERE code IN ({})",
        crate::store::placeholders(codes.len())
    );
    let mut q = sqlx::query(&sql);
    for c in codes {
        q = q.bind(c);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| Ok((r.try_get("code")?, r.try_get("name")?)))
        .collect()
}

/// Locations the scope covers whose PIN or code starts with `q`, or whose name contains it
/// (any case), by code.
pub async fn search(db: &Db, scope: &Scope, q: &str, w: crate::store::listing::Window) -> Result<(i64, Vec<Location>)> {
    let (cond, param) = scope.sql_filter("pin", "code", 3);
    let needle = q.trim().to_lowercase().replace(['%', '_', '\\'], "");
    let matches = format!("(LOWER(code) LIKE $1 OR LOWER(name) LIKE $2) AND {cond}");
    let count_sql = format!("SELECT COUNT(*) AS n FROM locations WHERE {matches}");
    let rows_sql = format!(
        "SELECT {COLUMNS} FROM locations WHERE {matches} ORDER BY code LIMIT {} OFFSET {}",
        w.limit.clamp(1, 500),
        w.offset.max(0)
    );
    let (prefix, inside) = (format!("{needle}%"), format!("%{needle}%"));
    let mut count = sqlx::query(&count_sql).bind(&prefix).bind(&inside);
    let mut list = sqlx::query(&rows_sql).bind(&prefix).bind(&inside);
    if let Some(p) = &param {
        count = count.bind(p);
        list = list.bind(p);
    }
    let total: i64 = count.fetch_one(&db.pool).await?.try_get("n")?;
    let rows = list.fetch_all(&db.pool).await?;
    Ok((total, rows.iter().map(from_row).collect::<std::result::Result<_, _>>()?))
}
