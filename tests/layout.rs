//! The layout of `src/` keeps the promises of docs/architecture.md, checked on every test run:
//! modules depend on one another without circles, each table is read and written by the one
//! module that owns it, there is no SQL in `web/`, and a long file says why it is long.
//!
//! The source is read as text: `crate::x` paths (and `super::x` between siblings) are the
//! dependencies, SQL is found by its upper-case keywords, and comments are left out of both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which module owns each table: the path of its file or folder under `src/`.
const OWNERS: &[(&str, &[&str])] = &[
    (
        "registry/",
        &[
            "organisations",
            "locations",
            "units",
            "loggers",
            "logger_assignments",
            "gateways",
        ],
    ),
    ("readings/", &["readings", "coldchain_dirty"]),
    ("telemetry/dead_letters.rs", &["dead_letters"]),
    ("telemetry/held.rs", &["held_readings"]),
    ("telemetry/confirm.rs", &["gateway_marks", "gateway_pending"]),
    // People and machines: accounts, grants, sessions, links, tokens and the audit trail are
    // one capability (a disabled account ends its sessions and tells its tokens' places).
    (
        "accounts/",
        &[
            "api_tokens",
            "roles",
            "accounts",
            "account_grants",
            "account_links",
            "recovery_codes",
            "sessions",
            "sign_in_failures",
            "audit_log",
        ],
    ),
    ("coldchain/settings.rs", &["program", "unit_rules"]),
    ("coldchain/changes.rs", &["rule_changes"]),
    ("coldchain/excursions/", &["excursions", "alarms", "alarm_excursions"]),
    ("coldchain/downtime.rs", &["unit_downtime"]),
    ("coldchain/daily.rs", &["daily_signoffs"]),
    ("coldchain/devices/", &["device_alerts"]),
    ("coldchain/import.rs", &["logger_imports"]),
    ("coldchain/quarantine.rs", &["evaluation_failures"]),
    ("alerts/outbox.rs", &["outbox"]),
    ("alerts/links.rs", &["service_secrets"]),
    // The stock's tables belong to the inventory as a whole: a dose's stock is read in one query
    // with its product, its unit preference and its holds.
    (
        "inventory/",
        &[
            "products",
            "product_use_ndcs",
            "cvx_codes",
            "mvx_codes",
            "lots",
            "stock",
            "stock_events",
            "holds",
            "reconciliations",
            "location_product_units",
            "facility_ids",
            "transfers",
        ],
    ),
    (
        "inventory/doses/",
        &["administrations", "decrement_exceptions", "borrowing"],
    ),
    ("hl7/messages.rs", &["hl7_messages"]),
    (
        "orders/",
        &[
            "ordering_profiles",
            "orders",
            "order_lines",
            "order_events",
            "order_waivers",
            "no_dose_reports",
            "order_readiness",
            "order_exports",
            "shipment_lines",
            "order_receipts",
        ],
    ),
];

/// Read models a module publishes for others to join (created by migrations as views).
const VIEWS: &[&str] = &["unit_places", "location_contacts"];

/// The only modules that may use `web`: they compose the service.
const COMPOSERS: &[&str] = &["app", "cli", "bench", "demo"];

/// Past this many lines a file says why in its `//!` ("Longer than 500 lines because …").
const LONG: usize = 500;

struct Source {
    /// Path under `src/`, with `/` separators.
    rel: String,
    /// The module path: `coldchain/excursions/mod.rs` is `["coldchain", "excursions"]`.
    module: Vec<String>,
    text: String,
    /// The text without comments.
    code: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = src();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
            let mut module: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            let code = strip_comments(&text);
            Source {
                rel,
                module,
                text,
                code,
            }
        })
        .filter(|s| !matches!(s.rel.as_str(), "lib.rs" | "main.rs"))
        .collect()
}

/// The text without `//` comments (outside string literals) and without `/* */` blocks.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Identifiers following `prefix` in `code`, e.g. the `x` of every `crate::x`.
fn after<'a>(code: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    code.match_indices(prefix).filter_map(move |(i, _)| {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let rest = &code[i + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

