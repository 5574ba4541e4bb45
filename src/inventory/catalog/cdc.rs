//! CDC's published code files (docs/domain.md, "Code sets"): the CVX and MVX tables (UTF-16
//! with a byte-order mark, pipe-delimited) and the NDC tables (found by their header names;
//! NDC10 becomes NDC11), read and loaded by `vfc catalog import`. Rows replace earlier ones with
//! the same code.

use anyhow::Context;

use super::{upsert_product, Product};
use crate::accounts::audit::{self, Who};
use crate::domain::{Cvx, Ndc};
use crate::store::{now_millis, Db};

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
    let mut tx = db.begin().await?;
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
    let entry = audit::Entry::new("catalog.import", "catalog", [format!("{kind:?}")])
        .changed("rows_stored", serde_json::Value::Null, stored)
        .changed("rows_skipped", serde_json::Value::Null, skipped);
    audit::record(&mut tx, &Who::cli(), entry).await?;
    tx.commit().await?;
    crate::registry::directory_changed();
    Ok((stored, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

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
