//! `telex-loadtest`: offers open-loop load to an XMPP server (Telex or any other), measures
//! latency and throughput, and writes a report with plots.

mod report;
mod run;
mod scenario;
mod sink;
mod stats;
mod xmpp;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::scenario::Scenario;

#[derive(Parser)]
#[command(name = "telex-loadtest", version, about = "Open-loop load tests for Telex and other XMPP servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a scenario and writes the report.
    Run {
        /// A built-in scenario: smoke, chat.
        #[arg(long, conflicts_with = "scenario")]
        preset: Option<String>,
        /// A scenario file (TOML; see loadtest/README.md).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// The server's XMPP c2s address (plain TCP).
        #[arg(long, default_value = "127.0.0.1:5222")]
        server: SocketAddr,
        /// Telex admin API to provision users through; "none" if they exist already.
        #[arg(long, default_value = "127.0.0.1:7402")]
        admin: String,
        /// Report directory.
        #[arg(long, default_value = "loadtest-report")]
        out: PathBuf,
        /// Writes the sends as JSON lines for the history checker.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Overrides the scenario's measured duration.
        #[arg(long)]
        duration: Option<u64>,
        /// Overrides the scenario's message rate (msg/s over all users).
        #[arg(long)]
        rate: Option<f64>,
        /// Worker processes sharing the connections (a process may hold at most ~20,000).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Source addresses, one per worker in turn (default: 127.0.0.2, 127.0.0.3, ... with
        /// several workers), so more connections fit than one address's ports allow.
        #[arg(long, value_delimiter = ',')]
        sources: Vec<std::net::IpAddr>,
    },
    /// One worker process of a run (started by `run --workers`); prints its figures as JSON.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        scenario_json: String,
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        of: usize,
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        #[arg(long)]
        start_at_us: u64,
    },
    /// The tool's own ceiling: a scenario against an in-process endpoint that only
    /// acknowledges, so no result is the tool's limit in disguise.
    Ceiling {
        #[arg(long, default_value = "chat")]
        preset: String,
        /// Messages per second to offer.
        #[arg(long, default_value_t = 20000.0)]
        rate: f64,
        #[arg(long, default_value_t = 5)]
        duration: u64,
    },
    /// Lists the presets with their settings.
    Presets,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("telex-loadtest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Presets => {
            for p in scenario::PRESETS {
                println!("# {p}\n{}", toml::to_string(&Scenario::preset(p).map_err(anyhow::Error::msg)?)?);
            }
            Ok(())
        }
        Command::Ceiling { preset, rate, duration } => {
            let mut s = Scenario::preset(&preset).map_err(anyhow::Error::msg)?;
            s.message_rate = rate;
            s.duration_secs = duration;
            s.validate().map_err(anyhow::Error::msg)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let server = listener.local_addr()?;
            let sink = tokio::spawn(sink::serve(listener));
            let options =
                run::Options { server, admin: None, history: None, slice: (0, 1), source: None, start_at_us: None };
            let stats = run::run(&s, &options).await?;
            sink.abort();
            let from = (s.ramp_up_secs + s.warm_up_secs) as usize;
            let w = stats.summary(from, from + s.duration_secs as usize);
            println!(
                "tool ceiling ({} connections, one process): offered {rate} msg/s, sent {:.0}/s, acknowledged {:.0}/s, \
                 ack p50 {:.1} ms, p99 {:.1} ms, errors {:?}",
                stats.logins, w.sent_per_sec, w.acked_per_sec, w.ack_p50_ms, w.ack_p99_ms, w.errors
            );
            Ok(())
        }
        Command::Worker { scenario_json, server, index, of, source, start_at_us } => {
            let s: Scenario = serde_json::from_str(&scenario_json)?;
            let options = run::Options {
                server,
                admin: None,
                history: None,
                slice: (index, of),
                source,
                start_at_us: Some(start_at_us),
            };
            let stats = run::run(&s, &options).await?;
            println!("{}", stats.to_json());
            Ok(())
        }
        Command::Run { preset, scenario, server, admin, out, history, duration, rate, workers, sources } => {
            let mut s = match (preset, scenario) {
                (Some(p), _) => Scenario::preset(&p).map_err(anyhow::Error::msg)?,
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path)?;
                    Scenario::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                }
                (None, None) => Scenario::preset("smoke").map_err(anyhow::Error::msg)?,
            };
            if let Some(d) = duration {
                s.duration_secs = d;
            }
            if let Some(r) = rate {
                s.message_rate = r;
            }
            s.validate().map_err(anyhow::Error::msg)?;
            let admin = (admin != "none").then_some(admin);
            let stats = if workers > 1 {
                run::workers(&s, server, admin.as_deref(), workers, &sources).await?
            } else {
                let options = run::Options {
                    server,
                    admin,
                    history,
                    slice: (0, 1),
                    source: sources.first().copied(),
                    start_at_us: None,
                };
                run::run(&s, &options).await?
            };
            let from = (s.ramp_up_secs + s.warm_up_secs) as usize;
            let to = from + s.duration_secs as usize;
            let server_name = server.to_string();
            let result = report::Result {
                scenario: &s,
                server: &server_name,
                measured_from_sec: from,
                measured_to_sec: to,
                summary: stats.summary(from, to),
                seconds: report::per_second(&stats),
            };
            report::write(&out, &result)?;
            print!("{}", report::markdown(&result));
            eprintln!("report: {}", out.join("summary.md").display());
            Ok(())
        }
    }
}
