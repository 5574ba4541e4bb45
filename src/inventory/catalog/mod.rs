//! The vaccine catalog: CVX and MVX codes and products by NDC (docs/domain.md, "Code sets").
//!
//! A product is its unit-of-sale NDC (what is ordered, shipped and received); unit-of-use NDCs
//! (what an EHR reports) link to it. The shipped catalog (`vfc_catalog.toml`) is seeded on every
//! start without overwriting anything; `vfc catalog import` loads CDC's published files
//! ([`cdc`]). This module owns `products`, `product_use_ndcs`, `cvx_codes` and `mvx_codes`.

pub mod cdc;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::accounts::audit::{self, Who};
use crate::domain::{Cvx, Ndc};
use crate::error::{Error, Result};
use crate::store::{now_millis, Db};

const SHIPPED: &str = include_str!("vfc_catalog.toml");

#[derive(Deserialize)]
struct Shipped {
    cvx: Vec<(String, String)>,
    mvx: Vec<(String, String)>,
    products: Vec<(String, String, String, String, i64)>,
}

/// A product as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Product {
    /// Unit-of-sale NDC11, e.g. 00006-4047-41.
    pub ndc: String,
    pub name: String,
    pub cvx: String,
    pub mvx: Option<String>,
    pub doses_per_package: Option<i64>,
    /// Unit-of-use NDCs that EHRs report for this product.
    #[serde(default)]
    pub use_ndcs: Vec<String>,
}

/// Seeds the shipped catalog; rows already present (shipped before, or imported) are kept.
pub async fn seed(db: &Db) -> anyhow::Result<()> {
    let shipped: Shipped = toml::from_str(SHIPPED).context("reading the shipped vaccine catalog")?;
    let now = now_millis();
    let mut tx = db.begin().await?;
    for (cvx, name) in &shipped.cvx {
        sqlx::query(
            "INSERT INTO cvx_codes (cvx, short_name, full_name, status, updated_at) VALUES ($1, $2, $2, 'Active', $3) \
             ON CONFLICT (cvx) DO NOTHING",
        )
        .bind(Cvx::parse(cvx)?.as_str())
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    for (mvx, name) in &shipped.mvx {
        sqlx::query(
            "INSERT INTO mvx_codes (mvx, name, status, updated_at) VALUES ($1, $2, 'Active', $3) ON CONFLICT (mvx) DO NOTHING",
        )
        .bind(mvx)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    for (ndc, name, cvx, mvx, doses) in &shipped.products {
        sqlx::query(
            "INSERT INTO products (ndc, name, cvx, mvx, doses_per_package, source, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'shipped', $6) ON CONFLICT (ndc) DO NOTHING",
        )
        .bind(Ndc::parse(ndc)?.as_str())
        .bind(name)
        .bind(Cvx::parse(cvx)?.as_str())
        .bind(mvx)
        .bind((*doses > 0).then_some(*doses))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn upsert_product(conn: &mut AnyConnection, p: &Product, source: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO products (ndc, name, cvx, mvx, doses_per_package, source, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (ndc) DO UPDATE SET name = excluded.name, cvx = excluded.cvx, mvx = excluded.mvx, \
         doses_per_package = COALESCE(excluded.doses_per_package, products.doses_per_package), \
         source = excluded.source, updated_at = excluded.updated_at",
    )
    .bind(&p.ndc)
    .bind(&p.name)
    .bind(&p.cvx)
    .bind(&p.mvx)
    .bind(p.doses_per_package)
    .bind(source)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for u in &p.use_ndcs {
        sqlx::query("INSERT INTO product_use_ndcs (use_ndc, ndc) VALUES ($1, $2) ON CONFLICT (use_ndc) DO UPDATE SET ndc = excluded.ndc")
            .bind(u)
            .bind(&p.ndc)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Body of `POST /api/v1/catalog/products` (state coordinators): a product CDC's files lack.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub ndc: String,
    pub name: String,
    pub cvx: String,
    #[serde(default)]
    pub mvx: Option<String>,
    #[serde(default)]
    pub doses_per_package: Option<i64>,
    #[serde(default)]
    pub use_ndcs: Vec<String>,
}

pub async fn add(db: &Db, caller: &crate::accounts::Caller, body: &NewProduct) -> Result<Product> {
    let invalid = |e: crate::domain::ParseError| Error::Invalid(e.0);
    let p = Product {
        ndc: Ndc::parse(&body.ndc).map_err(invalid)?.to_string(),
        name: body.name.trim().to_string(),
        cvx: Cvx::parse(&body.cvx).map_err(invalid)?.to_string(),
        mvx: body.mvx.as_ref().map(|m| m.trim().to_ascii_uppercase()),
        doses_per_package: body.doses_per_package,
        use_ndcs: body
            .use_ndcs
            .iter()
            .map(|u| Ndc::parse(u).map(|n| n.to_string()))
            .collect::<std::result::Result<_, _>>()
            .map_err(invalid)?,
    };
    if p.name.is_empty() {
        return Err(Error::Invalid("\"name\" is required".into()));
    }
    if p.doses_per_package.is_some_and(|d| !(1..=1000).contains(&d)) {
        return Err(Error::Invalid("\"doses_per_package\" must be from 1 to 1000".into()));
    }
    let mut tx = db.begin().await?;
    upsert_product(&mut tx, &p, "api", now_millis()).await?;
    let entry = audit::Entry::new("product.add", "product", [p.ndc.as_str()])
        .changed("name", serde_json::Value::Null, p.name.as_str())
        .changed("cvx", serde_json::Value::Null, p.cvx.as_str());
    audit::record(&mut tx, &Who::of(caller), entry).await?;
    tx.commit().await?;
    crate::registry::directory_changed();
    let mut conn = db.pool.acquire().await?;
    get(&mut conn, &p.ndc)
        .await?
        .ok_or_else(|| Error::NotFound(p.ndc.clone()))
}

pub async fn list(db: &Db) -> Result<Vec<Product>> {
    let mut uses: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for r in sqlx::query("SELECT use_ndc, ndc FROM product_use_ndcs ORDER BY use_ndc")
        .fetch_all(&db.pool)
        .await?
    {
        uses.entry(r.try_get("ndc")?).or_default().push(r.try_get("use_ndc")?);
    }
    let rows = sqlx::query("SELECT ndc, name, cvx, mvx, doses_per_package FROM products ORDER BY name, ndc")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            let ndc: String = r.try_get("ndc")?;
            Ok(Product {
                use_ndcs: uses.remove(&ndc).unwrap_or_default(),
                ndc,
                name: r.try_get("name")?,
                cvx: r.try_get("cvx")?,
                mvx: r.try_get("mvx")?,
                doses_per_package: r.try_get("doses_per_package")?,
            })
        })
        .collect::<sqlx::Result<_>>()
        .map_err(Error::from)
}

/// Product names by unit-of-sale NDC.
pub async fn names(conn: &mut AnyConnection) -> Result<std::collections::HashMap<String, String>> {
    sqlx::query("SELECT ndc, name FROM products")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("ndc")?, r.try_get("name")?)))
        .collect::<sqlx::Result<_>>()
        .map_err(Error::from)
}

