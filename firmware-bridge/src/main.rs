//! `firmware-bridge`: the clinic gateway (`run`) and the logger simulator (`simulate`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use firmware_bridge::broker::MqttUrl;
use firmware_bridge::gateway::{self, Config, Source};
use firmware_bridge::simulate::{self, parse_duration, Plan, Scenario};
use firmware_bridge::{sources, zone::Zone};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "firmware-bridge",
    version,
    about = "The vfc-monitor clinic gateway and logger simulator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read loggers (a line source, a drop folder of export files, simulated loggers), keep every
    /// reading on disk, and send it to the service until the service confirms it.
    Run {
        #[command(flatten)]
        gateway: GatewayArgs,
        /// A serial device, FIFO or file with lines `serial,timestamp,temp_c` (RFC 3339
        /// timestamp). A file is followed as it grows; a restart resumes after the last line taken.
        #[arg(long, value_name = "PATH")]
        lines: Vec<PathBuf>,
        /// A folder watched for Berlinger Fridge-tag / Q-tag and LogTag CSV export files.
        #[arg(long, value_name = "DIR")]
        watch: Vec<PathBuf>,
        /// The zone of the export files' local times: an IANA name, or `local` (the machine's).
        #[arg(long, default_value = "local", env = "FIRMWARE_BRIDGE_TIMEZONE")]
        timezone: String,
        /// Seconds between looks at the drop folders.
        #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
        watch_every: f64,
        /// Add simulated loggers as a source (see `simulate --help` for their options).
        #[arg(long)]
        simulate: bool,
        #[command(flatten)]
        sim: SimArgs,
    },
    /// Simulated loggers. With `--broker`, they go through the gateway (spool, confirmation);
    /// without, their readings are printed as `serial,timestamp,temp_c` lines.
    Simulate {
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(flatten)]
        sim: SimArgs,
    },
}

#[derive(Args)]
struct GatewayArgs {
    /// The broker: `mqtt://[user:pass@]host[:port]` or `mqtts://…`. Keep a password out of the
    /// process list by setting FIRMWARE_BRIDGE_BROKER instead (e.g. in a systemd EnvironmentFile).
    #[arg(long, env = "FIRMWARE_BRIDGE_BROKER", hide_env_values = true)]
    broker: Option<String>,
    /// Extra CA certificates (PEM) for `mqtts://` besides the public roots.
    #[arg(long, env = "FIRMWARE_BRIDGE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The spool folder: readings wait here until the service confirms them. A new folder is a
    /// new epoch.
    #[arg(long, env = "FIRMWARE_BRIDGE_SPOOL", default_value = "firmware-bridge-spool")]
    spool: PathBuf,
    /// This gateway's id in topics and payloads, and its broker username: `gw-` and up to 60
    /// letters, digits or hyphens (default: `gw-` and the host name). Register it with the
    /// service (`POST /api/v1/locations/{code}/gateways`) before its readings count.
    #[arg(long, env = "FIRMWARE_BRIDGE_GATEWAY_ID")]
    gateway_id: Option<String>,
    /// Largest spool, in MiB of unconfirmed readings (about 16,000 readings a MiB).
    #[arg(long, default_value_t = 256)]
    spool_cap_mb: u64,
    /// First wait for the service's confirmation before publishing again (then doubling).
    #[arg(long, default_value = "15s", value_parser = std_duration)]
    resend_after: std::time::Duration,
    /// How often each logger's status (battery, spool depth) is published.
    #[arg(long, default_value = "5m", value_parser = std_duration)]
    status_every: std::time::Duration,
    /// Warn (log and status) when readings the broker accepted stay unconfirmed this long.
    #[arg(long, default_value = "10m", value_parser = std_duration)]
    warn_unconfirmed_after: std::time::Duration,
    /// Exit once every source is done and every reading confirmed.
    #[arg(long)]
    exit_when_drained: bool,
}

