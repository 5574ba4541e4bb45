//! The `vfc` command line (docs/architecture.md, "Public contracts → Binary"). Output meant for people
//! and scripts goes to stdout; logs go to stderr.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::accounts::{tokens, Role};
use crate::config::{Settings, SettingsArgs};

#[derive(Parser)]
#[command(
    name = "vfc",
    version,
    about = "vfc-monitor: vaccine cold-chain, inventory and ordering monitor for the VFC program"
)]
struct Cli {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: MQTT ingest, HTTP API, background jobs.
    Serve,
    /// See it all work: the service in a fresh data directory (VFC_DATA_DIR, else ./vfc-demo), a
    /// sample clinic and simulated loggers; an excursion and its alert email within a minute.
    Demo(crate::demo::DemoArgs),
    /// Apply database migrations and exit (serve also applies them at start).
    Migrate,
    /// Import a logger's export file (Berlinger Fridge-tag, Q-tag, LogTag CSV) into a unit's record.
    Import {
        /// The export file, as downloaded from the logger.
        file: std::path::PathBuf,
        /// The unit the logger was in (its id in the API).
        #[arg(long)]
        unit: i64,
        /// The logger whose record this is, when the unit's own history does not say so for the
        /// file's times: the file's serial (it is then recorded as the unit's logger for that
        /// span), or the serial the unit knows it by.
        #[arg(long, value_name = "SERIAL")]
        as_serial: Option<String>,
    },
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// People's accounts: make the first one (a state admin) on the command line.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The vaccine catalog (CVX, MVX, NDC).
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Measure the service's throughput and latency on this machine.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Load CDC's published code files (pipe-delimited; CVX and MVX are UTF-16 with a
    /// byte-order mark). Rows replace earlier ones with the same code.
    Import {
        /// CDC's CVX file (cvx.txt).
        #[arg(long, value_name = "FILE")]
        cvx: Option<std::path::PathBuf>,
        /// CDC's MVX file (mvx.txt).
        #[arg(long, value_name = "FILE")]
        mvx: Option<std::path::PathBuf>,
        /// CDC's NDC unit-of-sale, unit-of-use or linker table (with a header row); may repeat.
        #[arg(long, value_name = "FILE")]
        ndc: Vec<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Invite a person; the invitation link (72 hours, single use) is emailed and printed as
    /// the last line.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// state-admin, state-coordinator, state-viewer (the program); provider-of-record,
        /// vfc-coordinator, backup-coordinator (--pin or --location); clinic-staff (--location)
        #[arg(long)]
        role: String,
        #[arg(long)]
        pin: Option<String>,
        #[arg(long)]
        location: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; the secret is printed once, as the last line.
    Create {
        /// state-coordinator (every PIN), or a clinic role (clinic, vfc-coordinator,
        /// backup-coordinator, clinic-staff) at one PIN or one location
        #[arg(long)]
        role: String,
        /// Clinic token for every location of this VFC PIN.
        #[arg(long)]
        pin: Option<String>,
        /// Clinic token for one location, e.g. 012345A.
        #[arg(long)]
        location: Option<String>,
        /// Whose token this is, e.g. "Bayview Pediatrics EHR".
        #[arg(long)]
        name: String,
    },
    /// Revoke a token by its id; it stops working at once.
    Revoke { id: i64 },
    /// List tokens (never their secrets).
    List,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter when `VFC_LOG` is not set. rumqttd reports every short-lived client that
/// leaves as an ERROR ("no-connection id … is already gone"); its router is quietened.
pub const DEFAULT_LOG: &str = "info,rumqttd=warn,rumqttd::router::routing=off,rumqttc=warn,sqlx=warn,tower_http=warn";

/// Logs to stderr, filtered by `VFC_LOG` (tracing's syntax); a filter that cannot be read is an
/// error, like any other setting.
fn init_tracing() -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("VFC_LOG") {
        Ok(raw) if !raw.trim().is_empty() => EnvFilter::try_new(&raw).map_err(|e| {
            anyhow::anyhow!(
                "VFC_LOG={raw:?} is not valid: a tracing filter such as info or info,vfc_monitor=debug ({e})"
            )
        })?,
        _ => EnvFilter::new(DEFAULT_LOG),
    };
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Demo(demo) = cli.command {
        // The demo picks its own data directory and free ports before the settings are read.
        return crate::demo::run(cli.settings, demo).await;
    }
    let settings = Settings::load(&cli.settings)?;
    match cli.command {
        Command::Demo(_) => unreachable!("handled above"),
        Command::Serve => crate::app::serve(settings).await,
        Command::Migrate => {
            crate::app::open_database(&settings.database).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Token(cmd) => token(settings, cmd).await,
        Command::Account(AccountCommand::Create {
            email,
            name,
            role,
            pin,
            location,
        }) => {
            use crate::accounts::{people, Grant, ScopeKind};
            // The flags are checked in the flags' own words before anything is written.
            let role_of = Role::parse(&role).filter(|r| *r != Role::Clinic).ok_or_else(|| {
                let people_roles: Vec<&str> = Role::ALL
                    .iter()
                    .filter(|r| **r != Role::Clinic)
                    .map(|r| r.as_str())
                    .collect();
                anyhow::anyhow!("--role {role:?} must be one of {}", people_roles.join(", "))
            })?;
            let scope = tokens::scope_from_flags(role_of, pin.as_deref(), location.as_deref())?;
            if (Grant { role: role_of, scope }).check().is_err() {
                anyhow::bail!(match role_of.scope_kind() {
                    ScopeKind::Program => format!("--role {role} covers every PIN: drop --pin and --location"),
                    ScopeKind::Location => format!("--role {role} is granted at one location: give --location CODE"),
                    ScopeKind::PinOrLocation => format!("--role {role} needs --pin PIN or --location CODE"),
                });
            }
            if people::normalise_email(&email).is_err() {
                anyhow::bail!("--email {email:?} is not an email address such as ada@health.state.example");
            }
            let db = crate::app::open_database(&settings.database).await?;
            let new = people::NewAccount {
                email,
                name,
                grants: vec![people::GrantBody { role, pin, location }],
            };
            let public_url = settings.public_url(settings.http_addr);
            let (account, link) = people::create(&db, None, &public_url, &new).await?;
            if settings.public_url.is_none() {
                eprintln!(
                    "warning: VFC_PUBLIC_URL is not set: the link points at VFC_HTTP_ADDR; set it to the address people reach the service at"
                );
            }
            println!(
                "invited account {} for {} <{}>; the link is emailed and works once, for 72 hours:",
                account.id, account.name, account.email
            );
            println!("{link}");
            Ok(())
        }
        Command::Import { file, unit, as_serial } => {
            let db = crate::app::open_database(&settings.database).await?;
            let request = crate::coldchain::import::Request {
                unit_id: unit,
                path: &file,
                as_serial: as_serial
                    .as_deref()
                    .map(crate::domain::LoggerSerial::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--as-serial: {e}"))?,
                actor: "cli:vfc import",
            };
            let report = crate::coldchain::import::import(&db, &request).await?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(cmd) => crate::bench::run(settings, cmd).await,
        Command::Catalog(CatalogCommand::Import { cvx, mvx, ndc }) => {
            use crate::inventory::catalog::cdc::{import, CdcFile};
            if cvx.is_none() && mvx.is_none() && ndc.is_empty() {
                anyhow::bail!("name at least one file: --cvx FILE, --mvx FILE or --ndc FILE");
            }
            let db = crate::app::open_database(&settings.database).await?;
            let files = cvx
                .into_iter()
                .map(|f| (CdcFile::Cvx, f))
                .chain(mvx.into_iter().map(|f| (CdcFile::Mvx, f)))
                .chain(ndc.into_iter().map(|f| (CdcFile::Ndc, f)));
            for (kind, file) in files {
                let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let (stored, skipped) = import(&db, kind, &bytes)
                    .await
                    .with_context(|| format!("importing {}", file.display()))?;
                println!("{}: {stored} rows stored, {skipped} skipped", file.display());
            }
            Ok(())
        }
    }
}

async fn token(settings: Settings, cmd: TokenCommand) -> anyhow::Result<()> {
    let db = crate::app::open_database(&settings.database).await?;
    match cmd {
        TokenCommand::Create {
            role,
            pin,
            location,
            name,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "--role {role:?} must be one of {}",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })?;
            let scope = tokens::scope_from_flags(role, pin.as_deref(), location.as_deref())?;
            // A token for a place not registered yet sees nothing until it is: say so (on stderr,
            // so the secret stays the last line of stdout). It is still made: a PIN's own token
            // may register that PIN's locations, and scripts may create tokens first.
            if !crate::registry::locations::scope_exists(&db, &scope).await? {
                let what = match &scope {
                    crate::accounts::Scope::Pin(p) => format!("no location of PIN {p} is registered yet"),
                    crate::accounts::Scope::Location(c) => format!("location {c} is not registered yet"),
                    _ => String::new(),
                };
                eprintln!(
                    "warning: {what}: this token sees nothing until it is (POST /api/v1/locations; a PIN's token may register its own)"
                );
            }
            let token = tokens::create(&db, &name, role, &scope).await?;
            let scope = scope.describe();
            println!(
                "created token {} for {name:?} ({}, {scope}); it is shown only now:",
                token.id,
                role.as_str()
            );
            println!("{}", token.secret);
        }
        TokenCommand::Revoke { id } => {
            if tokens::revoke(&db, id).await? {
                println!("token {id} revoked");
            } else {
                println!("token {id} was already revoked");
            }
        }
        TokenCommand::List => {
            let all = tokens::list(&db).await?;
            if all.is_empty() {
                println!("no tokens yet: create one with `vfc token create`");
            }
            for t in all {
                println!(
                    "{}\t{}\t{}\t{}{}",
                    t.id,
                    t.role,
                    t.place(),
                    t.name,
                    if t.revoked_at.is_some() { "\t(revoked)" } else { "" }
                );
            }
        }
    }
    Ok(())
}
