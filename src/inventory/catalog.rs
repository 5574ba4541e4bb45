//! The vaccine catalog: CVX and MVX codes and products by NDC (docs/domain.md, "Code sets").
//!
//! A product is its unit-of-sale NDC (what is ordered, shipped and received); unit-of-use NDCs
//! (what an EHR reports) link to it. The shipped catalog (`vfc_catalog.toml`) is seeded on every
//! start without overwriting anything; `vfc catalog import` loads CDC's published files.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::domain::{Cvx, Ndc};
use crate::registry::{Error, Result};
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
    let mut tx = db.pool.begin().await?;
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

/// Text of a CDC download: UTF-16 (either byte order) with its byte-order mark, or UTF-8.
pub fn decode_text(bytes: &[u8]) -> anyhow::Result<String> {
    let utf16 = |le: bool| -> anyhow::Result<String> {
        let units: Vec<u16> = bytes[2..]
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units).context("the file says UTF-16 but is not")
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(true),
        [0xFE, 0xFF, ..] => utf16(false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec()).context("not UTF-8 text"),
        _ => String::from_utf8(bytes.to_vec()).context("not UTF-8 text (nor UTF-16 with a byte-order mark)"),
    }
}

fn pipe_rows(text: &str) -> impl Iterator<Item = Vec<String>> + '_ {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('|').map(|f| f.trim().to_string()).collect())
}

/// One line of CDC's CVX file: code | short description | full name | notes | status | …
#[derive(Debug, PartialEq)]
pub struct CvxRow {
    pub cvx: String,
    pub short_name: String,
    pub full_name: String,
    pub status: String,
}