/// A circle in `graph`, if there is one, as the modules along it.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(at.to_string(), 1);
        path.push(at.to_string());
        for next in g.get(at).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let from = path.iter().position(|p| p == next).unwrap();
                    let mut c = path[from..].to_vec();
                    c.push(next.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(g, next, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(at.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for start in graph.keys() {
        if !state.contains_key(start) {
            if let Some(c) = visit(graph, start, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Who uses whom among the top-level modules.
fn top_level(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources {
        let from = &s.module[0];
        let entry = g.entry(from.clone()).or_default();
        for to in after(&s.code, "crate::") {
            if to != from {
                entry.insert(to.to_string());
            }
        }
    }
    g
}

#[test]
fn top_level_modules_depend_on_one_another_without_a_circle() {
    let g = top_level(&sources());
    assert!(g.len() > 10, "read the modules: {g:?}");
    if let Some(c) = circle(&g) {
        panic!("modules in a circle: {}", c.join(" → "));
    }
}

#[test]
fn the_modules_of_a_folder_depend_on_one_another_without_a_circle() {
    let sources = sources();
    // folder → (child → children it uses)
    let mut folders: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for s in &sources {
        // Every folder the file sits under, with the child of that folder it belongs to.
        for depth in 1..s.module.len() {
            let folder = s.module[..depth].to_vec();
            let child = s.module[depth].clone();
            let uses = folders
                .entry(folder.clone())
                .or_default()
                .entry(child.clone())
                .or_default();
            let full = format!("crate::{}::", folder.join("::"));
            for to in after(&s.code, &full) {
                if to != child {
                    uses.insert(to.to_string());
                }
            }
            // `super::x` from a file directly in the folder names a sibling.
            let direct = s.module.len() == depth + 1;
            if direct && !s.rel.ends_with("mod.rs") {
                for to in after(&s.code, "super::") {
                    if to != child && to != "super" {
                        uses.insert(to.to_string());
                    }
                }
            }
        }
    }
    assert!(folders.contains_key(&vec!["coldchain".to_string()]));
    for (folder, g) in &folders {
        let children: BTreeSet<&String> = g.keys().collect();
        let g: BTreeMap<String, BTreeSet<String>> = g
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().filter(|t| children.contains(t)).cloned().collect()))
            .collect();
        if let Some(c) = circle(&g) {
            panic!("in {}/: modules in a circle: {}", folder.join("/"), c.join(" → "));
        }
    }
}

#[test]
fn domain_depends_on_nothing_of_ours() {
    for s in sources().iter().filter(|s| s.module[0] == "domain") {
        let ours: Vec<&str> = after(&s.code, "crate::").filter(|m| *m != "domain").collect();
        assert!(ours.is_empty(), "src/{} uses {ours:?}", s.rel);
    }
}

#[test]
fn only_the_composition_root_uses_web() {
    for s in sources() {
        let from = s.module[0].as_str();
        if from == "web" || COMPOSERS.contains(&from) {
            continue;
        }
        assert!(
            !after(&s.code, "crate::").any(|m| m == "web"),
            "src/{} uses crate::web; handlers call capabilities, not the other way round",
            s.rel
        );
    }
}

#[test]
fn there_is_no_sql_in_web() {
    let keywords = [
        "sqlx::query",
        ".pool",
        "SELECT ",
        "INSERT INTO",
        "UPDATE ",
        "DELETE FROM",
    ];
    let mut web = 0;
    for s in sources().iter().filter(|s| s.module[0] == "web") {
        web += 1;
        for k in keywords {
            assert!(
                !s.code.contains(k),
                "src/{} contains {k:?}: SQL belongs to the module that owns the table",
                s.rel
            );
        }
    }
    assert!(web > 5, "read the web modules");
}

/// The tables the migrations leave: created, less those renamed away (a rebuilt table's
/// `…_new` becomes the table) or dropped for good.
fn tables() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["CREATE", "TABLE", name, ..] => {
                    out.insert(name.trim_end_matches('(').to_string());
                }
                ["DROP", "TABLE", name, ..] => {
                    out.remove(name.trim_end_matches(';'));
                }
                ["ALTER", "TABLE", from, "RENAME", "TO", to] => {
                    out.remove(*from);
                    out.insert(to.trim_end_matches(';').to_string());
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn every_table_is_read_and_written_by_its_owner_only() {
    let tables = tables();
    let owner: BTreeMap<&str, &str> = OWNERS
        .iter()
        .flat_map(|(o, ts)| ts.iter().map(move |t| (*t, *o)))
        .collect();
    for t in &tables {
        assert!(owner.contains_key(t.as_str()), "table {t} has no owner in OWNERS");
    }
    let mut seen = BTreeSet::new();
    for s in sources() {
        for k in ["FROM ", "JOIN ", "INTO ", "UPDATE "] {
            for t in after(&s.code, k) {
                if !tables.contains(t) || VIEWS.contains(&t) {
                    continue; // a CTE, an alias, or a published view
                }
                seen.insert(t.to_string());
                let o = owner[t];
                assert!(
                    s.rel.starts_with(o),
                    "src/{} uses table {t}, which {o} owns: ask it through its functions",
                    s.rel
                );
            }
        }
    }
    assert!(seen.len() > 20, "found the tables in the source: {seen:?}");
}

#[test]
fn a_file_longer_than_500_lines_says_why() {
    for s in sources() {
        let lines = s.text.lines().count();
        if lines > LONG {
            assert!(
                s.text.contains("Longer than 500 lines because"),
                "src/{} has {lines} lines: split it by job, or say why in its //! (\"Longer than 500 lines because …\")",
                s.rel
            );
        }
    }
}

#[test]
fn every_module_says_what_it_owns() {
    for s in sources() {
        assert!(
            s.text.starts_with("//!"),
            "src/{} begins without a //! saying what it owns and why",
            s.rel
        );
    }
}

/// utoipa keys the API document's schemas by name: two types of one name become one schema, and
/// the document then describes one of them wrongly. `#[schema(as = …)]` renames.
#[test]
fn no_two_api_types_share_a_schema_name() {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut clashes = Vec::new();
    for s in sources() {
        let lines: Vec<&str> = s.code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !(line.trim_start().starts_with("#[derive(") && line.contains("ToSchema")) {
                continue;
            }
            let mut renamed = None;
            for next in &lines[i + 1..] {
                let t = next.trim();
                if let Some(rest) = t.strip_prefix("#[schema(as = ") {
                    renamed = rest.split([')', ',']).next().map(str::to_string);
                }
                let declared = ["pub struct ", "pub enum ", "struct ", "enum "]
                    .iter()
                    .find_map(|k| t.strip_prefix(k));
                if let Some(rest) = declared {
                    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    let name = renamed.take().unwrap_or(name);
                    if let Some(other) = seen.insert(name.clone(), s.rel.clone()) {
                        clashes.push(format!("{name}: {other} and {}", s.rel));
                    }
                    break;
                }
            }
        }
    }
    assert!(clashes.is_empty(), "schemas of one name: {clashes:?}");
}
