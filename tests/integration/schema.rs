//! The two migration folders describe one schema: after migrating a fresh SQLite file and a
//! fresh PostgreSQL database, both have the same tables and views, the same columns, the same
//! nullability and the same unique keys — so the folders cannot drift apart unnoticed.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AnyConnection, Connection, Row};
use vfc_monitor::config::DatabaseUrl;
use vfc_monitor::store::Db;

/// A table as both databases must agree on it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// Column → nullable.
    columns: BTreeMap<String, bool>,
    /// Unique keys (the primary key among them): their columns, and whether partial.
    unique: BTreeSet<(Vec<String>, bool)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    tables: BTreeMap<String, Table>,
    views: BTreeSet<String>,
}

async fn sqlite(conn: &mut AnyConnection) -> Schema {
    let mut s = Schema::default();
    let objects = sqlx::query(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for o in objects {
        let (name, kind): (String, String) = (o.get("name"), o.get("type"));
        if kind == "view" {
            s.views.insert(name);
            continue;
        }
        let mut t = Table::default();
        let mut pk: Vec<(i64, String)> = Vec::new();
        for c in sqlx::query(&format!(
            "SELECT name, \"notnull\" AS nn, pk FROM pragma_table_info('{name}')"
        ))
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        {
            let (col, notnull, in_pk): (String, i64, i64) = (c.get("name"), c.get("nn"), c.get("pk"));
            // A primary key column never holds NULL, whatever SQLite's pragma says of it.
            t.columns.insert(col.clone(), notnull == 0 && in_pk == 0);
            if in_pk > 0 {
                pk.push((in_pk, col));
            }
        }
        pk.sort();
        if !pk.is_empty() {
            t.unique
                .insert((sorted(pk.into_iter().map(|(_, c)| c).collect()), false));
        }
        for i in sqlx::query(&format!(
            "SELECT name, \"unique\" AS u, partial, origin FROM pragma_index_list('{name}')"
        ))
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        {
            let (index, unique, partial, origin): (String, i64, i64, String) =
                (i.get("name"), i.get("u"), i.get("partial"), i.get("origin"));
            if unique == 0 || origin == "pk" {
                continue;
            }
            let cols: Vec<String> = sqlx::query(&format!("SELECT name FROM pragma_index_info('{index}')"))
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get("name"))
                .collect();
            t.unique.insert((sorted(cols), partial == 1));
        }
        s.tables.insert(name, t);
    }
    s
}

async fn postgres(conn: &mut AnyConnection) -> Schema {
    let mut s = Schema::default();
    for v in sqlx::query(
        "SELECT CAST(table_name AS TEXT) AS table_name FROM information_schema.views WHERE table_schema = 'public'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    {
        s.views.insert(v.get("table_name"));
    }
    for c in sqlx::query(
        "SELECT CAST(c.table_name AS TEXT) AS table_name, CAST(c.column_name AS TEXT) AS column_name, \
         CAST(c.is_nullable AS TEXT) AS is_nullable FROM information_schema.columns c \
         JOIN information_schema.tables t ON t.table_name = c.table_name AND t.table_schema = c.table_schema \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.table_name NOT LIKE '_sqlx_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    {
        let (table, col, nullable): (String, String, String) =
            (c.get("table_name"), c.get("column_name"), c.get("is_nullable"));
        s.tables
            .entry(table)
            .or_default()
            .columns
            .insert(col, nullable == "YES");
    }
    for i in sqlx::query(
        "SELECT CAST(t.relname AS TEXT) AS table_name, CAST(CASE WHEN ix.indpred IS NULL THEN 0 ELSE 1 END AS BIGINT) AS partial, \
         CAST(string_agg(CAST(a.attname AS TEXT), ',' ORDER BY a.attname) AS TEXT) AS cols \
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(ix.indkey) \
         WHERE n.nspname = 'public' AND ix.indisunique AND t.relname NOT LIKE '_sqlx_%' \
         GROUP BY t.relname, i.relname, ix.indpred",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap()
    {
        let (table, partial, cols): (String, i64, String) = (i.get("table_name"), i.get("partial"), i.get("cols"));
        let cols = sorted(cols.split(',').map(String::from).collect());
        if let Some(t) = s.tables.get_mut(&table) {
            t.unique.insert((cols, partial == 1));
        }
    }
    s
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgresql_migrate_to_the_same_schema() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.db");
    Db::connect(&DatabaseUrl::Sqlite(file.clone())).await.unwrap();
    let mut lite = AnyConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let lite = sqlite(&mut lite).await;

    let pg = crate::harness::ScratchPostgres::create().await;
    Db::connect(&DatabaseUrl::Postgres(pg.url.clone())).await.unwrap();
    let mut conn = AnyConnection::connect(&pg.url).await.unwrap();
    let post = postgres(&mut conn).await;
    let _ = conn.close().await;

    assert!(lite.tables.len() > 30, "read SQLite's tables: {:?}", lite.tables.keys());
    assert!(lite.views.contains("unit_places"), "{:?}", lite.views);
    assert_eq!(
        lite.tables.keys().collect::<Vec<_>>(),
        post.tables.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    assert_eq!(lite.views, post.views, "the same views");
    for (name, t) in &lite.tables {
        let p = &post.tables[name];
        assert_eq!(
            t.columns, p.columns,
            "{name}: the same columns, nullable alike (true = NULL allowed)"
        );
        assert_eq!(t.unique, p.unique, "{name}: the same unique keys");
    }
}