pub fn parse_cvx(text: &str) -> Vec<CvxRow> {
    pipe_rows(text)
        .filter_map(|f| {
            let cvx = Cvx::parse(f.first()?).ok()?; // a header line has no numeric code
            Some(CvxRow {
                cvx: cvx.as_str().to_string(),
                short_name: f.get(1).cloned().unwrap_or_default(),
                full_name: f.get(2).cloned().unwrap_or_default(),
                status: f.get(4).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// One line of CDC's MVX file: code | manufacturer | notes | status | …
#[derive(Debug, PartialEq)]
pub struct MvxRow {
    pub mvx: String,
    pub name: String,
    pub status: String,
}

pub fn parse_mvx(text: &str) -> Vec<MvxRow> {
    pipe_rows(text)
        .filter_map(|f| {
            let code = f.first()?.to_ascii_uppercase();
            let ok = (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphabetic());
            (ok && code != "MVX").then(|| MvxRow {
                mvx: code,
                name: f.get(1).cloned().unwrap_or_default(),
                status: f.get(3).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// What an NDC file held: products (unit of sale) and unit-of-use links.
#[derive(Debug, Default)]
pub struct NdcFile {
    pub products: Vec<Product>,
    pub links: Vec<(String, String)>,
    pub skipped: usize,
}

/// CDC's NDC tables (unit of sale, unit of use, and the linker) have a header row whose names
/// vary between downloads, so columns are found by name: the sale NDC (`NDC11`, `SaleNDC11`,
/// `NDC10`…), the use NDC (`UseNDC11`…), `CVX Code`, `MVX Code`, the proprietary name.
pub fn parse_ndc(text: &str) -> anyhow::Result<NdcFile> {
    let mut rows = pipe_rows(text);
    let header: Vec<String> = rows
        .next()
        .context("the NDC file is empty")?
        .iter()
        .map(|h| {
            h.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .collect();
    let col = |names: &[&str]| names.iter().find_map(|n| header.iter().position(|h| h == n));
    let sale = col(&["salendc11", "ndc11", "salendc10", "ndc10", "salendc", "ndc"]);
    let use_ = col(&["usendc11", "usendc10", "usendc"]);
    let cvx = col(&["cvxcode", "cvx", "salecvx", "usecvx"]);
    let mvx = col(&["mvxcode", "mvx", "salemvx"]);
    let name = col(&[
        "saleproprname",
        "proprname",
        "proprietaryname",
        "saleproprietaryname",
        "name",
        "cvxshortdescription",
    ]);
    let doses = col(&["dosesperpackage", "doses", "salepackagesize"]);
    let Some(sale) = sale.or(use_.filter(|_| cvx.is_some())) else {
        anyhow::bail!(
            "the NDC file's header has no NDC column (looked for NDC11, SaleNDC11, NDC10, UseNDC11); \
             the first line must name the columns"
        );
    };
    let mut out = NdcFile::default();
    for f in rows {
        let get = |i: Option<usize>| i.and_then(|i| f.get(i)).filter(|s| !s.is_empty());
        let Some(ndc) = get(Some(sale)).and_then(|s| Ndc::parse(s).ok()) else {
            out.skipped += 1;
            continue;
        };
        if let Some(u) = get(use_).and_then(|s| Ndc::parse(s).ok()).filter(|u| *u != ndc) {
            out.links.push((u.to_string(), ndc.to_string()));
        }
        if let Some(c) = get(cvx).and_then(|s| Cvx::parse(s).ok()) {
            out.products.push(Product {
                ndc: ndc.to_string(),
                name: get(name).cloned().unwrap_or_else(|| format!("NDC {ndc}")),
                cvx: c.to_string(),
                mvx: get(mvx).map(|m| m.to_ascii_uppercase()),
                doses_per_package: get(doses).and_then(|d| d.parse().ok()),
                use_ndcs: vec![],
            });
        } else if get(use_).is_none() {
            out.skipped += 1;
        }
    }
    Ok(out)
}

/// Which CDC file a `vfc catalog import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdcFile {
    Cvx,
    Mvx,
    Ndc,
}

/// Loads one CDC file; imported rows replace earlier ones with the same code.
pub async fn import(db: &Db, kind: CdcFile, bytes: &[u8]) -> anyhow::Result<(usize, usize)> {
    let text = decode_text(bytes)?;
    let now = now_millis();
    let mut tx = db.pool.begin().await?;
    let (mut stored, mut skipped) = (0, 0);
    match kind {
        CdcFile::Cvx => {
            for r in parse_cvx(&text) {
                sqlx::query(
                    "INSERT INTO cvx_codes (cvx, short_name, full_name, status, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (cvx) DO UPDATE SET short_name = excluded.short_name, full_name = excluded.full_name, \
                     status = excluded.status, updated_at = excluded.updated_at",
                )
                .bind(&r.cvx)
                .bind(&r.short_name)
                .bind(&r.full_name)
                .bind(&r.status)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                stored += 1;
            }
        }
        CdcFile::Mvx => {
            for r in parse_mvx(&text) {
                sqlx::query(
                    "INSERT INTO mvx_codes (mvx, name, status, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (mvx) DO UPDATE SET name = excluded.name, status = excluded.status, updated_at = excluded.updated_at",
                )
                .bind(&r.mvx)
                .bind(&r.name)
                .bind(&r.status)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                stored += 1;
            }
        }
        CdcFile::Ndc => {
            let file = parse_ndc(&text)?;
            skipped = file.skipped;
            for p in &file.products {
                upsert_product(&mut tx, p, "cdc", now).await?;
                stored += 1;
            }
            for (use_ndc, ndc) in &file.links {
                let known = sqlx::query("SELECT 1 FROM products WHERE ndc = $1")
                    .bind(ndc)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !known {
                    skipped += 1;
                    continue;
                }
                sqlx::query(
                    "INSERT INTO product_use_ndcs (use_ndc, ndc) VALUES ($1, $2) ON CONFLICT (use_ndc) DO UPDATE SET ndc = excluded.ndc",
                )
                .bind(use_ndc)
                .bind(ndc)
                .execute(&mut *tx)
                .await?;
                stored += 1;
            }
        }
    }
    tx.commit().await?;
    crate::registry::directory_changed();
    Ok((stored, skipped))
}

async fn upsert_product(conn: &mut AnyConnection, p: &Product, source: &str, now: i64) -> sqlx::Result<()> {
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

pub async fn add(db: &Db, body: &NewProduct) -> Result<Product> {
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
    let mut conn = db.pool.acquire().await?;
    upsert_product(&mut conn, &p, "api", now_millis()).await?;
    crate::registry::directory_changed();
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

    #[test]
    fn cdc_cvx_files_are_utf16_with_a_bom() {
        let text = "116|rotavirus, pentavalent|rotavirus, live, pentavalent vaccine||Active|0|False|2010/05/28\r\n\
                    3|MMR|measles, mumps and rubella virus vaccine||Active|0|False|2010/05/28\r\n";
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let rows = parse_cvx(&decode_text(&bytes).unwrap());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].cvx, "03");
        assert_eq!(rows[0].status, "Active");
        assert_eq!(rows[0].short_name, "rotavirus, pentavalent");
    }

    #[test]
    fn mvx_rows_skip_a_header() {
        let rows = parse_mvx("MVX CODE|Manufacturer name|Notes|Status\nMSD|Merck and Co., Inc.||Active\n");
        assert_eq!(
            rows,
            vec![MvxRow {
                mvx: "MSD".into(),
                name: "Merck and Co., Inc.".into(),
                status: "Active".into()
            }]
        );
    }

    #[test]
    fn ndc_files_find_columns_by_name_and_normalise_ndc10() {
        let text = "SaleNDC11|UseNDC11|SaleProprName|CVX Code|MVX Code\n\
                    0006-4047-41|0006-4047-01|RotaTeq|116|msd\n\
                    bad|x|y|z|w\n";
        let f = parse_ndc(text).unwrap();
        assert_eq!(f.products.len(), 1);
        assert_eq!(f.products[0].ndc, "00006-4047-41");
        assert_eq!(f.products[0].mvx.as_deref(), Some("MSD"));
        assert_eq!(
            f.links,
            vec![("00006-4047-01".to_string(), "00006-4047-41".to_string())]
        );
        assert_eq!(f.skipped, 1);
        assert!(parse_ndc("a|b\n1|2\n").unwrap_err().to_string().contains("NDC column"));
    }
}