pub async fn get(conn: &mut AnyConnection, ndc: &str) -> Result<Option<Product>> {
    let Some(r) = sqlx::query("SELECT ndc, name, cvx, mvx, doses_per_package FROM products WHERE ndc = $1")
        .bind(ndc)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let use_ndcs = sqlx::query("SELECT use_ndc FROM product_use_ndcs WHERE ndc = $1 ORDER BY use_ndc")
        .bind(ndc)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|u| u.try_get("use_ndc"))
        .collect::<sqlx::Result<_>>()?;
    Ok(Some(Product {
        ndc: r.try_get("ndc")?,
        name: r.try_get("name")?,
        cvx: r.try_get("cvx")?,
        mvx: r.try_get("mvx")?,
        doses_per_package: r.try_get("doses_per_package")?,
        use_ndcs,
    }))
}

/// How a dose names its vaccine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vaccine {
    Cvx(Cvx),
    Ndc(Ndc),
}

impl Vaccine {
    pub fn describe(&self) -> String {
        match self {
            Vaccine::Cvx(c) => format!("CVX {c}"),
            Vaccine::Ndc(n) => format!("NDC {n}"),
        }
    }
}

/// The products a dose's vaccine can come from, and its CVX: an NDC names one product (as its
/// unit of sale, or a unit of use linked to one, or failing both a product with the same labeler
/// and product code); a CVX names every product of that vaccine.
pub async fn products_for(conn: &mut AnyConnection, vaccine: &Vaccine) -> Result<(Vec<String>, Option<String>)> {
    let rows = match vaccine {
        Vaccine::Cvx(c) => {
            sqlx::query("SELECT ndc, cvx FROM products WHERE cvx = $1")
                .bind(c.as_str())
                .fetch_all(&mut *conn)
                .await?
        }
        Vaccine::Ndc(n) => {
            let direct = sqlx::query(
                "SELECT p.ndc, p.cvx FROM products p WHERE p.ndc = $1 \
                 UNION SELECT p.ndc, p.cvx FROM product_use_ndcs u JOIN products p ON p.ndc = u.ndc WHERE u.use_ndc = $1",
            )
            .bind(n.as_str())
            .fetch_all(&mut *conn)
            .await?;
            if direct.is_empty() {
                sqlx::query("SELECT ndc, cvx FROM products WHERE ndc LIKE $1")
                    .bind(format!("{}-%", &n.as_str()[..10]))
                    .fetch_all(&mut *conn)
                    .await?
            } else {
                direct
            }
        }
    };
    let cvx = match vaccine {
        Vaccine::Cvx(c) => Some(c.to_string()),
        Vaccine::Ndc(_) => rows.first().map(|r| r.try_get("cvx")).transpose()?,
    };
    let ndcs = rows.iter().map(|r| r.try_get("ndc")).collect::<sqlx::Result<_>>()?;
    Ok((ndcs, cvx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_reads() {
        let s: Shipped = toml::from_str(SHIPPED).unwrap();
        assert!(s.products.iter().any(|p| p.0 == "00006-4047-41" && p.2 == "116"));
        for p in &s.products {
            Ndc::parse(&p.0).unwrap();
            Cvx::parse(&p.2).unwrap();
        }
    }
}