#[derive(Args)]
struct SimArgs {
    /// Simulated refrigerators.
    #[arg(long, default_value_t = 1)]
    refrigerators: usize,
    /// Simulated freezers.
    #[arg(long, default_value_t = 1)]
    freezers: usize,
    /// Serials are this prefix and a number.
    #[arg(long, default_value = "SIM-")]
    prefix: String,
    /// Time between readings.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    interval: chrono::Duration,
    /// How far back the run starts; that window is played faster than real time.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    replay: chrono::Duration,
    /// How much faster than real time the past window plays (1 = real time).
    #[arg(long, default_value_t = 60.0, value_parser = speed)]
    speed: f64,
    /// `NAME[@AFTER][+LASTING][=SERIAL]`: door-open, compressor-failure, freeze, power-outage,
    /// low-battery; AFTER counts from the window's start. E.g. `compressor-failure@2h`.
    #[arg(long)]
    scenario: Vec<Scenario>,
    /// Stop at now instead of going on live.
    #[arg(long)]
    no_live: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl SimArgs {
    fn plan(&self) -> Plan {
        Plan {
            loggers: Plan::loggers(&self.prefix, self.refrigerators, self.freezers),
            interval: self.interval,
            replay: self.replay,
            speed: self.speed,
            scenarios: self.scenario.clone(),
            live: !self.no_live,
            seed: self.seed,
        }
    }
}

fn speed(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 1.0)
        .ok_or_else(|| format!("{raw:?}: the speed is a number, 1 (real time) or more"))
}

fn std_duration(raw: &str) -> Result<std::time::Duration, String> {
    parse_duration(raw)?.to_std().map_err(|e| e.to_string())
}

impl GatewayArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let raw = self
            .broker
            .as_deref()
            .context("--broker is required: mqtt://host:port (or FIRMWARE_BRIDGE_BROKER)")?;
        let broker = MqttUrl::parse(raw).map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
        let mut cfg = Config::new(
            broker,
            self.gateway_id.clone().unwrap_or_else(gateway::default_gateway_id),
            self.spool.clone(),
        );
        cfg.ca_file = self.ca_file.clone();
        cfg.spool_cap_bytes = self.spool_cap_mb.max(1) * 1024 * 1024;
        cfg.resend_after = self.resend_after;
        cfg.resend_max = self.resend_after.max(std::time::Duration::from_secs(600));
        cfg.status_every = self.status_every;
        cfg.unconfirmed_warning_after = self.warn_unconfirmed_after;
        cfg.exit_when_drained = self.exit_when_drained;
        Ok(cfg)
    }
}

async fn run(cli: Cli, cancel: CancellationToken) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            gateway: g,
            lines,
            watch,
            timezone,
            watch_every,
            simulate,
            sim,
        } => {
            let cfg = g.config()?;
            let zone = Zone::parse(&timezone).map_err(|e| anyhow::anyhow!("--timezone: {e}"))?;
            let mut list: Vec<Source> = Vec::new();
            for path in lines {
                list.push(gateway::source(move |feed| sources::lines(path, feed)));
            }
            let every = std::time::Duration::from_secs_f64(watch_every.max(0.1));
            for dir in watch {
                list.push(gateway::source(move |feed| sources::watch(dir, zone, every, feed)));
            }
            if simulate {
                list.push(simulate::source(sim.plan()));
            }
            if list.is_empty() {
                anyhow::bail!("name at least one source: --lines PATH, --watch DIR or --simulate");
            }
            gateway::run(cfg, list, cancel).await
        }
        Command::Simulate { gateway: g, sim } => {
            if g.broker.is_some() {
                return gateway::run(g.config()?, vec![simulate::source(sim.plan())], cancel).await;
            }
            use std::io::Write;
            simulate::drive(sim.plan(), cancel, |readings, _| async move {
                let mut out = std::io::stdout().lock();
                for r in readings {
                    writeln!(out, "{},{},{}", r.serial, r.ts.to_rfc3339(), r.temp_c)?;
                }
                out.flush()?;
                Ok(())
            })
            .await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIRMWARE_BRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttc=warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(stop_on_signal(cancel.clone()));
        run(cli, cancel).await
    });
    // A FIFO or serial port may still be blocked in a read with no writer: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn stop_on_signal(cancel: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("stopping on signal");
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped systemd unit's command line is one this binary accepts.
    #[test]
    fn the_shipped_unit_file_starts_a_valid_gateway() {
        let unit = include_str!("../deploy/firmware-bridge.service");
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("an ExecStart line");
        let args: Vec<&str> = exec.split_whitespace().collect();
        assert!(args[0].ends_with("/firmware-bridge"));
        let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{exec}: {e}"));
        let Command::Run {
            lines, watch, timezone, ..
        } = cli.command
        else {
            panic!("the unit runs `run`")
        };
        assert!(!lines.is_empty() && !watch.is_empty());
        Zone::parse(&timezone).unwrap();
        let env = include_str!("../deploy/firmware-bridge.env.example");
        let broker = env
            .lines()
            .find_map(|l| l.strip_prefix("FIRMWARE_BRIDGE_BROKER="))
            .unwrap();
        assert!(MqttUrl::parse(broker).unwrap().tls);
    }
}
